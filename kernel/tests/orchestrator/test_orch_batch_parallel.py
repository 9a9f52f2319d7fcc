"""Sub-call batches (``rlm_batch_complete``, ``llm_query_batched``) run their calls concurrently, never more at
once than ``max_parallel`` (the tool's and the run's, whichever is smaller).  No timing is asserted: the fake
backend counts the calls in flight."""

from __future__ import annotations

import asyncio
import json

import pytest
from rlm.types import ToolCall


def tc(name, **arguments):
    return ToolCall(id="", name=name, arguments=arguments)


def _counting(backend):
    """Wrap ``backend.complete``; the dict it returns holds the most sub-calls seen in flight at once."""
    running = {"now": 0, "peak": 0}
    complete = backend.complete

    async def counted(request):
        sub = request.messages[1].text.startswith("q")
        if sub:
            running["now"] += 1
            running["peak"] = max(running["peak"], running["now"])
            for _ in range(3):  # let the other calls of the batch start, if they may
                await asyncio.sleep(0)
        try:
            return await complete(request)
        finally:
            if sub:
                running["now"] -= 1

    backend.complete = counted
    return running


def _script(n: int, max_parallel: int | None):
    def script(request):
        user = request.messages[1].text
        if user.startswith("q"):
            return f"answer {user}"
        if any(m.role == "tool" for m in request.messages):
            return "done"
        args = {"queries": [f"q{i}" for i in range(n)]}
        if max_parallel is not None:
            args["max_parallel"] = max_parallel
        return [tc("rlm_batch_complete", **args)]

    return script


@pytest.mark.parametrize(("tool_cap", "run_cap", "expected"), [(3, 50, 3), (None, 4, 4), (40, 5, 5), (200, 200, 30)])
def test_a_batch_never_runs_more_calls_at_once_than_max_parallel(make_rlm, tool_cap, run_cap, expected):
    rlm, backend = make_rlm(_script(30, tool_cap), max_parallel=run_cap, max_subcalls=30)
    running = _counting(backend)
    result = rlm.completion_sync("go")
    assert result.response == "done"
    answers = json.loads([m for m in backend.requests[-1].messages if m.role == "tool"][-1].content)
    assert answers == [f"answer q{i}" for i in range(30)]
    assert running["peak"] == expected  # capped, and (with room) every call of the batch in flight at once
