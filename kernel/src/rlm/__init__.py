"""rlm: a runtime for Recursive Language Models.

``import rlm`` is cheap: the public names below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rlm.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["RLM", "CompletionResult", "Message", "RLMConfig", "hookimpl", "tool", "__version__"]

_LAZY = {
    "RLM": ("rlm.core", "RLM"),
    "CompletionResult": ("rlm.types", "CompletionResult"),
    "Message": ("rlm.types", "Message"),
    "RLMConfig": ("rlm.config", "RLMConfig"),
    "tool": ("rlm.tools", "tool"),
}

if TYPE_CHECKING:
    from rlm.config import RLMConfig
    from rlm.core import RLM
    from rlm.tools import tool
    from rlm.types import CompletionResult, Message


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'rlm' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value
