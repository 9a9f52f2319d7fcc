"""The tools the model sees, bound to one provider (built per run by the tools hook).

Context tools: ``context_query``, ``sections``, ``search``,
``shared_context``, ``decompose``, ``multi_query``; memory tools (only with
``memory_enabled``): ``rlm_remember``, ``rlm_recall``.  Results are
token-budgeted: ``max_tokens`` defaults to ``[plugins.snipara] max_tokens``
(5000) and is clamped to :data:`MAX_TOKENS_CAP`.
"""

from __future__ import annotations

from typing import Any

from rlm.errors import ToolError
from rlm.tools import tool
from rlm.types import ToolSpec

from rlm_snipara.memory import MemoryType
from rlm_snipara.providers import MAX_SUB_QUERIES, Provider

CONTEXT_TOOLS = ("context_query", "sections", "search", "shared_context", "decompose", "multi_query")
MEMORY_TOOLS = ("rlm_remember", "rlm_recall")
MAX_TOKENS_CAP = 20_000
MIN_TOKENS = 100
MAX_QUERIES = 10


def clamp_tokens(max_tokens: int) -> int:
    """``max_tokens`` brought within [:data:`MIN_TOKENS`, :data:`MAX_TOKENS_CAP`]."""
    return max(MIN_TOKENS, min(int(max_tokens), MAX_TOKENS_CAP))


_budget = clamp_tokens


def build_tools(provider: Provider, *, default_tokens: int = 5000, memory: bool = False) -> list[ToolSpec]:
    """The ToolSpecs of ``provider``; the memory tools too when ``memory``."""
    default_tokens = _budget(default_tokens)

    @tool(name="context_query")
    async def context_query(query: str, max_tokens: int = default_tokens) -> Any:
        """Find the documentation sections most relevant to a question, within a token budget.

        Args:
            query: What you want to know, in words ("How does authentication work?").
            max_tokens: Most tokens of documentation to return.
        """
        return await provider.context_query(query, _budget(max_tokens))

    @tool(name="sections")
    async def sections(filter: str = "", limit: int = 200) -> Any:
        """List the documentation sections available (file, heading, line, size in tokens).

        Args:
            filter: Only sections whose file or heading contains this text.
            limit: Most sections to list.
        """
        return await provider.sections(filter, max(1, min(limit, 1000)))

    @tool(name="search")
    async def search(pattern: str, max_results: int = 50) -> Any:
        """Search the documentation for lines matching a regular expression ("TODO", "def \\w+_auth").

        Args:
            pattern: A Python regular expression.
            max_results: Most matching lines to return.
        """
        return await provider.search(pattern, max(1, min(max_results, 500)), default_tokens)

    @tool(name="shared_context")
    async def shared_context(query: str = "", max_tokens: int = default_tokens) -> Any:
        """Get the team's best practices and conventions (coding standards, error handling...).

        Args:
            query: The topic ("error handling conventions"); empty for all shared guidelines.
            max_tokens: Most tokens to return.
        """
        return await provider.shared_context(query, _budget(max_tokens))

    @tool(name="decompose")
    async def decompose(query: str, ctx, max_sub_queries: int = 5) -> Any:
        """Break a complex question into focused sub-queries, each with the sections likely to answer it.

        Args:
            query: The complex question or task ("Plan how to implement user permissions").
            max_sub_queries: Most sub-queries to return.
        """
        return await provider.decompose(query, max(1, min(max_sub_queries, MAX_SUB_QUERIES)), ctx)

    @tool(name="multi_query")
    async def multi_query(queries: list[str], ctx, max_tokens: int = default_tokens, answer: bool = False) -> Any:
        """Run several documentation queries at once, sharing one token budget (duplicates removed).

        Args:
            queries: The queries ("auth flow", "database schema", "API errors").
            max_tokens: Tokens for all queries together.
            answer: Also answer each query from its sections with a sub-LLM call.
        """
        queries = [q for q in (str(q).strip() for q in queries) if q]
        if not queries:
            raise ToolError("multi_query needs at least one query", fix="pass queries=[...]")
        if len(queries) > MAX_QUERIES:
            raise ToolError(f"multi_query takes at most {MAX_QUERIES} queries, got {len(queries)}",
                            fix="split them over several calls")
        budget = _budget(max_tokens)
        if not answer:
            return await provider.multi_query(queries, budget)
        return await _answer_each(provider, queries, budget, ctx)

    specs = [context_query, sections, search, shared_context, decompose, multi_query]
    if memory:

        @tool(name="rlm_remember")
        async def rlm_remember(content: str, type: MemoryType = "fact", ttl_days: float | None = None) -> Any:
            """Store a memory for later runs (a decision, fact, preference...).

            Args:
                content: What to remember, self-contained ("We cache sessions in Redis for 24 h").
                type: The kind of memory.
                ttl_days: Forget it after this many days (omit to keep it).
            """
            return await provider.remember(content, type, ttl_days)

        @tool(name="rlm_recall")
        async def rlm_recall(query: str, type: MemoryType | None = None, limit: int = 5) -> Any:
            """Recall stored memories relevant to a question ("What did we decide about caching?").

            Args:
                query: What you want to recall.
                type: Only memories of this kind.
                limit: Most memories to return.
            """
            return await provider.recall(query, type, max(1, min(limit, 50)))

        specs += [rlm_remember, rlm_recall]
    return specs


async def _answer_each(provider: Provider, queries: list[str], budget: int, ctx: Any) -> Any:
    """Retrieve each query's sections (budget shared), then answer each from them with a sub-call."""
    import asyncio
    import json

    from rlm_snipara.budget import split_budget

    found = [await provider.context_query(q, share) for q, share in zip(queries, split_budget(budget, len(queries)),
                                                                       strict=True)]

    async def answer_one(query: str, context: Any) -> str:
        text = context if isinstance(context, str) else json.dumps(context, ensure_ascii=False)
        return await ctx.sub_complete(
            f"Answer from the documentation excerpts only; say so when they do not cover it.\n\nQuestion: {query}",
            context=text)

    answers = await asyncio.gather(*(answer_one(q, c) for q, c in zip(queries, found, strict=True)),
                                   return_exceptions=True)
    out = []
    for query, context, answer in zip(queries, found, answers, strict=True):
        entry: dict[str, Any] = {"query": query, "context": context}
        if isinstance(answer, BaseException):
            entry["error"] = str(answer)
        else:
            entry["answer"] = answer
        out.append(entry)
    return {"queries": out}
