"""rlm: a runtime for Recursive Language Models.

``import rlm`` is cheap: the public names below are imported on first use
(``hookimpl`` too: it needs pluggy, which ``rlm --help`` does without).
"""

TYPE_CHECKING = False  # not `from typing import ...`: typing costs more than all the rest of `import rlm`

__version__ = "0.1.0"

__all__ = ["RLM", "CompletionResult", "Message", "RLMConfig", "hookimpl", "tool", "__version__"]

_LAZY = {
    "hookimpl": ("rlm.hookspecs", "hookimpl"),
    "RLM": ("rlm.core", "RLM"),
    "CompletionResult": ("rlm.types", "CompletionResult"),
    "Message": ("rlm.types", "Message"),
    "RLMConfig": ("rlm.config", "RLMConfig"),
    "tool": ("rlm.tools", "tool"),
}

if TYPE_CHECKING:
    from rlm.hookspecs import hookimpl
    from rlm.config import RLMConfig
    from rlm.core import RLM
    from rlm.tools import tool
    from rlm.types import CompletionResult, Message


def __getattr__(name: str) -> object:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'rlm' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value
