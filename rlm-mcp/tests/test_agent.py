"""Agent tools over stdio: run -> status -> completed/failed/cancelled, with the configured model.

The runs reach the scripted LLM server through the openai backend; the model
the server recorded proves which model the run used.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from rlm_testing.server import Reply

pytest.importorskip("rlm_backend_openai")

FINAL_STEPS = [Reply.tool_calls(("execute_code", {"code": "print(6 * 7)"}), input_tokens=100, output_tokens=20),
               Reply.tool_calls(("FINAL", {"answer": "42"}), input_tokens=150, output_tokens=10)]


async def wait_done(session, run_id, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        status = (await session.call_tool("rlm_agent_status", {"run_id": run_id})).structured_content
        if status["state"] != "running" or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.1)


def test_agent_run_completes_with_answer_cost_and_configured_model(connect, llm):
    llm.script(FINAL_STEPS)

    async def main():
        async with connect() as s:
            started = time.monotonic()
            run = (await s.call_tool("rlm_agent_run", {"task": "What is six times seven?",
                                                       "max_iterations": 5})).structured_content
            returned_in = time.monotonic() - started
            return run, returned_in, await wait_done(s, run["run_id"])

    run, returned_in, status = asyncio.run(main())
    assert run["state"] == "running" and run["run_id"].startswith("run-") and returned_in < 5
    assert status["state"] == "completed", status
    assert status["answer"] == "42" and status["answer_source"] == "final"
    assert status["total_tokens"] == 280 and status["iterations"] == 2
    assert abs(status["total_cost_usd"] - (250 * 1.0 + 30 * 2.0) / 1e6) < 1e-9
    assert status["model"] == "openai/mcp-test-model"
    assert [r.body["model"] for r in llm.requests] == ["mcp-test-model", "mcp-test-model"]


def test_model_option_overrides_the_configured_model(connect, llm):
    llm.script([Reply.text("done")])

    async def main():
        async with connect("--model", "openai/other-model") as s:
            run = (await s.call_tool("rlm_agent_run", {"task": "say done"})).structured_content
            return await wait_done(s, run["run_id"])

    status = asyncio.run(main())
    assert status["state"] == "completed" and status["answer"] == "done"
    assert llm.requests[0].body["model"] == "other-model"


def test_agent_cancel_reports_cancelled(connect, llm):
    llm.script([Reply.slow(60)])

    async def main():
        async with connect() as s:
            run = (await s.call_tool("rlm_agent_run", {"task": "take your time"})).structured_content
            await asyncio.to_thread(llm.wait_for_requests, 1, 15.0)
            running = (await s.call_tool("rlm_agent_status", {"run_id": run["run_id"]})).structured_content
            cancelled = (await s.call_tool("rlm_agent_cancel", {"run_id": run["run_id"]})).structured_content
            later = (await s.call_tool("rlm_agent_status", {"run_id": run["run_id"]})).structured_content
            unknown = await s.call_tool("rlm_agent_status", {"run_id": "run-nope"})
            return running, cancelled, later, unknown

    running, cancelled, later, unknown = asyncio.run(main())
    assert running["state"] == "running"
    assert cancelled["state"] == "cancelled" and later["state"] == "cancelled"
    assert later["answer_source"] == "cancelled" and later["answer"] == ""
    assert unknown.is_error and "run-nope" in unknown.structured_content["error"]


def test_agent_failure_reports_failed_with_error(connect, llm):
    llm.script([Reply.invalid_api_key()])

    async def main():
        async with connect() as s:
            run = (await s.call_tool("rlm_agent_run", {"task": "anything"})).structured_content
            return await wait_done(s, run["run_id"])

    status = asyncio.run(main())
    assert status["state"] == "failed" and status["error"], status
