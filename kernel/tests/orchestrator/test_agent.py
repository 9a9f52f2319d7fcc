"""AgentRunner: kept conversation, FINAL/FINAL_VAR tools, forced answers, one timeout, cancel, status."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from rlm import tool
from rlm.errors import AuthenticationError
from rlm.trajectory import read_trajectory
from rlm.types import ToolCall


def tc(tool_name, **arguments):
    return ToolCall(id="", name=tool_name, arguments=arguments)


def run(coro):
    return asyncio.run(coro)


def test_multi_iteration_run_uses_earlier_results_and_final_ends_at_once(make_agent):
    def script(request):
        tools_seen = [m for m in request.messages if m.role == "tool"]
        if not tools_seen:
            return [tc("execute_code", code="rows = [3, 4, 5]\nprint(sum(rows))")]
        if len(tools_seen) == 1:
            assert json.loads(tools_seen[0].content)["output"] == "12\n"  # it remembers iteration 1
            return [tc("execute_code", code="total = sum(rows) * 2")]
        return [tc("FINAL", answer="The total is 24")]

    runner, backend = make_agent(script)
    result = run(runner.run("sum the rows twice"))
    assert result.answer == "The total is 24" and result.answer_source == "final"
    assert result.iterations == 3 and len(backend.requests) == 3  # no extra call after FINAL
    assert [s.action for s in result.iteration_summaries] == ["execute_code", "execute_code", "FINAL"]
    tool_names = {t.name for t in backend.requests[0].tools}
    assert {"FINAL", "FINAL_VAR", "execute_code"} <= tool_names
    system = backend.requests[0].messages[0].text
    assert "FINAL(answer)" in system and all(name in system for name in tool_names)
    assert runner.status.state == "completed"


def test_final_var_reads_the_real_variable(make_agent):
    runner, _ = make_agent([[tc("execute_code", code="answer = 6 * 7")], [tc("FINAL_VAR", name="answer")]])
    result = run(runner.run("compute"))
    assert result.answer == "42" and result.answer_source == "final_var"


def test_final_var_of_missing_variable_is_a_clear_tool_error(make_agent):
    runner, backend = make_agent([[tc("FINAL_VAR", name="nope")], [tc("FINAL", answer="fallback")]])
    result = run(runner.run("x"))
    error = json.loads(backend.requests[1].messages[-1].content)["error"]
    assert "no variable named 'nope'" in error
    assert result.answer == "fallback"


def loop_forever(request):
    if request.tool_choice == "none":
        return "best so far"
    return [tc("execute_code", code="print(1)")]


def test_iteration_limit_forces_an_answer(make_agent):
    runner, backend = make_agent(loop_forever, max_iterations=3)
    result = run(runner.run("x"))
    assert result.answer_source == "forced" and result.forced_termination and result.answer == "best so far"
    assert result.limit_hit == "max_turns" and result.iterations == 3


def test_token_budget_forces_an_answer(make_agent):
    # the first call reserves a token per byte of its prompt (no usage seen yet): the budget leaves room
    runner, _ = make_agent(loop_forever, token_budget=9_000, backend_kwargs={"usage": (900, 100)})
    result = run(runner.run("x"))
    assert result.answer_source == "forced" and result.limit_hit == "token_budget"
    assert result.answer == "best so far" and result.total_tokens <= 9_000


def test_a_budget_too_small_for_any_turn_is_no_answer_and_no_spending(make_agent):
    runner, backend = make_agent(loop_forever, token_budget=10, backend_kwargs={"usage": (900, 100)})
    result = run(runner.run("x"))
    assert result.answer_source == "error" and result.error_type == "BudgetExceeded"
    assert result.total_tokens == 0 and backend.requests == []


def test_cost_limit_forces_an_answer(make_agent, tmp_path):
    (tmp_path / "rlm.toml").write_text('[pricing."fake-model"]\ninput_per_mtok = 1000.0\noutput_per_mtok = 1000.0\n')
    runner, _ = make_agent(loop_forever, cost_limit=5.0, token_budget=None, backend_kwargs={"usage": (100, 50)})
    result = run(runner.run("x"))
    assert result.answer_source == "forced" and result.limit_hit == "cost_limit"
    assert result.total_cost is not None and result.total_cost <= 5.0


def test_whole_run_timeout(make_agent):
    @tool
    async def slow() -> str:
        """Slow."""
        await asyncio.sleep(0.5)
        return "done"

    def script(request):
        return "partial" if request.tool_choice == "none" else [tc("slow")]

    runner, _ = make_agent(script, timeout=1.5, tools=[slow])
    started = time.monotonic()
    result = run(runner.run("x"))
    assert result.answer_source == "forced" and result.limit_hit == "timeout"
    assert time.monotonic() - started < 2.5


def test_cancel_during_a_slow_tool_is_prompt(make_agent):
    @tool
    async def slow() -> str:
        """Very slow."""
        await asyncio.sleep(30)
        return "never"

    runner, backend = make_agent([[tc("slow")]], tools=[slow])

    async def scenario():
        task = asyncio.create_task(runner.run("x"))
        while runner.status.last_action != "running slow":
            await asyncio.sleep(0.02)
        assert runner.status.state == "running" and runner.status.iteration == 1
        started = time.monotonic()
        runner.cancel()
        result = await task
        return result, time.monotonic() - started

    result, took = run(scenario())
    assert result.answer_source == "cancelled" and runner.status.state == "cancelled"
    assert took < 1.0
    events = read_trajectory(f"logs/{result.trajectory_id}.jsonl")
    assert events[-1]["type"] == "run_end" and events[-1]["answer_source"] == "cancelled"


def test_auth_error_ends_the_run_at_once(make_agent):
    runner, backend = make_agent([AuthenticationError("Invalid API key", fix="check OPENAI_API_KEY")])
    result = run(runner.run("x"))
    assert result.answer_source == "error" and "Invalid API key" in result.error
    assert len(backend.requests) == 1 and runner.status.state == "failed"


def test_one_trajectory_tree_for_the_run(make_agent):
    def script(request):
        if request.messages[1].text == "sub":
            return "sub answer"
        if any(m.role == "tool" for m in request.messages):
            return [tc("FINAL", answer="ok")]
        return [tc("rlm_sub_complete", query="sub")]

    runner, _ = make_agent(script)
    result = run(runner.run("x"))
    events = read_trajectory(f"logs/{result.trajectory_id}.jsonl")
    assert {e["trajectory_id"] for e in events} == {result.trajectory_id}
    top = events[0]["call_id"]
    sub = next(e for e in events if e["type"] == "call_start")
    assert sub["parent_call_id"] == top and sub["depth"] == 1


def test_hard_caps_clamp_with_warnings(make_agent):
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        runner, _ = make_agent(["x"], max_iterations=500, cost_limit=99.0, timeout=9999, max_depth=9)
    assert (runner.max_iterations, runner.cost_limit, runner.timeout) == (50, 10.0, 600.0)
    assert runner.config.max_depth == 5
    clamped = {e["setting"] for e in logs if e["event"] == "limit_clamped"}
    assert {"max_iterations", "cost_limit", "timeout", "max_depth"} <= clamped


def test_paper_style_protocol_final_marker(make_agent):
    runner, backend = make_agent(["```repl\nx = 5\n```", "FINAL_VAR(x)"], protocol="repl")
    result = run(runner.run("x"))
    assert result.answer == "5" and result.answer_source == "final_var"
