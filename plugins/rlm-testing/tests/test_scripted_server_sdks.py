"""The scripted LLM server through the real ``openai`` and ``anthropic`` SDKs (skipped when not installed)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from rlm_testing.server import Reply, ScriptedLLMServer

TOOLS_OPENAI = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
TOOLS_ANTHROPIC = [
    {
        "name": "get_weather",
        "description": "Weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]
HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def openai_client(scripted_llm: ScriptedLLMServer) -> Any:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(api_key="sk-test-key", base_url=scripted_llm.openai_base_url, max_retries=0, timeout=5)
    yield client
    client.close()


@pytest.fixture
def anthropic_client(scripted_llm: ScriptedLLMServer) -> Any:
    anthropic = pytest.importorskip("anthropic")
    client = anthropic.Anthropic(api_key="ak-test", base_url=scripted_llm.anthropic_base_url, max_retries=0, timeout=5)
    yield client
    client.close()


# --- openai -----------------------------------------------------------------------


def test_openai_text(scripted_llm: ScriptedLLMServer, openai_client: Any) -> None:
    scripted_llm.script([Reply.text("Hello from the script.", input_tokens=10, output_tokens=5)])
    resp = openai_client.chat.completions.create(model="gpt-4o-mini", messages=HI, temperature=0)
    assert resp.choices[0].message.content == "Hello from the script."
    assert resp.choices[0].finish_reason == "stop"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (10, 5, 15)
    sent = scripted_llm.last_request
    assert sent.path == "/v1/chat/completions" and sent.header("authorization") == "Bearer sk-test-key"
    assert sent.body["messages"] == HI and sent.body["temperature"] == 0


def test_openai_tool_calls_round_trip(scripted_llm: ScriptedLLMServer, openai_client: Any) -> None:
    scripted_llm.script(
        [
            Reply.tool_calls(("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})),
            Reply.text("Paris 21, Oslo 9."),
        ]
    )
    first = openai_client.chat.completions.create(model="gpt-4o-mini", messages=HI, tools=TOOLS_OPENAI)
    calls = first.choices[0].message.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Oslo"}),
    ]
    assert first.choices[0].finish_reason == "tool_calls"
    history = [
        *HI,
        first.choices[0].message.model_dump(exclude_none=True),
        *({"role": "tool", "tool_call_id": c.id, "content": '{"t": 1}'} for c in calls),
    ]
    second = openai_client.chat.completions.create(model="gpt-4o-mini", messages=history, tools=TOOLS_OPENAI)
    assert second.choices[0].message.content == "Paris 21, Oslo 9."
    sent = scripted_llm.last_request.body["messages"]
    assert [m.get("tool_call_id") for m in sent if m["role"] == "tool"] == [c.id for c in calls]
    assert scripted_llm.requests[0].body["tools"] == TOOLS_OPENAI


def test_openai_stream_text_and_usage(scripted_llm: ScriptedLLMServer, openai_client: Any) -> None:
    scripted_llm.script([Reply.text("streamed in pieces", input_tokens=4, output_tokens=3)])
    stream = openai_client.chat.completions.create(
        model="gpt-4o-mini", messages=HI, stream=True, stream_options={"include_usage": True}
    )
    pieces, usage = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage
    assert pieces == ["streamed", " in", " pieces"]
    assert (usage.prompt_tokens, usage.completion_tokens) == (4, 3)


def test_openai_stream_tool_calls_assemble(scripted_llm: ScriptedLLMServer, openai_client: Any) -> None:
    args = {"city": "Paris", "unit": "celsius"}
    scripted_llm.script([Reply.tool_calls(("get_weather", args), ("get_weather", {"city": "Rome"}))])
    stream = openai_client.chat.completions.create(model="gpt-4o-mini", messages=HI, tools=TOOLS_OPENAI, stream=True)
    calls: dict[int, dict[str, str]] = {}
    for chunk in stream:
        for tc in chunk.choices[0].delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            slot["id"] += tc.id or ""
            slot["name"] += (tc.function.name or "") if tc.function else ""
            slot["arguments"] += (tc.function.arguments or "") if tc.function else ""
    assert [json.loads(calls[i]["arguments"]) for i in sorted(calls)] == [args, {"city": "Rome"}]
    assert all(c["id"] and c["name"] == "get_weather" for c in calls.values())


def test_openai_response_format_recorded(scripted_llm: ScriptedLLMServer, openai_client: Any) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
        "additionalProperties": False,
    }
    scripted_llm.script([Reply.json({"n": 3})])
    rf = {"type": "json_schema", "json_schema": {"name": "count", "schema": schema, "strict": True}}
    resp = openai_client.chat.completions.create(model="gpt-4o-mini", messages=HI, response_format=rf)
    assert json.loads(resp.choices[0].message.content) == {"n": 3}
    assert scripted_llm.last_request.body["response_format"] == rf


def test_openai_models_list(scripted_llm: ScriptedLLMServer, openai_client: Any) -> None:
    assert "gpt-4o-mini" in [m.id for m in openai_client.models.list()]


@pytest.mark.parametrize(
    ("step", "error_name", "check"),
    [
        (Reply.rate_limited(retry_after=2), "RateLimitError", lambda e: e.response.headers["retry-after"] == "2"),
        (Reply.server_error(), "InternalServerError", lambda e: e.status_code == 500),
        (Reply.invalid_api_key(), "AuthenticationError", lambda e: e.code == "invalid_api_key"),
        (Reply.model_not_found(), "NotFoundError", lambda e: e.code == "model_not_found"),
        (Reply.context_too_long(), "BadRequestError", lambda e: e.code == "context_length_exceeded"),
    ],
)
def test_openai_errors(
    scripted_llm: ScriptedLLMServer, openai_client: Any, step: Reply, error_name: str, check: Any
) -> None:
    openai = pytest.importorskip("openai")
    scripted_llm.script([step])
    with pytest.raises(getattr(openai, error_name)) as info:
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert check(info.value)


def test_openai_error_before_stream(scripted_llm: ScriptedLLMServer, openai_client: Any) -> None:
    openai = pytest.importorskip("openai")
    scripted_llm.script([Reply.invalid_api_key()])
    with pytest.raises(openai.AuthenticationError):
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True)


def test_openai_sdk_honours_retry_after(scripted_llm: ScriptedLLMServer) -> None:
    openai = pytest.importorskip("openai")
    scripted_llm.script([Reply.rate_limited(retry_after=0.3), Reply.text("patience")])
    with openai.OpenAI(api_key="k", base_url=scripted_llm.openai_base_url, max_retries=1) as client:
        resp = client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert resp.choices[0].message.content == "patience"
    first, second = scripted_llm.requests
    assert second.time - first.time >= 0.3


def test_openai_timeout_drop_and_malformed(scripted_llm: ScriptedLLMServer) -> None:
    openai = pytest.importorskip("openai")
    scripted_llm.script([Reply.slow(2.0), Reply.drop(), Reply.malformed()])
    with openai.OpenAI(api_key="k", base_url=scripted_llm.openai_base_url, max_retries=0, timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model="gpt-4o-mini", messages=HI)
        assert time.monotonic() - started < 1.5
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model="gpt-4o-mini", messages=HI)
        with pytest.raises((openai.APIError, json.JSONDecodeError)):
            client.chat.completions.create(model="gpt-4o-mini", messages=HI)


def test_openai_script_exhausted_is_not_retried(scripted_llm: ScriptedLLMServer) -> None:
    openai = pytest.importorskip("openai")
    with openai.OpenAI(api_key="k", base_url=scripted_llm.openai_base_url, max_retries=3) as client:
        with pytest.raises(openai.InternalServerError, match="script exhausted after 0 requests"):
            client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert len(scripted_llm.requests) == 1, "x-should-retry: false stops the SDK's retries"


# --- anthropic ----------------------------------------------------------------------


def test_anthropic_text(scripted_llm: ScriptedLLMServer, anthropic_client: Any) -> None:
    scripted_llm.script([Reply.text("Bonjour.", input_tokens=8, output_tokens=2)])
    msg = anthropic_client.messages.create(model="claude-x", max_tokens=64, system="Be brief.", messages=HI)
    assert [b.type for b in msg.content] == ["text"] and msg.content[0].text == "Bonjour."
    assert msg.stop_reason == "end_turn"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (8, 2)
    sent = scripted_llm.last_request
    assert sent.path == "/v1/messages" and sent.header("anthropic-version")
    assert "ak-test" in (sent.header("x-api-key"), (sent.header("authorization") or "").removeprefix("Bearer "))
    assert sent.body["system"] == "Be brief." and sent.body["max_tokens"] == 64


def test_anthropic_tool_use_round_trip(scripted_llm: ScriptedLLMServer, anthropic_client: Any) -> None:
    scripted_llm.script([Reply.tool_calls(("get_weather", {"city": "Paris"}), text="Checking."), Reply.text("21 C.")])
    first = anthropic_client.messages.create(model="claude-x", max_tokens=64, messages=HI, tools=TOOLS_ANTHROPIC)
    assert first.stop_reason == "tool_use"
    text, use = first.content
    assert text.text == "Checking." and (use.type, use.name, use.input) == (
        "tool_use",
        "get_weather",
        {"city": "Paris"},
    )
    history = [
        *HI,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "21"}]},
    ]
    second = anthropic_client.messages.create(model="claude-x", max_tokens=64, messages=history, tools=TOOLS_ANTHROPIC)
    assert second.content[0].text == "21 C."
    sent = scripted_llm.last_request.body
    assert sent["messages"][-1]["content"][0]["tool_use_id"] == use.id
    assert sent["tools"] == TOOLS_ANTHROPIC


def test_anthropic_stream_text(scripted_llm: ScriptedLLMServer, anthropic_client: Any) -> None:
    scripted_llm.script([Reply.text("a streamed answer", input_tokens=6, output_tokens=3)])
    with anthropic_client.messages.stream(model="claude-x", max_tokens=64, messages=HI) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert pieces == ["a", " streamed", " answer"]
    assert final.content[0].text == "a streamed answer" and final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (6, 3)
    assert scripted_llm.last_request.stream


def test_anthropic_stream_tool_use(scripted_llm: ScriptedLLMServer, anthropic_client: Any) -> None:
    args = {"city": "Paris", "days": [1, 2, 3]}
    scripted_llm.script([Reply.tool_calls(("get_weather", args), ("get_weather", {"city": "Oslo"}))])
    with anthropic_client.messages.stream(model="claude-x", max_tokens=64, messages=HI, tools=TOOLS_ANTHROPIC) as s:
        final = s.get_final_message()
    assert [(b.type, b.input) for b in final.content] == [("tool_use", args), ("tool_use", {"city": "Oslo"})]
    assert final.stop_reason == "tool_use"


def test_anthropic_raw_stream_events(scripted_llm: ScriptedLLMServer, anthropic_client: Any) -> None:
    scripted_llm.script([Reply.text("hi you")])
    events = list(anthropic_client.messages.create(model="claude-x", max_tokens=8, messages=HI, stream=True))
    types = [e.type for e in events]
    assert types[0] == "message_start" and types[-1] == "message_stop"
    assert types.count("content_block_delta") == 2 and "message_delta" in types


@pytest.mark.parametrize(
    ("step", "error_name", "error_type"),
    [
        (Reply.rate_limited(retry_after=1), "RateLimitError", "rate_limit_error"),
        (Reply.server_error(), "InternalServerError", "api_error"),
        (Reply.overloaded(), "InternalServerError", "overloaded_error"),
        (Reply.invalid_api_key(), "AuthenticationError", "authentication_error"),
        (Reply.model_not_found(), "NotFoundError", "not_found_error"),
        (Reply.context_too_long(), "BadRequestError", "invalid_request_error"),
    ],
)
def test_anthropic_errors(
    scripted_llm: ScriptedLLMServer, anthropic_client: Any, step: Reply, error_name: str, error_type: str
) -> None:
    anthropic = pytest.importorskip("anthropic")
    scripted_llm.script([step])
    with pytest.raises(getattr(anthropic, error_name)) as info:
        anthropic_client.messages.create(model="claude-x", max_tokens=8, messages=HI)
    assert info.value.body["error"]["type"] == error_type
    if error_name == "BadRequestError":
        assert "prompt is too long" in str(info.value)


def test_anthropic_sdk_retries_then_succeeds(scripted_llm: ScriptedLLMServer) -> None:
    anthropic = pytest.importorskip("anthropic")
    scripted_llm.script([Reply.rate_limited(retry_after=0.2), Reply.server_error(retry_after=0.05), Reply.text("ok")])
    with anthropic.Anthropic(api_key="k", base_url=scripted_llm.anthropic_base_url, max_retries=2) as client:
        msg = client.messages.create(model="claude-x", max_tokens=8, messages=HI)
    assert msg.content[0].text == "ok"
    first, second, _ = scripted_llm.requests
    assert second.time - first.time >= 0.2


def test_anthropic_timeout_and_drop(scripted_llm: ScriptedLLMServer) -> None:
    anthropic = pytest.importorskip("anthropic")
    scripted_llm.script([Reply.slow(2.0), Reply.drop()])
    with anthropic.Anthropic(api_key="k", base_url=scripted_llm.anthropic_base_url, max_retries=0, timeout=0.3) as c:
        with pytest.raises(anthropic.APITimeoutError):
            c.messages.create(model="claude-x", max_tokens=8, messages=HI)
        with pytest.raises(anthropic.APIConnectionError):
            c.messages.create(model="claude-x", max_tokens=8, messages=HI)


def test_async_clients(scripted_llm: ScriptedLLMServer) -> None:
    openai = pytest.importorskip("openai")
    anthropic = pytest.importorskip("anthropic")
    import asyncio

    scripted_llm.script([Reply.text("async openai"), Reply.text("async anthropic")])

    async def go() -> tuple[str, str]:
        async with openai.AsyncOpenAI(api_key="k", base_url=scripted_llm.openai_base_url) as oc:
            a = await oc.chat.completions.create(model="gpt-4o-mini", messages=HI)
        async with anthropic.AsyncAnthropic(api_key="k", base_url=scripted_llm.anthropic_base_url) as ac:
            b = await ac.messages.create(model="claude-x", max_tokens=8, messages=HI)
        return a.choices[0].message.content, b.content[0].text

    assert asyncio.run(go()) == ("async openai", "async anthropic")
