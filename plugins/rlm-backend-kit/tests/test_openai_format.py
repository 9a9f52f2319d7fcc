"""OpenAI wire format: request conversion and stream assembly (pure functions, no server)."""

from __future__ import annotations

import json

from rlm.backend import LLMRequest, StreamEnd, TextDelta, ToolCallDelta, ToolSchema
from rlm.types import AudioPart, ImagePart, Message, TextPart, ToolCall
from rlm_backend_kit.openai_format import (
    StreamAssembler,
    from_openai_completion,
    is_strict_compatible,
    parse_arguments,
    request_params,
    to_openai_messages,
    to_openai_response_format,
    to_openai_tool_choice,
)

CALL = ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"})


def test_messages_of_every_role():
    messages = to_openai_messages([
        Message.system("be brief"),
        Message.user("weather?"),
        Message.assistant("", tool_calls=(CALL,)),
        Message.tool("call_1", '{"t": 21}', name="get_weather"),
    ])
    assert messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"t": 21}'},
    ]
    assert messages[2]["content"] == "" and messages[2]["content"] is not None


def test_multimodal_parts():
    (message,) = to_openai_messages([Message.user((
        TextPart(text="look and listen"),
        ImagePart(url="https://example.com/cat.png"),
        ImagePart(data=b"\x89PNG", media_type="image/png"),
        AudioPart(data=b"RIFF", format="wav"),
    ))])
    assert message["content"] == [
        {"type": "text", "text": "look and listen"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw=="}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
    ]


def test_tool_choice():
    assert to_openai_tool_choice(None) is None
    assert to_openai_tool_choice("auto") == "auto"
    assert to_openai_tool_choice("required") == "required"
    assert to_openai_tool_choice("get_weather") == {"type": "function", "function": {"name": "get_weather"}}


def test_response_format_strictness_follows_the_schema():
    closed = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    open_ = {"type": "object", "properties": {"a": {"type": "string"}}}
    nested_open = dict(closed, properties={"a": {"type": "object", "properties": {"b": {"type": "string"}}}})
    assert is_strict_compatible(closed) and not is_strict_compatible(open_)
    assert not is_strict_compatible(nested_open)
    assert to_openai_response_format({"name": "x", "schema": closed}) == {
        "type": "json_schema", "json_schema": {"name": "x", "schema": closed, "strict": True}}
    assert to_openai_response_format({"name": "x", "schema": open_})["json_schema"]["strict"] is False
    assert to_openai_response_format({"name": "x", "schema": open_, "strict": True})["json_schema"]["strict"] is True


def test_request_params():
    request = LLMRequest(
        model="gpt-4o", messages=[Message.user("hi")], max_tokens=10, temperature=0.5,
        tools=[ToolSchema(name="t", description="d")], tool_choice="auto",
    )
    params = request_params(request)
    assert params["max_completion_tokens"] == 10 and "max_tokens" not in params
    assert params["tool_choice"] == "auto" and params["tools"][0]["function"]["name"] == "t"
    assert request_params(request, max_tokens_param="max_tokens")["max_tokens"] == 10
    assert "tool_choice" not in request_params(LLMRequest(model="m", messages=[Message.user("x")], tool_choice="auto"))


def test_arguments_that_are_not_an_object_are_kept_for_the_tool_to_report():
    assert parse_arguments('{"a": 1}') == {"a": 1}
    assert parse_arguments("") == {} and parse_arguments(None) == {}
    assert parse_arguments("{broken") == {"_raw_arguments": "{broken"}
    assert parse_arguments("[1, 2]") == {"_raw_arguments": "[1, 2]"}


def test_completion_from_a_dict():
    response = from_openai_completion({
        "model": "gpt-4o",
        "choices": [{"message": {"content": None, "tool_calls": [
            {"id": "c1", "function": {"name": "f", "arguments": "{}"}}]}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    })
    assert response.message.text == "" and response.message.tool_calls == (ToolCall(id="c1", name="f"),)
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.cost_usd) == (3, 4, None)
    assert response.finish_reason == "tool_calls" and response.model == "gpt-4o"


def _chunk(delta=None, finish=None, usage=None):
    choices = [] if delta is None and finish is None else [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    return {"model": "gpt-4o", "choices": choices, "usage": usage}


def test_stream_assembly_emits_each_call_once_complete():
    assembler = StreamAssembler()
    chunks = [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "Checking"}),
        _chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": '{"x"'}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
        _chunk({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": ""}}]}),
        _chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
        _chunk({}, finish="tool_calls"),
        _chunk(usage={"prompt_tokens": 5, "completion_tokens": 6}),
    ]
    events = [e for c in chunks for e in assembler.feed(c)] + assembler.finish()
    assert [type(e).__name__ for e in events] == ["TextDelta", "ToolCallDelta", "ToolCallDelta", "StreamEnd"]
    assert events[0] == TextDelta(text="Checking")
    assert events[1] == ToolCallDelta(call=ToolCall(id="a", name="f", arguments={"x": 1}))
    assert events[2] == ToolCallDelta(call=ToolCall(id="b", name="g", arguments={}))
    end = events[-1]
    assert isinstance(end, StreamEnd)
    assert end.response.message.tool_calls == (events[1].call, events[2].call)
    assert (end.response.usage.input_tokens, end.response.usage.output_tokens) == (5, 6)
    assert end.response.finish_reason == "tool_calls"


def test_stream_without_usage_or_finish_still_ends_once():
    assembler = StreamAssembler(model="m")
    events = assembler.feed(_chunk({"content": "hi"})) + assembler.finish()
    assert [type(e).__name__ for e in events] == ["TextDelta", "StreamEnd"]
    assert events[-1].response.usage.total_tokens == 0
    assert json.dumps(events[-1].response.message.text) == '"hi"'
