"""What a fan-out of sub-calls shares and what still bounds it: every call of a run sends one tools object (its
size and a backend's JSON of it are made once), a change of the run's tools makes a new one, and a sub-call
(which waits on the run's remaining time without a task of its own) is still cut by the run's timeout.
No timing is asserted."""

from __future__ import annotations

import asyncio

from rlm.sizing import tools_size
from rlm.types import ToolCall, ToolSpec


def tc(name, **arguments):
    return ToolCall(id="", name=name, arguments=arguments)


def _batch_script(n: int):
    def script(request):
        user = request.messages[1].text
        if user.startswith("q"):
            return f"answer {user}"
        if any(m.role == "tool" for m in request.messages):
            return "done"
        return [tc("rlm_batch_complete", queries=[f"q{i}" for i in range(n)])]

    return script


def test_every_call_of_a_run_sends_the_same_tools_object(make_rlm):
    rlm, backend = make_rlm(_batch_script(12), max_parallel=12, max_subcalls=12)
    result = rlm.completion_sync("go")
    assert result.response == "done"
    assert len(backend.requests) == 14
    tools = backend.requests[0].tools
    assert tools and {t.name for t in tools} >= {"rlm_batch_complete", "rlm_sub_complete"}
    assert all(r.tools is tools for r in backend.requests)


def test_new_tools_make_new_schemas():
    from rlm.orchestrator import Run

    run = Run.__new__(Run)  # only the tools matter here
    run.tools = {"a": ToolSpec(name="a", description="first", parameters={"type": "object"}, handler=lambda: None)}
    run._schemas = None
    first = run.tool_schemas()
    assert run.tool_schemas() is first and [s.name for s in first] == ["a"]
    run.tools["b"] = ToolSpec(name="b", description="second", parameters={"type": "object"}, handler=lambda: None)
    second = run.tool_schemas()
    assert second is not first and [s.name for s in second] == ["a", "b"]
    run.tools["b"] = ToolSpec(name="b", description="changed", parameters={"type": "object"}, handler=lambda: None)
    third = run.tool_schemas()
    assert third is not second and third[1].description == "changed"
    # the size a reservation counts for them is tools_size's, kept or not
    assert run._tools_bytes(third) == tools_size(third)[1] == tools_size(list(third))[1]
    assert run._tools_bytes(list(second)) == tools_size(second)[1] < tools_size(third)[1]


def test_the_run_timeout_still_cuts_a_sub_call(make_rlm):
    rlm, backend = make_rlm(_batch_script(3), max_parallel=3, max_subcalls=3, timeout=1.0)
    complete = backend.complete
    cancelled = []

    async def slow_subcalls(request):
        if request.messages[1].text.startswith("q"):
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.append(request.messages[1].text)
                raise
        return await complete(request)

    backend.complete = slow_subcalls
    result = rlm.completion_sync("go")
    assert sorted(cancelled) == ["q0", "q1", "q2"]  # each waiting sub-call was cancelled at the run's timeout
    assert result.limit_hit == "timeout"
