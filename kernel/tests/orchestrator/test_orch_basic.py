"""The tools protocol end to end with the fake backend: text, tools, parallel calls, JSON results."""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest

from rlm import tool
from rlm.trajectory import read_trajectory
from rlm.types import ToolCall


def tc(name, **arguments):
    return ToolCall(id="", name=name, arguments=arguments)


def test_plain_text_answer_and_totals(make_rlm):
    rlm, backend = make_rlm(["Paris"])
    result = rlm.completion_sync("Capital of France?")
    assert result.success and result.response == "Paris"
    assert result.total_calls == 1 and result.total_tokens > 0
    assert result.total_tokens == result.total_input_tokens + result.total_output_tokens
    assert backend.closed  # completion_sync closes the backend
    request = backend.requests[0]
    assert request.messages[0].role == "system" and "execute_code" in request.messages[0].text
    assert request.messages[-1].text == "Capital of France?"


def test_multi_turn_tool_use_runs_code_and_returns_json(make_rlm):
    rlm, backend = make_rlm([[tc("execute_code", code="x = 6*7\nprint(x)")], [tc("execute_code", code="x += 1\nprint(x)")],
                             "It is 43"])
    result = rlm.completion_sync("compute")
    assert result.response == "It is 43"
    assert result.total_calls == 3 and result.total_tool_calls == 2
    tool_msgs = [m for m in backend.requests[2].messages if m.role == "tool"]
    assert [json.loads(m.content)["output"] for m in tool_msgs] == ["42\n", "43\n"]  # JSON, state kept


def test_parallel_tool_calls_run_concurrently(make_rlm):
    @tool
    async def slow(n: int) -> int:
        """Sleep a bit and echo."""
        await asyncio.sleep(0.3)
        return n

    rlm, backend = make_rlm([[tc("slow", n=1), tc("slow", n=2), tc("slow", n=3)], "done"], tools=[slow])
    started = time.monotonic()
    result = rlm.completion_sync("go")
    assert time.monotonic() - started < 0.8  # three 0.3 s tools overlapped
    results = [m.content for m in backend.requests[1].messages if m.role == "tool"]
    assert results == ["1", "2", "3"]
    assert result.total_tool_calls == 3


def test_max_parallel_bounds_concurrency(make_rlm):
    running = {"now": 0, "peak": 0}

    @tool
    async def probe() -> str:
        """Count concurrency."""
        running["now"] += 1
        running["peak"] = max(running["peak"], running["now"])
        await asyncio.sleep(0.05)
        running["now"] -= 1
        return "ok"

    rlm, _ = make_rlm([[tc("probe") for _ in range(6)], "done"], tools=[probe], max_parallel=2)
    rlm.completion_sync("go")
    assert running["peak"] == 2


def test_unknown_tool_and_bad_arguments_are_reported_to_the_model(make_rlm):
    rlm, backend = make_rlm([[tc("nope"), tc("execute_code", code=5)], "ok"])
    rlm.completion_sync("go")
    results = [json.loads(m.content) for m in backend.requests[1].messages if m.role == "tool"]
    assert "unknown tool 'nope'" in results[0]["error"] and "execute_code" in results[0]["error"]
    assert "invalid arguments for execute_code" in results[1]["error"] and "/code" in results[1]["error"]


def test_tool_exception_becomes_error_result(make_rlm):
    @tool
    def broken() -> str:
        """Always fails."""
        raise RuntimeError("kaboom")

    rlm, backend = make_rlm([[tc("broken")], "recovered"], tools=[broken])
    result = rlm.completion_sync("go")
    assert result.response == "recovered"
    assert json.loads(backend.requests[1].messages[-1].content) == {"error": "RuntimeError: kaboom"}


def test_tool_name_collision_names_both_sources(make_rlm):
    from rlm.errors import PluginError

    @tool
    def file_read(path: str) -> str:
        """Shadow the builtin."""
        return path

    rlm, _ = make_rlm(["x"], tools=[file_read])
    with pytest.raises(PluginError, match="rlm.builtin.tools.*RLM\\(tools=...\\)"):
        rlm.completion_sync("go")


def test_final_from_execute_code_ends_the_call(make_rlm):
    rlm, backend = make_rlm([[tc("execute_code", code="answer = 6*7\nFINAL_VAR('answer')")]])
    result = rlm.completion_sync("go")
    assert result.response == "42" and result.total_calls == 1


def test_trajectory_written_as_jsonl_and_flushed(make_rlm, tmp_path):
    rlm, _ = make_rlm([[tc("execute_code", code="print(1)")], "one"])
    assert not (tmp_path / "logs").exists()
    result = rlm.completion_sync("go")
    path = tmp_path / "logs" / f"{result.trajectory_id}.jsonl"
    events = read_trajectory(str(path))
    types = [e["type"] for e in events]
    assert types[0] == "run_start" and types[-1] == "run_end"
    assert {"llm_call", "tool_results", "repl_execution"} <= set(types)
    for e in events:
        for key in ("trajectory_id", "call_id", "parent_call_id", "sub_call_type", "depth", "timestamp"):
            assert key in e
    llm = [e for e in events if e["type"] == "llm_call"]
    assert all("token_usage" in e and "duration_ms" in e and "cost" in e for e in llm)
    assert events[-1]["response"] == "one"
    assert len(result.events) == len(events)


def test_no_log_dir_created_without_events(make_rlm, tmp_path):
    make_rlm(["x"])
    assert not (tmp_path / "logs").exists()
