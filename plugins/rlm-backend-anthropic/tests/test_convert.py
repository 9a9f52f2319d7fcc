"""Anthropic wire format: request conversion, structured output modes and stream assembly (no server)."""

from __future__ import annotations

import pytest
from rlm.backend import LLMRequest, StreamEnd, TextDelta, ToolCallDelta, ToolSchema
from rlm.errors import BackendError
from rlm.types import AudioPart, ImagePart, Message, TextPart, ToolCall
from rlm_backend_anthropic.convert import (
    StreamAssembler,
    default_max_tokens,
    from_anthropic_message,
    model_version,
    request_params,
    structured_output_mode,
    supports_native_json,
    to_anthropic_messages,
    to_anthropic_tool_choice,
)

TOOL = ToolSchema(name="get_weather", description="Weather.", parameters={"type": "object", "properties": {}})
SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": False}


def test_system_is_lifted_tool_results_go_in_one_user_turn_and_roles_merge():
    calls = (ToolCall(id="t1", name="f", arguments={"x": 1}), ToolCall(id="t2", name="g"))
    system, messages = to_anthropic_messages([
        Message.system("be brief"),
        Message.user("one"),
        Message.user("two"),
        Message.assistant("", tool_calls=calls),
        Message.tool("t1", "r1"),
        Message.tool("t2", "r2"),
        Message.user("and now?"),
        Message.system("also: be kind"),
    ])
    assert system == "be brief\n\nalso: be kind"
    assert messages == [
        {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "f", "input": {"x": 1}},
            {"type": "tool_use", "id": "t2", "name": "g", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "r1"},
            {"type": "tool_result", "tool_use_id": "t2", "content": "r2"},
            {"type": "text", "text": "and now?"},
        ]},
    ]


def test_images_by_bytes_data_url_and_https_url():
    _, (message,) = to_anthropic_messages([Message.user((
        TextPart(text="compare"),
        ImagePart(data=b"\x89PNG", media_type="image/png"),
        ImagePart(url="data:image/jpeg;base64,/9j/"),
        ImagePart(url="https://example.com/cat.webp"),
    ))])
    assert message["content"] == [
        {"type": "text", "text": "compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw=="}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.webp"}},
    ]


def test_audio_is_refused_with_a_clear_error():
    with pytest.raises(BackendError, match="do not accept audio"):
        to_anthropic_messages([Message.user((AudioPart(data=b"RIFF"),))])


def test_tool_choice():
    assert to_anthropic_tool_choice(None) is None
    assert to_anthropic_tool_choice("auto") == {"type": "auto"}
    assert to_anthropic_tool_choice("none") == {"type": "none"}
    assert to_anthropic_tool_choice("required") == {"type": "any"}
    assert to_anthropic_tool_choice("f") == {"type": "tool", "name": "f"}


@pytest.mark.parametrize(
    ("model", "version", "native"),
    [
        ("claude-sonnet-4-20250514", ("sonnet", 4, 0), False),
        ("claude-sonnet-4-5-20250929", ("sonnet", 4, 5), True),
        ("claude-opus-4-1-20250805", ("opus", 4, 1), True),
        ("claude-sonnet-4-6", ("sonnet", 4, 6), True),
        ("claude-3-7-sonnet-latest", ("sonnet", 3, 7), False),
        ("claude-3-haiku-20240307", ("haiku", 3, 0), False),
        ("claude-opus-5", ("opus", 5, 0), True),
        ("my-proxy-alias", None, False),
    ],
)
def test_model_versions(model, version, native):
    assert model_version(model) == version
    assert supports_native_json(model) is native


def test_default_max_tokens():
    assert default_max_tokens("claude-3-haiku-20240307") == 4096
    assert default_max_tokens("claude-3-5-haiku-latest") == 8192
    assert default_max_tokens("claude-sonnet-4-6") == 8192


def test_structured_output_as_a_forced_tool():
    request = LLMRequest(model="m", messages=[Message.user("json")], response_format={"name": "city facts", "schema": SCHEMA},
                         temperature=0.2)
    prepared = request_params(request, model="claude-sonnet-4-20250514", max_tokens=100)
    assert structured_output_mode("auto", "claude-sonnet-4-20250514") == "tool"
    assert prepared.output_tool == "city_facts"
    assert prepared.params["tools"] == [{"name": "city_facts", "description": prepared.params["tools"][0]["description"],
                                         "input_schema": SCHEMA}]
    assert prepared.params["tool_choice"] == {"type": "tool", "name": "city_facts"}
    assert prepared.params["extra_body"] == {"temperature": 0.2}


def test_structured_output_with_other_tools_requires_some_tool_call():
    request = LLMRequest(model="m", messages=[Message.user("x")], tools=[TOOL],
                         response_format={"name": "get_weather", "schema": SCHEMA})
    prepared = request_params(request, model="m", max_tokens=100, structured_output="tool")
    assert [t["name"] for t in prepared.params["tools"]] == ["get_weather", "answer_get_weather"]
    assert prepared.params["tool_choice"] == {"type": "any"}


def test_structured_output_natively():
    request = LLMRequest(model="m", messages=[Message.user("x")], response_format={"name": "n", "schema": SCHEMA})
    prepared = request_params(request, model="claude-sonnet-4-6", max_tokens=100)
    assert prepared.output_tool is None and "tools" not in prepared.params
    assert prepared.params["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}


def test_answer_tool_comes_back_as_text_and_other_tools_as_calls():
    message = {
        "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "hmm"},
            {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"q": "x"}},
            {"type": "tool_use", "id": "t2", "name": "answer", "input": {"a": "b"}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 90, "output_tokens": 5},
    }
    response = from_anthropic_message(message, output_tool="answer")
    assert response.message.text == '{"a": "b"}'
    assert response.message.tool_calls == (ToolCall(id="t1", name="lookup", arguments={"q": "x"}),)
    assert response.finish_reason == "tool_calls"
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.cost_usd) == (100, 5, None)


def _events(*blocks, stop="end_turn"):
    yield {"type": "message_start", "message": {"model": "claude-x", "usage": {"input_tokens": 7, "output_tokens": 1}}}
    for index, (kind, payload) in enumerate(blocks):
        if kind == "text":
            yield {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
            for piece in payload:
                yield {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}
        else:
            call_id, name, pieces = payload
            yield {"type": "content_block_start", "index": index,
                   "content_block": {"type": "tool_use", "id": call_id, "name": name, "input": {}}}
            for piece in pieces:
                yield {"type": "content_block_delta", "index": index,
                       "delta": {"type": "input_json_delta", "partial_json": piece}}
        yield {"type": "content_block_stop", "index": index}
    yield {"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 12}}
    yield {"type": "message_stop"}


def test_stream_assembly():
    assembler = StreamAssembler()
    stream = _events(("text", ["Let ", "me"]), ("tool", ("t1", "f", ['{"x"', ": 1}"])),
                     ("tool", ("t2", "g", [])), stop="tool_use")
    events = [e for raw in stream for e in assembler.feed(raw)] + assembler.finish()
    assert events[:2] == [TextDelta(text="Let "), TextDelta(text="me")]
    assert events[2:4] == [ToolCallDelta(call=ToolCall(id="t1", name="f", arguments={"x": 1})),
                           ToolCallDelta(call=ToolCall(id="t2", name="g"))]
    (end,) = events[4:]
    assert isinstance(end, StreamEnd)
    assert end.response.message.text == "Let me" and len(end.response.message.tool_calls) == 2
    assert (end.response.usage.input_tokens, end.response.usage.output_tokens) == (7, 12)
    assert end.response.finish_reason == "tool_calls" and end.response.model == "claude-x"


def test_stream_answer_tool_is_streamed_as_text():
    assembler = StreamAssembler(output_tool="answer")
    stream = _events(("tool", ("t1", "answer", ['{"a": ', '"b"}'])), stop="tool_use")
    events = [e for raw in stream for e in assembler.feed(raw)] + assembler.finish()
    assert [type(e).__name__ for e in events] == ["TextDelta", "TextDelta", "StreamEnd"]
    assert events[-1].response.message.text == '{"a": "b"}'
    assert events[-1].response.message.tool_calls == ()
