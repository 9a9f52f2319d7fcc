"""The rlm-runtime 2.x tool names (``rlm_context_query``...), for prompts and agents written for 2.x.

With ``[plugins.snipara] legacy_tool_names = true`` each of our tools that
2.x had under another name is registered under its 2.x name **instead of**
ours (a model sees one name per tool), with the 2.x arguments:

========================  =================  ===================================================
2.x name                  our tool           2.x-only arguments
========================  =================  ===================================================
``rlm_context_query``     ``context_query``  ``search_mode``, ``prefer_summaries``, ``include_metadata``
``rlm_search``            ``search``         (none; ``max_results`` defaults to 20 as in 2.x)
``rlm_sections``          ``sections``       ``offset`` (``limit`` defaults to 50 as in 2.x)
``rlm_shared_context``    ``shared_context`` ``categories`` (locally: words of the query), ``include_content``
``rlm_remember``          ``rlm_remember``   ``scope``, ``category``, ``related_to``, ``document_refs``
``rlm_recall``            ``rlm_recall``     ``min_relevance``, ``scope``, ``category``
``rlm_read``              (hosted only)      ``start_line``, ``end_line``
``rlm_memories``          (hosted only)      type, scope, category, search, limit, offset
``rlm_forget``            (hosted only)      memory_id, type, category, older_than_days
========================  =================  ===================================================

The hosted provider forwards every 2.x argument to the Snipara tool of the
same name (2.x called exactly those), ``max_tokens`` clamped as ours is.  The
local provider maps what it can and lists the 2.x arguments it could not
honour under ``ignored_arguments`` in the result, so nothing is dropped
silently.  ``rlm_read``, ``rlm_memories`` and ``rlm_forget`` exist only with
the hosted provider (the local index has no line-addressed document and the
local memory store no listing or deletion).  ``decompose`` and
``multi_query`` keep their names: 2.x's own Snipara tools had no equivalent.

The kernel has no hidden tool aliases (every registered tool is shown to the
model), so the 2.x names are an opt-in replacement rather than extra names
accepted behind the model's back; with the option off, a call by a 2.x name
gets the kernel's "unknown tool ...; available tools: ..." error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from attrs import define, field
from rlm.logging import get_logger
from rlm.types import ToolSpec

log = get_logger(__name__)

MEMORY_TYPES_2X = ("fact", "decision", "learning", "preference", "todo", "context")
SCOPES_2X = ("agent", "project", "team", "user")
CATEGORIES_2X = ("MANDATORY", "BEST_PRACTICES", "GUIDELINES", "REFERENCE")

_TYPE = {"type": "string", "enum": list(MEMORY_TYPES_2X)}
_SCOPE = {"type": "string", "enum": list(SCOPES_2X)}


def _schema(properties: Mapping[str, Any], required: Sequence[str] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": dict(properties), "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


@define(frozen=True, kw_only=True)
class LegacyTool:
    """One 2.x tool name: what it maps onto and how it differs.

    ``ours`` is the tool it replaces (None: a hosted-only pass-through);
    ``local_ignores`` are the 2.x arguments the local provider cannot honour
    (``defaults``: 2.x's defaults where they differ from ours); ``difference`` is the one behaviour difference users should know.
    """

    name: str
    ours: str | None
    description: str
    parameters: Mapping[str, Any]
    defaults: Mapping[str, Any] = field(factory=dict)
    local_ignores: tuple[str, ...] = ()
    memory: bool = False
    difference: str = ""


LEGACY_TOOLS: tuple[LegacyTool, ...] = (
    LegacyTool(
        name="rlm_context_query", ours="context_query",
        description="Find the documentation sections most relevant to a question, within a token budget.",
        parameters=_schema({
            "query": {"type": "string", "description": "What you want to know, in words."},
            "max_tokens": {"type": "integer", "default": 4000,
                           "description": "Most tokens of documentation to return."},
            "search_mode": {"type": "string", "enum": ["keyword", "semantic", "hybrid"], "default": "hybrid",
                            "description": "How to match (hosted Snipara; the local index always matches keywords)."},
            "prefer_summaries": {"type": "boolean", "default": False,
                                 "description": "Prefer summaries over full sections (hosted Snipara)."},
            "include_metadata": {"type": "boolean", "default": True,
                                 "description": "Include metadata in the result (hosted Snipara)."},
        }, ("query",)),
        defaults={"max_tokens": 4000},
        local_ignores=("search_mode", "prefer_summaries", "include_metadata"),
        difference="max_tokens is capped at 20 000 (2.x: 100 000); locally search_mode, prefer_summaries "
                   "and include_metadata are ignored (keyword bm25 only) and listed in ignored_arguments"),
    LegacyTool(
        name="rlm_search", ours="search",
        description="Search the documentation for lines matching a regular expression.",
        parameters=_schema({
            "pattern": {"type": "string", "description": "A regular expression."},
            "max_results": {"type": "integer", "default": 20, "description": "Most matching lines to return."},
        }, ("pattern",)),
        defaults={"max_results": 20},
        difference="locally the pattern is a Python regular expression and results carry file and line"),
    LegacyTool(
        name="rlm_sections", ours="sections",
        description="List the documentation sections available, with pagination.",
        parameters=_schema({
            "filter": {"type": "string", "description": "Only sections whose file or heading contains this text."},
            "limit": {"type": "integer", "default": 50, "description": "Most sections to list."},
            "offset": {"type": "integer", "minimum": 0, "default": 0, "description": "Sections to skip."},
        }),
        defaults={"limit": 50, "offset": 0},
        difference="locally filter matches anywhere in the file or heading (2.x: a title prefix)"),
    LegacyTool(
        name="rlm_shared_context", ours="shared_context",
        description="Get the team's shared guidelines (mandatory rules, best practices, guidelines, references).",
        parameters=_schema({
            "categories": {"type": "array", "items": {"type": "string", "enum": list(CATEGORIES_2X)},
                           "description": "Only these categories (default: all)."},
            "max_tokens": {"type": "integer", "default": 4000, "description": "Most tokens to return."},
            "include_content": {"type": "boolean", "default": True,
                                "description": "Include the merged content (hosted Snipara)."},
        }),
        defaults={"max_tokens": 4000},
        local_ignores=("include_content",),
        difference="locally categories become the query words (\"BEST_PRACTICES\" -> \"best practices\") over "
                   "[plugins.snipara] shared; include_content is ignored"),
    LegacyTool(
        name="rlm_remember", ours="rlm_remember", memory=True,
        description="Store a memory for later runs (a decision, fact, preference...).",
        parameters=_schema({
            "content": {"type": "string", "description": "What to remember, self-contained."},
            "type": {**_TYPE, "default": "fact", "description": "The kind of memory."},
            "scope": {**_SCOPE, "default": "project", "description": "Who shares it (hosted Snipara)."},
            "category": {"type": "string", "description": "A category for grouping (hosted Snipara)."},
            "ttl_days": {"type": "integer", "minimum": 1, "description": "Forget it after this many days."},
            "related_to": {"type": "array", "items": {"type": "string"}, "description": "Ids of related memories."},
            "document_refs": {"type": "array", "items": {"type": "string"},
                              "description": "Paths of documents it refers to."},
        }, ("content",)),
        local_ignores=("scope", "category", "related_to", "document_refs"),
        difference="locally scope, category, related_to and document_refs are not stored (the local store keeps "
                   "content, type and expiry) and are listed in ignored_arguments"),
    LegacyTool(
        name="rlm_recall", ours="rlm_recall", memory=True,
        description="Recall stored memories relevant to a question.",
        parameters=_schema({
            "query": {"type": "string", "description": "What you want to recall."},
            "limit": {"type": "integer", "default": 5, "description": "Most memories to return."},
            "min_relevance": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5,
                              "description": "Least relevance score, 0-1 (hosted Snipara)."},
            "type": {**_TYPE, "description": "Only memories of this kind."},
            "scope": {**_SCOPE, "description": "Only memories of this scope (hosted Snipara)."},
            "category": {"type": "string", "description": "Only memories of this category (hosted Snipara)."},
        }, ("query",)),
        local_ignores=("min_relevance", "scope", "category"),
        difference="locally ranking is keyword bm25 then recency (2.x: embeddings); min_relevance, scope and "
                   "category are ignored and listed in ignored_arguments"),
    LegacyTool(
        name="rlm_read", ours=None,
        description="Read a range of lines of the project's documentation.",
        parameters=_schema({
            "start_line": {"type": "integer", "description": "First line."},
            "end_line": {"type": "integer", "description": "Last line."},
        }, ("start_line", "end_line")),
        difference="hosted provider only (the local index has no line-addressed document: use search, whose "
                   "results give file and line, or sections)"),
    LegacyTool(
        name="rlm_memories", ours=None, memory=True,
        description="List stored memories, with filters and pagination.",
        parameters=_schema({
            "type": {**_TYPE, "description": "Only memories of this kind."},
            "scope": {**_SCOPE, "description": "Only memories of this scope."},
            "category": {"type": "string", "description": "Only memories of this category."},
            "search": {"type": "string", "description": "Text the memories contain."},
            "limit": {"type": "integer", "default": 20, "description": "Most memories to list."},
            "offset": {"type": "integer", "minimum": 0, "default": 0, "description": "Memories to skip."},
        }),
        difference="hosted provider only (locally, rlm_recall with a query finds memories)"),
    LegacyTool(
        name="rlm_forget", ours=None, memory=True,
        description="Delete memories by id, kind, category or age.",
        parameters=_schema({
            "memory_id": {"type": "string", "description": "The id of one memory."},
            "type": {**_TYPE, "description": "Every memory of this kind."},
            "category": {"type": "string", "description": "Every memory of this category."},
            "older_than_days": {"type": "integer", "minimum": 1, "description": "Memories older than this."},
        }),
        difference="hosted provider only (locally, memories expire through ttl_days)"),
)

LEGACY_BY_NAME: Mapping[str, LegacyTool] = {t.name: t for t in LEGACY_TOOLS}
#: our tool name -> its 2.x name
RENAMED: Mapping[str, str] = {t.ours: t.name for t in LEGACY_TOOLS if t.ours is not None}

Clamp = Callable[[int], int]


def _drop_none(args: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in args.items() if v is not None}


def _note_ignored(result: Any, ignored: dict[str, Any], provider: str) -> Any:
    if not ignored:
        return result
    note = {"arguments": ignored,
            "why": f"the {provider} provider does not support them (rlm-runtime 2.x arguments)"}
    if isinstance(result, dict):
        return {**result, "ignored_arguments": note}
    return {"result": result, "ignored_arguments": note}


def _local_handler(legacy: LegacyTool, ours: ToolSpec, clamp: Clamp) -> Callable[..., Awaitable[Any]]:
    """The handler of ``legacy`` over our tool ``ours`` (local provider)."""

    async def handler(**args: Any) -> Any:
        ctx = args.pop("ctx", None)
        args = {**legacy.defaults, **_drop_none(args)}
        ignored = {k: args.pop(k) for k in legacy.local_ignores if k in args}
        if legacy.name == "rlm_sections":
            offset, limit = int(args.pop("offset", 0)), int(args.get("limit", 50))
            out = await ours.handler(filter=args.get("filter", ""), limit=offset + limit)
            if isinstance(out, dict) and isinstance(out.get("sections"), list):
                shown = out["sections"][offset:offset + limit]
                out = {**out, "sections": shown, "shown": len(shown), "offset": offset}
            return out
        if legacy.name == "rlm_shared_context":
            categories = args.pop("categories", None) or []
            args["query"] = " ".join(str(c).replace("_", " ").lower() for c in categories)
        if "max_tokens" in args:
            args["max_tokens"] = clamp(args["max_tokens"])
        if ours.takes_context:
            args["ctx"] = ctx
        return _note_ignored(await ours.handler(**args), ignored, "local")

    return handler


def _hosted_handler(legacy: LegacyTool, forward: Callable[[str, dict[str, Any]], Awaitable[Any]],
                    clamp: Clamp) -> Callable[..., Awaitable[Any]]:
    """The handler of ``legacy`` on the hosted provider: the 2.x arguments go to the service's tool as they are."""

    async def handler(**args: Any) -> Any:
        args = {**legacy.defaults, **_drop_none(args)}
        if "max_tokens" in args:
            args["max_tokens"] = clamp(args["max_tokens"])
        return await forward(legacy.name, args)

    return handler


def apply(specs: Sequence[ToolSpec], *, provider: Any, clamp: Clamp, memory: bool) -> list[ToolSpec]:
    """``specs`` with each tool that 2.x named otherwise under its 2.x name; plus the hosted-only 2.x tools.

    ``provider`` is the tools' provider: a hosted one (``forward(tool, arguments)``) gets every 2.x tool;
    a local one only those that map onto ours.  The memory tools come only with ``memory``.
    """
    hosted = getattr(provider, "name", "") == "snipara" and hasattr(provider, "forward")
    by_name = {s.name: s for s in specs}
    out: list[ToolSpec] = []
    done: set[str] = set()
    for spec in specs:
        legacy_name = RENAMED.get(spec.name)
        if legacy_name is None:
            out.append(spec)
            continue
        legacy = LEGACY_BY_NAME[legacy_name]
        out.append(_spec(legacy, provider, by_name[spec.name], clamp, hosted))
        done.add(legacy.name)
    if hosted:
        for legacy in LEGACY_TOOLS:
            if legacy.ours is None and legacy.name not in done and (memory or not legacy.memory):
                out.append(_spec(legacy, provider, None, clamp, hosted))
    log.info("snipara_legacy_tool_names", provider=getattr(provider, "name", "?"),
             tools=[s.name for s in out if s.name in LEGACY_BY_NAME])
    return out


def _spec(legacy: LegacyTool, provider: Any, ours: ToolSpec | None, clamp: Clamp, hosted: bool) -> ToolSpec:
    if hosted:
        handler = _hosted_handler(legacy, provider.forward, clamp)
        takes_context = False
    else:
        assert ours is not None  # local: only tools that map onto ours
        handler = _local_handler(legacy, ours, clamp)
        takes_context = ours.takes_context
    description = ours.description if ours is not None else legacy.description
    return ToolSpec(name=legacy.name, description=description, parameters=legacy.parameters,
                    handler=handler, takes_context=takes_context)
