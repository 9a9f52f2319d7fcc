"""What the OpenAI backend sends and how it retries, beyond the conformance suite (scripted server, real SDK)."""

from __future__ import annotations

import time

import pytest
from rlm.backend import BackendSettings, LLMRequest, ToolSchema
from rlm.errors import ProviderUnavailableError
from rlm.types import AudioPart, ImagePart, Message, TextPart, ToolCall
from rlm_backend_openai.backend import OpenAIBackend
from rlm_testing.backend_plugin_suite import fast_backend, run
from rlm_testing.server import Reply

TOOL = ToolSchema(name="get_weather", description="Weather.", parameters={"type": "object", "properties": {}})


def _backend(server, **settings) -> OpenAIBackend:
    return fast_backend(OpenAIBackend, server, **settings)


def test_assistant_tool_calls_go_with_empty_content_and_named_tool_choice(scripted_llm):
    scripted_llm.script([Reply.text("done")])
    call = ToolCall(id="call_9", name="get_weather", arguments={"city": "Oslo"})
    request = LLMRequest(
        model="openai/gpt-4o-mini",
        messages=[Message.user("q"), Message.assistant("", tool_calls=(call,)), Message.tool("call_9", "{}")],
        tools=[TOOL], tool_choice="get_weather",
    )
    run(_backend(scripted_llm), request)
    body = scripted_llm.last_request.body
    assert body["model"] == "gpt-4o-mini"
    assistant = body["messages"][1]
    assert assistant["content"] == "" and assistant["tool_calls"][0]["id"] == "call_9"
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_audio_and_image_url_parts_are_sent(scripted_llm):
    scripted_llm.script([Reply.text("heard it")])
    message = Message.user((TextPart(text="what is this?"), AudioPart(data=b"RIFFxxxx", format="wav"),
                            ImagePart(url="https://example.com/a.png")))
    run(_backend(scripted_llm), LLMRequest(model="gpt-4o-audio-preview", messages=[message]))
    parts = scripted_llm.last_request.body["messages"][0]["content"]
    assert {"type": "input_audio", "input_audio": {"data": "UklGRnh4eHg=", "format": "wav"}} in parts
    assert {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}} in parts


def test_strict_structured_output(scripted_llm):
    scripted_llm.script([Reply.json({"a": "x"})])
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    request = LLMRequest(model="gpt-4o-mini", messages=[Message.user("json")],
                         response_format={"name": "thing", "schema": schema})
    assert run(_backend(scripted_llm), request).message.text == '{"a": "x"}'
    assert scripted_llm.last_request.body["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "thing", "schema": schema, "strict": True}}


def test_request_timeout_overrides_settings(scripted_llm):
    scripted_llm.script([Reply.slow(2.0)])
    started = time.monotonic()
    with pytest.raises(ProviderUnavailableError, match="timed out"):
        run(_backend(scripted_llm, timeout=30.0, max_retries=0),
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


def test_each_base_url_and_key_goes_where_it_belongs(scripted_llm):
    """The SDK client keeps the URL it made for a path (rlm_backend_openai.backend._client_type): backends with
    another base URL or key have clients of their own, each sending to its URL with its key."""
    from rlm_testing.backend_plugin_suite import key_sent

    scripted_llm.script([Reply.text(str(n)) for n in range(4)])
    base = scripted_llm.base_url("openai")
    one = _backend(scripted_llm, base_url=base + "/one", api_key="k-one")
    two = _backend(scripted_llm, base_url=base + "/two", api_key="k-two")
    request = LLMRequest(model="gpt-4o-mini", messages=[Message.user("q")])
    for backend in (one, two, one, two):
        run(backend, request)
    sent = [(r.path.rsplit("/", 2)[0].rsplit("/", 1)[-1], key_sent(r)) for r in scripted_llm.requests]
    assert sent == [("one", "k-one"), ("two", "k-two"), ("one", "k-one"), ("two", "k-two")]


def test_the_kept_url_follows_a_new_base_url():
    import openai

    from rlm_backend_openai.backend import _client_type

    client = _client_type(openai)(api_key="k", base_url="http://127.0.0.1:1/v1", max_retries=0)
    assert isinstance(client, openai.AsyncOpenAI)
    first = client._prepare_url("/chat/completions")
    assert str(first) == "http://127.0.0.1:1/v1/chat/completions"
    assert client._prepare_url("/chat/completions") is first, "made once per path"
    assert str(client._prepare_url("/models")) == "http://127.0.0.1:1/v1/models"
    client.base_url = "http://127.0.0.1:2/other/"
    assert str(client._prepare_url("/chat/completions")) == "http://127.0.0.1:2/other/chat/completions"
    copy = client.with_options(base_url="http://127.0.0.1:3/v2")
    assert str(copy._prepare_url("/chat/completions")) == "http://127.0.0.1:3/v2/chat/completions"
    assert str(client._prepare_url("/chat/completions")) == "http://127.0.0.1:2/other/chat/completions"
