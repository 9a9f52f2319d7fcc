"""The two providers behind the tools: :class:`HostedProvider` and :class:`LocalProvider`.

Both answer the same async methods, so :mod:`rlm_snipara.tools` is written
once.  The hosted provider forwards each call to the service's tool of the
same name (``rlm_context_query``...); the local one answers from the SQLite
index and memory store, in worker threads.  ``decompose`` of the local
provider asks the run's own LLM (``ctx.sub_complete``).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING, Any, Protocol

from rlm.logging import get_logger

from rlm_snipara import config as cfg
from rlm_snipara.budget import split_budget

if TYPE_CHECKING:
    from rlm.config import RLMConfig
    from rlm.context import ToolContext

log = get_logger(__name__)

MAX_SUB_QUERIES = 8
DECOMPOSE_SYSTEM = ("You split a question about a software project into focused documentation search queries. "
                    "Answer with only a JSON array of strings, no prose, no tool calls.")
SHARED_HINT = "convention conventions guideline guidelines standard standards best practice practices style rule rules"


class Provider(Protocol):
    name: str

    async def context_query(self, query: str, max_tokens: int) -> Any: ...
    async def sections(self, filter: str, limit: int) -> Any: ...
    async def search(self, pattern: str, max_results: int, max_tokens: int) -> Any: ...
    async def shared_context(self, query: str, max_tokens: int) -> Any: ...
    async def decompose(self, query: str, max_sub_queries: int, ctx: ToolContext) -> Any: ...
    async def multi_query(self, queries: list[str], max_tokens: int) -> Any: ...
    async def remember(self, content: str, type: str, ttl_days: float | None) -> Any: ...
    async def recall(self, query: str, type: str | None, limit: int) -> Any: ...


def _drop_none(**kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None and v != ""}


class HostedProvider:
    """Forwards every tool to the hosted Snipara project."""

    name = "snipara"

    def __init__(self, client: Any) -> None:
        self.client = client

    async def _call(self, tool: str, **arguments: Any) -> Any:
        return await asyncio.to_thread(self.client.call, tool, _drop_none(**arguments))

    async def forward(self, tool: str, arguments: dict[str, Any]) -> Any:
        """Call the service's tool ``tool`` with ``arguments`` as given (the rlm-runtime 2.x names, see
        :mod:`rlm_snipara.legacy`); None values are left out."""
        return await self._call(tool, **arguments)

    async def context_query(self, query: str, max_tokens: int) -> Any:
        return await self._call("rlm_context_query", query=query, max_tokens=max_tokens)

    async def sections(self, filter: str, limit: int) -> Any:
        return await self._call("rlm_sections", filter=filter, limit=limit)

    async def search(self, pattern: str, max_results: int, max_tokens: int) -> Any:
        return await self._call("rlm_search", pattern=pattern, max_results=max_results)

    async def shared_context(self, query: str, max_tokens: int) -> Any:
        return await self._call("rlm_shared_context", query=query, max_tokens=max_tokens)

    async def decompose(self, query: str, max_sub_queries: int, ctx: ToolContext) -> Any:
        return await self._call("rlm_decompose", query=query, max_sub_queries=max_sub_queries)

    async def multi_query(self, queries: list[str], max_tokens: int) -> Any:
        return await self._call("rlm_multi_query", queries=list(queries), max_tokens=max_tokens)

    async def remember(self, content: str, type: str, ttl_days: float | None) -> Any:
        return await self._call("rlm_remember", content=content, type=type, ttl_days=ttl_days)

    async def recall(self, query: str, type: str | None, limit: int) -> Any:
        return await self._call("rlm_recall", query=query, type=type, limit=limit)


class LocalProvider:
    """Answers from the local index and memory store (no account, no network)."""

    name = "local"

    def __init__(self, index: Any, memory: Any, *, has_shared: bool) -> None:
        self.index = index
        self.memory = memory
        self.has_shared = has_shared

    async def context_query(self, query: str, max_tokens: int) -> Any:
        return await asyncio.to_thread(self.index.query, query, max_tokens=max_tokens)

    async def sections(self, filter: str, limit: int) -> Any:
        return await asyncio.to_thread(self.index.sections, filter=filter, limit=limit)

    async def search(self, pattern: str, max_results: int, max_tokens: int) -> Any:
        return await asyncio.to_thread(self.index.search, pattern, max_results=max_results, max_tokens=max_tokens)

    async def shared_context(self, query: str, max_tokens: int) -> Any:
        if self.has_shared:
            if query.strip():
                out = await asyncio.to_thread(self.index.query, query, max_tokens=max_tokens, shared_only=True)
            else:
                out = await asyncio.to_thread(self.index.shared_sections, max_tokens=max_tokens)
            out["source"] = "shared docs ([plugins.snipara] shared)"
            return out
        out = await asyncio.to_thread(self.index.query, f"{query} {SHARED_HINT}", max_tokens=max_tokens)
        out["query"] = query
        out["source"] = ("all docs, ranked for conventions (list team guidelines in "
                         "[plugins.snipara] shared to make this exact)")
        return out

    async def decompose(self, query: str, max_sub_queries: int, ctx: ToolContext) -> Any:
        await asyncio.to_thread(self.index.refresh)
        hints = await asyncio.to_thread(self.index.top_sections, query, k=12)
        titles = "\n".join(f"- {h['file']}: {h['section']}" for h in hints) or "(no matching sections)"
        prompt = (f"Split the question below into at most {max_sub_queries} focused documentation search queries, "
                  f"in the order they should be looked up.\n\nQuestion: {query}\n\n"
                  f"Documentation sections that may be relevant:\n{titles}\n\n"
                  'Answer with only a JSON array of strings, e.g. ["first query", "second query"].')
        answer = await ctx.sub_complete(prompt, system=DECOMPOSE_SYSTEM)
        sub_queries = parse_query_list(answer)
        source = "llm"
        if not sub_queries:
            log.info("snipara_decompose_fallback", reason="unparseable answer")
            sub_queries, source = heuristic_split(query), "heuristic"
        sub_queries = sub_queries[:max_sub_queries]
        out = []
        for sub in sub_queries:
            refs = await asyncio.to_thread(self.index.top_sections, sub, k=3)
            out.append({"query": sub, "sections": refs})
        return {"query": query, "sub_queries": out, "source": source,
                "next": "call multi_query with these queries (or context_query for each)"}

    async def multi_query(self, queries: list[str], max_tokens: int) -> Any:
        seen: set[tuple[str, int]] = set()
        results = []
        used = 0
        for query, share in zip(queries, split_budget(max_tokens, len(queries)), strict=True):
            one = await asyncio.to_thread(self.index.query, query, max_tokens=share)
            fresh = [r for r in one["results"] if (r["file"], r["line"]) not in seen]
            seen.update((r["file"], r["line"]) for r in fresh)
            used += one["tokens"]
            results.append({"query": query, "results": fresh, "tokens": one["tokens"],
                            "truncated": one["truncated"], "duplicates_removed": len(one["results"]) - len(fresh)})
        return {"queries": results, "tokens": used, "max_tokens": max_tokens}

    async def remember(self, content: str, type: str, ttl_days: float | None) -> Any:
        return await asyncio.to_thread(self.memory.remember, content, type=type, ttl_days=ttl_days)

    async def recall(self, query: str, type: str | None, limit: int) -> Any:
        return await asyncio.to_thread(self.memory.recall, query, type=type, limit=limit)


def parse_query_list(text: str) -> list[str]:
    """The JSON array of strings in ``text`` (fenced or not); [] when there is none."""
    for candidate in re.findall(r"\[[\s\S]*?\]", text or "") + re.findall(r"\[[\s\S]*\]", text or ""):
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(value, list):
            items = [str(v).strip() for v in value if isinstance(v, (str, int, float)) and str(v).strip()]
            if items:
                return list(dict.fromkeys(items))
    return []


def heuristic_split(query: str) -> list[str]:
    """Split on ``;``, ``?``, commas and "and" (when the model's answer was unusable)."""
    parts = re.split(r"[;?\n]|,|\band\b|\bthen\b", query)
    out = [p.strip(" .") for p in parts if len(p.strip(" .")) > 2]
    return list(dict.fromkeys(out)) or [query.strip()]


def build_provider(choice: cfg.ProviderChoice, config: RLMConfig) -> Provider:
    """The provider ``choice`` names, built from ``config`` (nothing is contacted or opened yet)."""
    settings = cfg.settings_of(config)
    if choice.provider == "snipara":
        from rlm_snipara.hosted import SniparaClient

        client = SniparaClient(api_key=config.snipara_api_key or "", project_slug=config.snipara_project_slug or "",
                               base_url=settings.base_url, timeout=settings.timeout)
        return HostedProvider(client)
    from rlm_snipara.index import DocIndex
    from rlm_snipara.memory import MemoryStore
    from rlm_snipara.store import Store

    store = Store(cfg.db_path(config))
    index = DocIndex(store, docs=settings.docs, shared=settings.shared, base=cfg.base_dir(config))
    return LocalProvider(index, MemoryStore(store), has_shared=bool(settings.shared))
