"""rlm_complete over stdio: one-shot completions and RLM sessions (REPL and conversation kept between calls).

The completions reach the scripted LLM server through the openai backend, with the repl protocol and the
local environment; what the second completion's REPL code printed comes back to the model in its next
request, which the scripted server recorded.
"""

from __future__ import annotations

import asyncio

import pytest
from rlm_testing.server import Reply

pytest.importorskip("rlm_backend_openai")

REPL = {"RLM_PROTOCOL": "repl"}
PROBE = "```repl\ntry:\n    print('secret is', secret)\nexcept NameError:\n    print('secret is missing')\n```"
STORE = [Reply.text("```repl\nsecret = 6 * 7\nprint('stored')\n```"), Reply.text("FINAL(stored it)")]


def complete(session, **arguments):
    return session.call_tool("rlm_complete", arguments)


def request_text(llm, index):
    return str(llm.requests[index].body["messages"])


def test_a_session_keeps_its_repl_and_conversation_between_calls(connect, llm):
    llm.script([*STORE, Reply.text("```repl\nprint(secret, answer_0, context_1)\n```"), Reply.text("FINAL(42)")])

    async def main():
        async with connect(**REPL) as s:
            first = await complete(s, prompt="compute and keep a secret", session_id="chat")
            second = await complete(s, prompt="what was the secret?", session_id="chat", max_turns=5)
            listed = await s.call_tool("list_sessions", {})
            return first, second, listed

    first, second, listed = asyncio.run(main())
    assert not first.is_error and not second.is_error, (first, second)
    one, two = first.structured_content, second.structured_content
    assert (one["answer"], two["answer"]) == ("stored it", "42")
    assert (one["completions"], two["completions"]) == (1, 2)
    assert one["session_id"] == two["session_id"] == "chat"
    assert one["trajectory_id"] != two["trajectory_id"]
    assert two["total_tokens"] > 0 and "total_cost_usd" in two
    # the second completion's code read the first one's variable (and the earlier answer and this input)
    assert "42 stored it what was the secret?" in request_text(llm, 3)
    # the conversation went on: the second completion's first request carries the first task
    assert "compute and keep a secret" in request_text(llm, 2)
    rlm_sessions = listed.structured_content["rlm_sessions"]
    assert [(i["session_id"], i["completions"]) for i in rlm_sessions] == [("chat", 2)]
    assert listed.structured_content["sessions"] == []  # no REPL session of execute_python was started


def test_without_a_session_id_calls_share_nothing(connect, llm):
    llm.script([*STORE, Reply.text(PROBE), Reply.text("FINAL(done)")])

    async def main():
        async with connect(**REPL) as s:
            first = await complete(s, prompt="compute and keep a secret")
            second = await complete(s, prompt="what was the secret?")
            listed = await s.call_tool("list_sessions", {})
            return first, second, listed

    first, second, listed = asyncio.run(main())
    assert first.structured_content["answer"] == "stored it" and second.structured_content["answer"] == "done"
    assert first.structured_content["session_id"] is None and "completions" not in first.structured_content
    assert "secret is missing" in request_text(llm, 3)
    assert "compute and keep a secret" not in request_text(llm, 2)  # no conversation either
    assert listed.structured_content["rlm_sessions"] == []


def test_close_session_closes_the_rlm_session_and_a_later_call_starts_fresh(connect, llm):
    llm.script([*STORE, Reply.text(PROBE), Reply.text("FINAL(fresh)")])

    async def main():
        async with connect(**REPL) as s:
            await complete(s, prompt="compute and keep a secret", session_id="c")
            closed = await s.call_tool("close_session", {"session_id": "c"})
            closed_again = await s.call_tool("close_session", {"session_id": "c"})
            later = await complete(s, prompt="what was the secret?", session_id="c")
            return closed, closed_again, later

    closed, closed_again, later = asyncio.run(main())
    assert closed.structured_content == {"session_id": "c", "closed": True, "repl_session_closed": False,
                                         "rlm_session_closed": True}
    assert closed_again.is_error and "'c'" in closed_again.structured_content["error"]
    assert later.structured_content["answer"] == "fresh" and later.structured_content["completions"] == 1
    assert "secret is missing" in request_text(llm, 3)


def test_the_session_limit_refuses_with_an_error_naming_the_option(connect, llm):
    llm.script([Reply.text("FINAL(a)"), Reply.text("FINAL(one-shot)"), Reply.text("FINAL(b)")])

    async def main():
        async with connect(RLM_PLUGINS__MCP__MAX_RLM_SESSIONS="1", **REPL) as s:
            a = await complete(s, prompt="first", session_id="a")
            refused = await complete(s, prompt="second", session_id="b")
            one_shot = await complete(s, prompt="no session")  # not counted against the limit
            await s.call_tool("close_session", {"session_id": "a"})
            b = await complete(s, prompt="second", session_id="b")
            return a, refused, one_shot, b

    a, refused, one_shot, b = asyncio.run(main())
    assert a.structured_content["answer"] == "a"
    assert refused.is_error
    error = refused.structured_content
    assert "1 RLM sessions are open" in error["error"] and "'b'" in error["error"]
    assert "max_rlm_sessions" in error["fix"] and "close_session" in error["fix"]
    assert one_shot.structured_content["answer"] == "one-shot"
    assert b.structured_content["answer"] == "b" and b.structured_content["completions"] == 1
    assert len(llm.requests) == 3  # the refused call sent nothing


def test_a_failed_completion_is_a_tool_error_with_message_and_fix(connect, llm):
    llm.script([Reply.invalid_api_key(), Reply.text("FINAL(ok)")])

    async def main():
        async with connect(**REPL) as s:
            failed = await complete(s, prompt="anything", session_id="f")
            after = await complete(s, prompt="again", session_id="f")
            bad_id = await complete(s, prompt="anything", session_id="no spaces")
            return failed, after, bad_id

    failed, after, bad_id = asyncio.run(main())
    assert failed.is_error
    error = failed.structured_content
    assert error["error"].startswith("the completion failed") and error["fix"]
    assert "Traceback" not in failed.content[0].text
    assert after.structured_content["answer"] == "ok"  # the session survived the failed completion
    assert after.structured_content["completions"] == 2
    assert bad_id.is_error


def test_a_completion_in_progress_does_not_hold_up_other_tools(connect, llm):
    llm.script([Reply.slow(4.0, Reply.text("FINAL(slow answer)"))])

    async def main():
        async with connect(**REPL) as s:
            pending = asyncio.ensure_future(complete(s, prompt="take your time", session_id="slow"))
            await asyncio.to_thread(llm.wait_for_requests, 1, 15.0)  # the completion is waiting for the model
            started = asyncio.get_running_loop().time()
            other = await s.call_tool("execute_python", {"code": "1 + 1"})
            other_s = asyncio.get_running_loop().time() - started
            too_many_turns = await complete(s, prompt="x", max_turns=51)
            return other, other_s, too_many_turns, pending.done(), await pending

    other, other_s, too_many_turns, done_early, slow = asyncio.run(main())
    assert other.structured_content["value"] == "2" and other_s < 3.5 and not done_early
    assert too_many_turns.is_error and "max_turns" in too_many_turns.structured_content["error"]
    assert slow.structured_content["answer"] == "slow answer"
