"""What the OpenAI backend sends and how it retries, beyond the conformance suite (scripted server, real SDK)."""

from __future__ import annotations

import asyncio
import time

import pytest
from rlm.backend import BackendSettings, LLMRequest, TextDelta, ToolSchema
from rlm.errors import ProviderUnavailableError
from rlm.types import AudioPart, ImagePart, Message, TextPart, ToolCall
from rlm_backend_openai.backend import OpenAIBackend
from rlm_backend_openai.options import OpenAIOptions
from rlm_testing.server import Reply

FAST = OpenAIOptions(retry_base_delay=0.01, retry_max_delay=0.02)
TOOL = ToolSchema(name="get_weather", description="Weather.", parameters={"type": "object", "properties": {}})


def _backend(server, **settings) -> OpenAIBackend:
    values = {"api_key": "k", "base_url": server.openai_base_url, "timeout": 5.0, "max_retries": 2, "options": FAST}
    values.update(settings)
    return OpenAIBackend(settings=BackendSettings(**values))


def _run(backend, request, *, stream=False):
    async def go():
        try:
            if stream:
                return [e async for e in backend.stream(request)]
            return await backend.complete(request)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def test_assistant_tool_calls_go_with_empty_content_and_named_tool_choice(scripted_llm):
    scripted_llm.script([Reply.text("done")])
    call = ToolCall(id="call_9", name="get_weather", arguments={"city": "Oslo"})
    request = LLMRequest(
        model="openai/gpt-4o-mini",
        messages=[Message.user("q"), Message.assistant("", tool_calls=(call,)), Message.tool("call_9", "{}")],
        tools=[TOOL], tool_choice="get_weather",
    )
    _run(_backend(scripted_llm), request)
    body = scripted_llm.last_request.body
    assert body["model"] == "gpt-4o-mini"
    assistant = body["messages"][1]
    assert assistant["content"] == "" and assistant["tool_calls"][0]["id"] == "call_9"
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_audio_and_image_url_parts_are_sent(scripted_llm):
    scripted_llm.script([Reply.text("heard it")])
    message = Message.user((TextPart(text="what is this?"), AudioPart(data=b"RIFFxxxx", format="wav"),
                            ImagePart(url="https://example.com/a.png")))
    _run(_backend(scripted_llm), LLMRequest(model="gpt-4o-audio-preview", messages=[message]))
    parts = scripted_llm.last_request.body["messages"][0]["content"]
    assert {"type": "input_audio", "input_audio": {"data": "UklGRnh4eHg=", "format": "wav"}} in parts
    assert {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}} in parts


def test_strict_structured_output(scripted_llm):
    scripted_llm.script([Reply.json({"a": "x"})])
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    request = LLMRequest(model="gpt-4o-mini", messages=[Message.user("json")],
                         response_format={"name": "thing", "schema": schema})
    assert _run(_backend(scripted_llm), request).message.text == '{"a": "x"}'
    assert scripted_llm.last_request.body["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "thing", "schema": schema, "strict": True}}


def test_server_errors_without_retry_after_back_off_then_succeed(scripted_llm):
    scripted_llm.script([Reply.server_error(), Reply.overloaded(status=503), Reply.text("third time lucky")])
    response = _run(_backend(scripted_llm, max_retries=2), LLMRequest(model="m", messages=[Message.user("x")]))
    assert response.message.text == "third time lucky"
    assert len(scripted_llm.requests) == 3


def test_stream_retries_before_the_first_event(scripted_llm):
    scripted_llm.script([Reply.drop(), Reply.text("streamed after a drop")])
    events = _run(_backend(scripted_llm), LLMRequest(model="m", messages=[Message.user("x")]), stream=True)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "streamed after a drop"
    assert len(scripted_llm.requests) == 2


def test_x_should_retry_false_is_obeyed(scripted_llm):
    scripted_llm.script([])  # an exhausted script answers 500 with x-should-retry: false
    with pytest.raises(ProviderUnavailableError) as info:
        _run(_backend(scripted_llm, max_retries=3), LLMRequest(model="m", messages=[Message.user("x")]))
    assert len(scripted_llm.requests) == 1
    assert "script exhausted" in str(info.value)


def test_request_timeout_overrides_settings(scripted_llm):
    scripted_llm.script([Reply.slow(2.0)])
    started = time.monotonic()
    with pytest.raises(ProviderUnavailableError, match="timed out"):
        _run(_backend(scripted_llm, timeout=30.0, max_retries=0),
             LLMRequest(model="m", messages=[Message.user("x")], timeout=0.2))
    assert time.monotonic() - started < 1.5


def test_max_completion_tokens_for_openai_itself(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    backend = OpenAIBackend(settings=BackendSettings(api_key="k"))
    params = backend._params(LLMRequest(model="openai/o3", messages=[Message.user("x")], max_tokens=5))
    assert params["max_completion_tokens"] == 5 and "max_tokens" not in params
    assert params["model"] == "o3"


def test_capabilities():
    backend = OpenAIBackend(settings=BackendSettings(api_key="k"))
    caps = backend.capabilities("openai/gpt-4o-mini")
    assert (caps.native_tools, caps.json_schema, caps.vision, caps.audio) == (True, True, True, False)
    assert backend.capabilities("gpt-4o-audio-preview").audio
    assert not backend.capabilities("gpt-3.5-turbo").vision
    assert not backend.capabilities("gpt-3.5-turbo").json_schema


def test_one_backend_across_event_loops(scripted_llm):
    scripted_llm.script([Reply.text("first"), Reply.text("second")])
    backend = _backend(scripted_llm)
    request = LLMRequest(model="m", messages=[Message.user("x")])
    assert asyncio.run(backend.complete(request)).message.text == "first"
    assert asyncio.run(backend.complete(request)).message.text == "second", "a client of a closed loop is replaced"
    asyncio.run(backend.aclose())
    asyncio.run(backend.aclose())
