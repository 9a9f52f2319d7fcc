"""End to end through the public API: the installed kernel, env-local and the OpenAI backend (real SDK)
against the scripted LLM server over real HTTP."""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("rlm_backend_openai")
pytest.importorskip("rlm_env_local")

from rlm import RLM  # noqa: E402
from rlm.trajectory import read_trajectory  # noqa: E402
from rlm_testing.server import Reply  # noqa: E402

MODEL = "openai/gpt-4o-mini"


def make(server, **settings):
    settings.setdefault("environment", "local")
    return RLM(model=MODEL, api_base=server.openai_base_url, **settings)


def tool_messages(request):
    return [m for m in request.body["messages"] if m["role"] == "tool"]


def test_multi_turn_tool_use_with_the_local_sandbox(scripted_llm):
    scripted_llm.script([
        Reply.tool_calls(("execute_code", {"code": "rows = [3, 4, 5]\nprint(sum(rows))"})),
        Reply.tool_calls(("execute_code", {"code": "total = sum(rows) * 2\ntotal"})),
        Reply.text("The doubled total is 24."),
    ])
    result = make(scripted_llm).completion_sync("Sum and double")
    assert result.success, result.error
    assert result.response == "The doubled total is 24." and result.total_calls == 3
    second, third = scripted_llm.requests[1], scripted_llm.requests[2]
    assert json.loads(tool_messages(second)[0]["content"]) == {"output": "12\n"}
    assert json.loads(tool_messages(third)[-1]["content"]) == {"output": "", "value": "24"}  # state was kept
    assert second.body["tools"] and {t["function"]["name"] for t in second.body["tools"]} >= {"execute_code"}


def test_parallel_tool_calls_in_one_turn(scripted_llm):
    scripted_llm.script([
        Reply.tool_calls(("execute_code", {"code": "a = 1\nprint('a')"}), ("execute_code", {"code": "print('b')"})),
        Reply.text("both ran"),
    ])
    result = make(scripted_llm).completion_sync("go")
    assert result.total_tool_calls == 2
    outputs = sorted(json.loads(m["content"])["output"] for m in tool_messages(scripted_llm.requests[1]))
    assert outputs == ["a\n", "b\n"]


def test_nested_sub_calls_three_deep_share_one_trajectory(scripted_llm, tmp_path):
    def answer(request):
        user = next(m["content"] for m in request.body["messages"] if m["role"] == "user")
        level = int(user.split()[1])
        if any(m["role"] == "tool" for m in request.body["messages"]):
            inner = json.loads(tool_messages(request)[-1]["content"])
            return Reply.text(f"L{level}({inner})")
        if level < 3:
            return Reply.tool_calls(("rlm_sub_complete", {"query": f"level {level + 1}"}))
        return Reply.text("leaf")

    scripted_llm.script(answer)
    result = make(scripted_llm, max_depth=3, token_budget=200_000).completion_sync("level 0")
    assert result.success, result.error
    assert result.response == "L0(L1(L2(leaf)))"
    events = read_trajectory(str(tmp_path / "logs" / f"{result.trajectory_id}.jsonl"))
    calls = {e["call_id"]: e for e in events if e["type"] == "call_start"}
    assert sorted(e["depth"] for e in calls.values()) == [1, 2, 3]
    assert all(e["parent_call_id"] in calls or e["depth"] == 1 for e in calls.values())
    limits = [e["token_limit"] for e in sorted(calls.values(), key=lambda e: e["depth"])]
    assert limits[0] <= 100_000 and limits[1] <= limits[0] // 2 + 1 and limits[2] <= limits[1] // 2 + 1


def test_batch_sub_calls(scripted_llm):
    def answer(request):
        user = next(m["content"] for m in request.body["messages"] if m["role"] == "user")
        if user.startswith("q"):
            return Reply.text(f"answer to {user}")
        if tool_messages(request):
            return Reply.text(tool_messages(request)[-1]["content"])
        return Reply.tool_calls(("rlm_batch_complete", {"queries": ["q1", "q2", "q3"]}))

    scripted_llm.script(answer)
    result = make(scripted_llm).completion_sync("fan out")
    assert json.loads(result.response) == ["answer to q1", "answer to q2", "answer to q3"]
    assert result.total_calls == 5


def test_turn_limit_is_hit_gracefully(scripted_llm):
    def answer(request):
        if request.body.get("tool_choice") == "none":
            return Reply.text("best effort answer")
        return Reply.tool_calls(("execute_code", {"code": "print(1)"}))

    scripted_llm.script(answer)
    result = make(scripted_llm, max_turns=2).completion_sync("loop")
    assert result.success and result.limit_hit == "max_turns" and result.response == "best effort answer"


def test_paper_style_protocol_with_llm_query_inside_the_local_repl(scripted_llm):
    def answer(request):
        messages = request.body["messages"]
        if messages[0]["content"].startswith("Answer the request"):
            return Reply.text(messages[-1]["content"].upper())
        if len(messages) == 2:
            return Reply.text("```repl\nparts = context.split(',')\nloud = llm_query_batched(parts)\nprint(loud)\n```")
        return Reply.text("FINAL_VAR(loud)")

    scripted_llm.script(answer)
    result = make(scripted_llm, protocol="repl").completion_sync("a,b")
    assert result.success, result.error
    assert json.loads(result.response) == ["A", "B"]
    assert "REPL output:\n['A', 'B']" in scripted_llm.requests[3].body["messages"][-1]["content"]


def test_structured_output_valid_and_invalid(scripted_llm):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    scripted_llm.script([Reply.json({"n": 3})])
    ok = make(scripted_llm).completion_sync("n?", response_format={"name": "count", "schema": schema})
    assert ok.parsed == {"n": 3}
    sent = scripted_llm.requests[0].body["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["schema"] == schema
    scripted_llm.script([Reply.json({"n": "three"}), Reply.json({"m": 1})])
    bad = make(scripted_llm).completion_sync("n?", response_format={"name": "count", "schema": schema})
    assert not bad.success and bad.error.startswith("Structured output invalid: /: missing required property 'n'")


def test_streaming_through_the_sdk(scripted_llm):
    scripted_llm.script([Reply.text("streamed words arrive in order")])
    rlm = make(scripted_llm)

    async def consume():
        try:
            return [chunk async for chunk in rlm.stream("talk")]
        finally:
            await rlm.aclose()

    chunks = asyncio.run(consume())
    assert "".join(chunks) == "streamed words arrive in order" and len(chunks) > 1
    assert scripted_llm.requests[0].body["stream"] is True
