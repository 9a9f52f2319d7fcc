"""rlm: a runtime for Recursive Language Models.

``import rlm`` is cheap: the public names below are imported on first use
(``hookimpl`` too: it needs pluggy, which ``rlm --help`` does without).

rlm-runtime 2.x's names are here too (:mod:`rlm.compat`): ``CompletionOptions``, ``RLMResult``,
``Tool``, ``ToolCall``, ``ToolResult``, ``REPLResult``, ``load_config``; the two it had that rlm does not
provide (``ToolRegistry``, ``TrajectoryEvent``) raise an ImportError that says what to use instead.
"""

TYPE_CHECKING = False  # not `from typing import ...`: typing costs more than all the rest of `import rlm`

__version__ = "0.1.0"

__all__ = ["RLM", "CompletionResult", "Message", "RLMConfig", "hookimpl", "tool", "__version__",
           # rlm-runtime 2.x's names (rlm.compat)
           "CompletionOptions", "RLMResult", "REPLResult", "Tool", "ToolCall", "ToolResult", "load_config"]

_LAZY = {
    "hookimpl": ("rlm.hookspecs", "hookimpl"),
    "RLM": ("rlm.core", "RLM"),
    "CompletionResult": ("rlm.types", "CompletionResult"),
    "Message": ("rlm.types", "Message"),
    "RLMConfig": ("rlm.config", "RLMConfig"),
    "tool": ("rlm.tools", "tool"),
    # rlm-runtime 2.x's names
    "CompletionOptions": ("rlm.compat", "CompletionOptions"),
    "RLMResult": ("rlm.compat", "RLMResult"),
    "REPLResult": ("rlm.types", "REPLResult"),
    "Tool": ("rlm.types", "ToolSpec"),
    "ToolCall": ("rlm.types", "ToolCall"),
    "ToolResult": ("rlm.types", "ToolResult"),
    "load_config": ("rlm.compat", "load_config"),
}

#: rlm-runtime 2.x names rlm does not provide: importing one says what to use instead (rlm.compat.NOT_PROVIDED)
_NOT_PROVIDED = ("ToolRegistry", "TrajectoryEvent")

if TYPE_CHECKING:
    from rlm.hookspecs import hookimpl
    from rlm.config import RLMConfig
    from rlm.core import RLM
    from rlm.tools import tool
    from rlm.types import CompletionResult, Message, REPLResult, ToolCall, ToolResult
    from rlm.types import ToolSpec as Tool
    from rlm.compat import CompletionOptions, RLMResult, load_config


def __getattr__(name: str) -> object:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        if name in _NOT_PROVIDED:
            from rlm.compat import not_provided

            raise not_provided(name) from None
        raise AttributeError(f"module 'rlm' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value
