"""What a tool handler may use: :class:`ToolContext`.

A handler declaring a ``ctx`` parameter receives one per call.  It gives
the run's configuration, the calling node's REPL environment, confined file
access helpers and the sub-call entry points (so plugin tools can delegate
under the same budgets and trajectory).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rlm.types import FinalSignal, REPLResult

if TYPE_CHECKING:
    from rlm.config import RLMConfig
    from rlm.environment import Environment
    from rlm.orchestrator import CallNode, Run


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
                           context: str | None = None) -> str:
        """A recursive sub-call (depth + 1) with tools, under the inherited budget."""
        return await self._run.sub_complete(self._call, query, system=system, max_tokens=max_tokens, context=context)

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
