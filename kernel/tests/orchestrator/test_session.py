"""Persistent sessions: completions that share one REPL and one conversation (rlm.session)."""

from __future__ import annotations

import asyncio

import pytest

from rlm.errors import ConfigError

from .conftest import FakeEnvironment, call


def repl_script(request):
    """First task: define a variable; second task: read it (and the first answer) back."""
    users = [m.text for m in request.messages if m.role == "user"]
    last = users[-1]
    if last.startswith("REPL output"):
        return "FINAL_VAR(out)"
    if "Next task" in last:
        return "```repl\nout = f'{secret * 2} after {answer_0!r} for {context_1}'\n```"
    return "```repl\nsecret = 21\nout = 'stored'\n```"


def test_a_second_completion_sees_the_first_ones_variables_and_answer(make_rlm):
    rlm, backend = make_rlm(repl_script, protocol="repl")

    async def main():
        async with rlm.session() as s:
            first = await s.completion("store a secret")
            second = await s.completion("use it")
            env = FakeEnvironment.instances[0]
            assert not env.closed  # the REPL lives as long as the session
            return first, second, env

    first, second, env = asyncio.run(main())
    assert first.response == "stored"
    assert second.response == "42 after 'stored' for use it"
    assert env.closed and len(FakeEnvironment.instances) == 1  # one REPL for both, closed with the session
    # the conversation went on: the second completion's first request holds the first task and its answer
    second_request = [r for r in backend.requests if any("Next task" in m.text for m in r.messages)][0]
    texts = [m.text for m in second_request.messages]
    assert any("store a secret" in t for t in texts) and any("FINAL_VAR(out)" in t for t in texts)
    assert first.trajectory_id != second.trajectory_id  # each completion is a run of its own


def test_the_sync_twin_keeps_the_repl_between_calls(make_rlm):
    rlm, _backend = make_rlm(repl_script, protocol="repl")
    with rlm.session_sync() as s:
        assert s.completion("store a secret").response == "stored"
        assert s.completion("use it").response.startswith("42 after")
    assert FakeEnvironment.instances[0].closed


def test_without_a_session_completions_start_from_zero(make_rlm):
    rlm, _backend = make_rlm(repl_script, protocol="repl")
    assert rlm.completion_sync("store a secret").response == "stored"
    FakeEnvironment.instances.clear()
    result = rlm.completion_sync("use it")  # a new run: no conversation, no `secret`
    assert "Next task" not in str(result.events[1:3])
    assert FakeEnvironment.instances and FakeEnvironment.instances[0].closed


def test_the_tools_protocol_keeps_the_conversation_and_the_repl(make_rlm):
    def script(request):
        last = request.messages[-1]
        if last.role == "tool":
            return "done: " + last.text
        if last.text == "first":
            return [call("execute_code", code="x = 5")]
        return [call("execute_code", code="print(x + 1)")]

    rlm, backend = make_rlm(script, protocol="tools")

    async def main():
        async with rlm.session() as s:
            await s.completion("first")
            return await s.completion("second")

    result = asyncio.run(main())
    assert result.success and '"6\\n"' in result.response
    assert [m.text for m in backend.requests[-2].messages if m.role == "user"] == ["first", "second"]


def test_a_closed_session_and_a_protocol_switch_are_clear_errors(make_rlm):
    rlm, _backend = make_rlm(repl_script, protocol="repl")

    async def main():
        s = rlm.session()
        await s.completion("store a secret")
        with pytest.raises(ConfigError, match="repl protocol"):
            await s.completion("use it", protocol="tools")
        await s.aclose()
        with pytest.raises(ConfigError, match="closed"):
            await s.completion("again")

    asyncio.run(main())
