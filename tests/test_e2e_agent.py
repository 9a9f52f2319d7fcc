"""AgentRunner end to end: env-local and the OpenAI backend (real SDK) against the scripted server."""

from __future__ import annotations

import asyncio
import time

import pytest

pytest.importorskip("rlm_backend_openai")
pytest.importorskip("rlm_env_local")

from rlm.agent import AgentRunner  # noqa: E402
from rlm.trajectory import read_trajectory  # noqa: E402
from rlm_testing.server import Reply  # noqa: E402


def runner(server, **kwargs):
    return AgentRunner(model="openai/gpt-4o-mini", environment="local", api_base=server.openai_base_url, **kwargs)


def test_multi_iteration_run_ends_with_final_var(scripted_llm, tmp_path):
    scripted_llm.script([
        Reply.tool_calls(("execute_code", {"code": "rows = [1, 2, 3]\nprint(len(rows))"})),
        Reply.tool_calls(("execute_code", {"code": "answer = sum(rows) * 7"})),
        Reply.tool_calls(("FINAL_VAR", {"name": "answer"})),
    ])
    result = asyncio.run(runner(scripted_llm).run("compute"))
    assert result.answer == "42" and result.answer_source == "final_var" and result.iterations == 3
    assert len(scripted_llm.requests) == 3  # nothing after FINAL_VAR
    events = read_trajectory(str(tmp_path / "logs" / f"{result.trajectory_id}.jsonl"))
    assert events[0]["type"] == "run_start" and events[-1]["type"] == "run_end"


def test_auth_error_ends_the_run_at_once(scripted_llm):
    scripted_llm.script([Reply.invalid_api_key()])
    result = asyncio.run(runner(scripted_llm, max_iterations=10).run("x"))
    assert result.answer_source == "error" and result.error_type == "AuthenticationError"
    assert len(scripted_llm.requests) == 1


def test_cancel_during_slow_code_in_the_sandbox(scripted_llm):
    scripted_llm.script([Reply.tool_calls(("execute_code", {"code": "import time\ntime.sleep(30)"}))])
    agent = runner(scripted_llm)

    async def scenario():
        task = asyncio.create_task(agent.run("x"))
        while agent.status.last_action != "running execute_code":
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        started = time.monotonic()
        agent.cancel()
        result = await task
        return result, time.monotonic() - started

    result, took = asyncio.run(scenario())
    assert result.answer_source == "cancelled" and took < 2.0


def test_whole_run_timeout_forces_an_answer(scripted_llm):
    def answer(request):
        if request.body.get("tool_choice") == "none":
            return Reply.text("partial answer")
        return Reply.tool_calls(("execute_code", {"code": "import time\ntime.sleep(0.6)"}))

    scripted_llm.script(answer)
    result = asyncio.run(runner(scripted_llm, timeout=3).run("x"))
    assert result.answer_source == "forced" and result.limit_hit == "timeout" and result.answer == "partial answer"
