"""What a tool handler may use: :class:`ToolContext`.

A handler declaring a ``ctx`` parameter receives one per call.  It gives
the run's configuration, the calling node's REPL environment, confined file
access helpers and the sub-call entry points (so plugin tools can delegate
under the same budgets and trajectory).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rlm.types import FinalSignal, REPLResult

if TYPE_CHECKING:
    from rlm.config import RLMConfig
    from rlm.environment import Environment
    from rlm.orchestrator import CallNode, Run


#: The most tokens of provider context one ``context_query`` injects.
CONTEXT_QUERY_MAX_TOKENS = 4000
#: The share of the sub-call's token budget that provider context may take.
CONTEXT_QUERY_SHARE = 0.25


def context_query_tokens(remaining: float, max_tokens: int | None) -> int:
    """Tokens of provider context for a sub-call: a quarter of the sub-call's token budget (which is
    ``max_tokens`` if given, at most half of what the caller has left), at most
    :data:`CONTEXT_QUERY_MAX_TOKENS`; that cap when nothing limits the budget."""
    limits = [float(max_tokens)] if max_tokens is not None else []
    if not math.isinf(remaining):
        limits.append(max(0.0, remaining) * 0.5)
    if not limits:
        return CONTEXT_QUERY_MAX_TOKENS
    return max(1, min(CONTEXT_QUERY_MAX_TOKENS, int(min(limits) * CONTEXT_QUERY_SHARE)))


class ToolContext:
    """The run and call a tool executes in."""

    def __init__(self, run: Run, call: CallNode) -> None:
        self._run = run
        self._call = call

    @property
    def config(self) -> RLMConfig:
        return self._run.config

    @property
    def depth(self) -> int:
        return self._call.depth

    @property
    def call_id(self) -> str:
        return self._call.call_id

    @property
    def trajectory_id(self) -> str:
        return self._run.trajectory_id

    async def environment(self) -> Environment:
        """The REPL session of the calling call (started on first use)."""
        return await self._run.environment_for(self._call)

    async def sub_complete(self, query: str, *, system: str | None = None, max_tokens: int | None = None,
                           context: str | None = None, context_query: str | None = None) -> str:
        """A recursive sub-call (depth + 1) with tools, under the inherited budget.

        ``context_query``: the run's context provider (:mod:`rlm.context_providers`) is asked for text
        on it, and that text is given to the sub-call as context (after ``context`` when both are given),
        at most :func:`context_query_tokens` tokens; recorded as a ``context_injected`` event of this
        call.  Without a provider it raises :class:`rlm.errors.ToolError` before anything is spent.
        """
        if context_query is None:
            return await self._run.sub_complete(self._call, query, system=system, max_tokens=max_tokens,
                                                context=context)
        from rlm import context_providers
        from rlm.errors import RLMError, ToolError

        if not isinstance(context_query, str) or not context_query.strip():
            raise ToolError("context_query must be a non-empty question to look up",
                            fix="pass the words to search for, or drop context_query")
        try:
            name, provider = context_providers.for_run(self._run)
        except ToolError:
            raise
        except RLMError as exc:  # no provider, or one that cannot serve this configuration: the model is told
            raise ToolError(exc.message, fix=exc.fix) from None
        # the sub-call is admitted (depth, sub-calls per turn) before the provider is asked
        self._run.admit_sub_calls(self._call, 1)
        budget = context_query_tokens(self._call.budget.remaining_tokens(), max_tokens)
        text = await context_providers.fetch(provider, name, context_query, max_tokens=budget)
        self.emit("context_injected", **context_providers.event_fields(context_query, name, text))
        if text:
            context = f"{context}\n\n{text}" if context else text
        return await self._run.sub_complete(self._call, query, system=system, max_tokens=max_tokens,
                                            context=context, admitted=True)

    async def batch_complete(self, queries: Sequence[str], *, max_parallel: int | None = None) -> list[Any]:
        """Several sub-calls at once sharing one budget; failures come back as error strings."""
        return await self._run.batch_complete(self._call, queries, max_parallel=max_parallel)

    async def execute(self, code: str) -> REPLResult:
        """Run ``code`` in the calling call's REPL session; recorded as a ``repl_execution`` event."""
        return await self._run.execute(self._call, await self.environment(), code)

    def finish(self, signal: FinalSignal) -> None:
        """End the calling call with this answer once the current tools return."""
        self._call.final = signal

    def emit(self, type: str, **fields: Any) -> None:
        """Add an event of the tool's own to the trajectory."""
        self._run.emit(self._call, type, **fields)
