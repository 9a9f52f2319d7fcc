"""A persistent session end to end: the real openai SDK against the scripted server, the real local sandbox;
the second completion reads a variable the first one's code defined."""

from __future__ import annotations

import asyncio

import pytest

from rlm import RLM
from rlm_testing.server import Reply


def test_a_two_completion_session_sees_the_first_completions_variable(scripted_llm, tmp_path, monkeypatch):
    pytest.importorskip("rlm_backend_openai")
    pytest.importorskip("rlm_env_local")
    monkeypatch.chdir(tmp_path)
    scripted_llm.script([
        Reply.text("```repl\nsecret = 6 * 7\nprint('stored')\n```"),
        Reply.text("FINAL(stored it)"),
        Reply.text("```repl\nprint(secret, answer_0, context_1)\n```"),
        Reply.text("FINAL(42)"),
    ])
    rlm = RLM(model="openai/gpt-4o-mini", api_base=scripted_llm.base_url("openai"), environment="local",
              protocol="repl", log_dir=str(tmp_path / "logs"))

    async def main():
        async with rlm.session() as s:
            first = await s.completion("compute and keep a secret")
            second = await s.completion("what was the secret?")
        await rlm.aclose()
        return first, second

    first, second = asyncio.run(main())
    assert (first.response, second.response) == ("stored it", "42")
    # the REPL output of the second completion's code came from the first completion's variables
    output = [e for e in second.events if e["type"] == "repl_execution"][0]["output"]
    assert output == "42 stored it what was the secret?\n"
    # the conversation went on: the second completion's first request carries the first task
    third_request = scripted_llm.requests[2].body["messages"]
    assert any("compute and keep a secret" in str(m.get("content")) for m in third_request)
