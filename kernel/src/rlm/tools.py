"""Custom tools: the ``@tool`` decorator and the context a tool handler receives.

``@tool`` turns a typed (async or sync) function into a :class:`rlm.types.ToolSpec`:
the JSON Schema of its arguments comes from the type hints, the tool's and
each parameter's description from the docstring (reST ``:param x:``, Google
``Args:`` or NumPy ``Parameters`` style, read by ``docstring_parser``).  A
handler that declares a ``ctx`` parameter receives a :class:`ToolContext`.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, get_args, get_origin

from rlm.trajectory import escape_surrogates_deep
from rlm.types import ToolSpec

_SIMPLE = {str: "string", int: "integer", float: "number", bool: "boolean"}


def json_schema_for(annotation: Any) -> dict[str, Any]:
    """The JSON Schema of a Python type annotation (the common cases)."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return {}
    if annotation in _SIMPLE:
        return {"type": _SIMPLE[annotation]}
    if annotation is type(None):
        return {"type": "null"}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"enum": [m.value for m in annotation]}
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        non_null = [a for a in args if a is not type(None)]
        if len(non_null) == 1:
            return json_schema_for(non_null[0])
        return {"anyOf": [json_schema_for(a) for a in args]}
    if origin in (list, tuple, set, frozenset) or annotation in (list, tuple, set):
        item = args[0] if args and args[-1] is not Ellipsis or (len(args) == 2 and args[1] is Ellipsis) else None
        schema: dict[str, Any] = {"type": "array"}
        if item is not None:
            schema["items"] = json_schema_for(item)
        return schema
    if origin in (dict, Mapping) or annotation is dict:
        schema = {"type": "object"}
        if len(args) == 2:
            schema["additionalProperties"] = json_schema_for(args[1])
        return schema
    return {}


def _doc_params(doc: str) -> tuple[str, dict[str, str]]:
    """The description and per-parameter descriptions of a reST, Google or NumPy docstring.

    The description is the short description and the long one, without the
    parameter, returns and raises sections (``docstring_parser`` tells them
    apart and guesses the style).  Each parameter's text is put on one line.
    """
    if not doc or not doc.strip():
        return "", {}
    import docstring_parser

    try:
        parsed = docstring_parser.parse(doc)
    except docstring_parser.ParseError:  # a docstring no style reads: all of it describes the tool
        return inspect.cleandoc(doc), {}
    parts = [part.strip() for part in (parsed.short_description, parsed.long_description) if part and part.strip()]
    gap = "\n\n" if parsed.blank_after_short_description else "\n"
    params = {p.arg_name.replace("\\", "").lstrip("*"): " ".join((p.description or "").split())
              for p in parsed.params if p.args and p.args[0] in {"param", "parameter", "arg", "argument",
                                                                 "key", "keyword", "other_param"}}
    return gap.join(parts), {name: text for name, text in params.items() if text}


def tool(func: Callable[..., Any] | None = None, *, name: str | None = None,
         description: str | None = None) -> Any:
    """Make a :class:`ToolSpec` from a typed function (use as ``@tool`` or ``@tool(name=...)``).

    Sync functions run in a worker thread so they never block the loop.
    Parameters without a default are required.  A parameter named ``ctx``
    receives the :class:`ToolContext` and is not shown to the model.
    """
    if func is None:
        return functools.partial(tool, name=name, description=description)
    sig = inspect.signature(func)
    hints = typing.get_type_hints(func)
    summary, docs = _doc_params(func.__doc__ or "")
    properties: dict[str, Any] = {}
    required: list[str] = []
    takes_context = False
    for pname, param in sig.parameters.items():
        if pname == "ctx":
            takes_context = True
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        schema = json_schema_for(hints.get(pname, param.annotation))
        if pname in docs:
            schema["description"] = docs[pname]
        if param.default is param.empty:
            required.append(pname)
        elif param.default is not None and isinstance(param.default, (str, int, float, bool)):
            schema["default"] = param.default
        properties[pname] = schema
    parameters: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        parameters["required"] = required

    # A result holding a lone surrogate (a file name that is not UTF-8, text decoded with
    # surrogateescape) could be sent nowhere and logged nowhere: escape it (a byte becomes \xNN).
    if asyncio.iscoroutinefunction(func):
        @functools.wraps(func)
        async def handler(**kwargs: Any) -> Any:
            return escape_surrogates_deep(await func(**kwargs))
    else:
        @functools.wraps(func)
        async def handler(**kwargs: Any) -> Any:
            return escape_surrogates_deep(await asyncio.to_thread(func, **kwargs))

    return ToolSpec(
        name=name or func.__name__,
        description=description or summary or func.__name__,
        parameters=parameters,
        handler=handler,
        takes_context=takes_context,
    )
