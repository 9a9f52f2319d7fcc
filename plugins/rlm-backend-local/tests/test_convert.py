"""Message and request conversion for llama.cpp: no tool role, no null content, JSON grammar mode."""

from __future__ import annotations

from rlm.backend import LLMRequest, ToolSchema
from rlm.types import ImagePart, Message, TextPart, ToolCall
from rlm_backend_local.convert import (
    RAW_ARGUMENTS_KEY,
    StreamState,
    parse_completion,
    request_body,
    to_llama_messages,
    to_response_format,
)

TOOL = ToolSchema(name="get_weather", description="Weather.", parameters={
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})


def test_tool_results_become_user_text_and_content_is_never_null():
    call = ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"})
    messages = to_llama_messages([
        Message.system("sys"),
        Message.user("weather?"),
        Message.assistant("", tool_calls=(call,)),
        Message.tool("call_1", '{"temp": 21}', name="get_weather"),
    ])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert all(isinstance(m["content"], str) for m in messages)
    assert messages[2]["content"] == '[called tool get_weather (call call_1) with {"city": "Paris"}]'
    assert messages[3]["content"] == 'Result of tool get_weather (call call_1):\n{"temp": 21}'
    assert all(set(m) == {"role", "content"} for m in messages)


def test_assistant_text_and_calls_are_kept_together():
    call = ToolCall(id="c2", name="f", arguments={})
    (message,) = to_llama_messages([Message.assistant("Let me look.", tool_calls=(call,))])
    assert message == {"role": "assistant", "content": "Let me look.\n[called tool f (call c2) with {}]"}


def test_consecutive_user_messages_are_merged():
    messages = to_llama_messages([Message.user("a"), Message.tool("x", "b"), Message.user("c")])
    assert messages == [{"role": "user", "content": "a\n\nResult of tool call x:\nb\n\nc"}]


def test_content_parts_become_text_and_images_are_named():
    message = Message.user((TextPart(text="What is this?"), ImagePart(url="https://x/y.png")))
    (converted,) = to_llama_messages([message])
    assert converted == {"role": "user",
                         "content": "What is this?\n[image omitted: the local model reads text only]"}


def test_response_format_maps_to_llama_json_grammar():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    assert to_response_format({"name": "count", "schema": schema}) == {"type": "json_object", "schema": schema}
    assert to_response_format({"name": "any"}) == {"type": "json_object"}


def test_request_body_caps_tokens_and_sets_greedy_default():
    request = LLMRequest(model="local/x", messages=[Message.user("hi")], max_tokens=4096)
    body = request_body(request, model="qwen", max_tokens=1024, temperature=0.0)
    assert body == {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1024,
                    "temperature": 0.0}
    small = LLMRequest(model="m", messages=[Message.user("hi")], max_tokens=50, temperature=0.7)
    body = request_body(small, model="qwen", max_tokens=1024, temperature=0.0)
    assert (body["max_tokens"], body["temperature"]) == (50, 0.7)
    unbounded = LLMRequest(model="m", messages=[Message.user("hi")])
    assert request_body(unbounded, model="qwen", max_tokens=1024, temperature=0.0)["max_tokens"] == 1024


def test_request_body_stream_and_tools():
    request = LLMRequest(model="m", messages=[Message.user("hi")], tools=[TOOL], tool_choice="get_weather",
                         response_format={"name": "r", "schema": {"type": "object"}})
    body = request_body(request, model="q", max_tokens=10, temperature=0.0, stream=True)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert body["response_format"] == {"type": "json_object", "schema": {"type": "object"}}
    none = LLMRequest(model="m", messages=[Message.user("hi")], tools=[TOOL], tool_choice="none")
    assert "tools" not in request_body(none, model="q", max_tokens=10, temperature=0.0)
    required = LLMRequest(model="m", messages=[Message.user("hi")], tools=[TOOL], tool_choice="required")
    assert request_body(required, model="q", max_tokens=10, temperature=0.0)["tool_choice"] == {
        "type": "function", "function": {"name": "get_weather"}}


def test_parse_completion():
    data = {
        "model": "qwen",
        "choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
            {"type": "function", "function": {"name": "f", "arguments": "not json"}},
        ]}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 12},
    }
    response = parse_completion(data, model="fallback")
    assert response.message.text == ""
    assert [(c.id, c.name, dict(c.arguments)) for c in response.message.tool_calls] == [
        ("c1", "get_weather", {"city": "Oslo"}), ("call_1", "f", {RAW_ARGUMENTS_KEY: "not json"})]
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.cost_usd) == (30, 12, 0.0)
    assert response.model == "qwen" and response.finish_reason == "tool_calls"


def test_stream_state_counts_chunks_when_the_server_sends_no_usage():
    state = StreamState(model="q", prompt_estimate=25)
    pieces = [state.feed({"choices": [{"delta": {"content": t}}]}) for t in ("Hel", "lo", "")]
    state.feed({"choices": [{"delta": {}, "finish_reason": "stop"}]})
    assert pieces == ["Hel", "lo", ""]
    response = state.response()
    assert response.message.text == "Hello"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (25, 2)
    assert response.finish_reason == "stop"


def test_a_repeating_model_gets_a_higher_temperature():
    same = "```repl\nprint(1/0)\n```"
    stuck = [Message.user("task"), Message.assistant(same), Message.user("REPL output:\nZeroDivisionError"),
             Message.assistant(same), Message.user("REPL output:\nZeroDivisionError")]
    body = request_body(LLMRequest(model="m", messages=stuck), model="q", max_tokens=10, temperature=0.0)
    assert body["temperature"] == 0.7
    explicit = LLMRequest(model="m", messages=stuck, temperature=0.0)
    assert request_body(explicit, model="q", max_tokens=10, temperature=0.0)["temperature"] == 0.0
    varied = stuck[:3] + [Message.assistant("```repl\nprint(2)\n```")]
    assert request_body(LLMRequest(model="m", messages=varied), model="q", max_tokens=10,
                        temperature=0.0)["temperature"] == 0.0


def test_request_body_passes_a_seed_only_when_the_request_has_one():
    plain = LLMRequest(model="m", messages=[Message.user("hi")])
    assert "seed" not in request_body(plain, model="q", max_tokens=10, temperature=0.0)
    seeded = LLMRequest(model="m", messages=[Message.user("hi")], temperature=0.7, seed=1234)
    assert request_body(seeded, model="q", max_tokens=10, temperature=0.0)["seed"] == 1234
