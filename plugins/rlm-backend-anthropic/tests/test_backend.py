"""What the Anthropic backend sends and how it retries, beyond the conformance suite (scripted server, real SDK)."""

from __future__ import annotations

import json

from rlm.backend import BackendSettings, LLMRequest, StreamEnd, TextDelta, ToolSchema
from rlm.types import Message, ToolCall
from rlm_backend_anthropic.backend import AnthropicBackend
from rlm_backend_anthropic.options import AnthropicOptions
from rlm_testing.backend_plugin_suite import fast_backend, run
from rlm_testing.server import Reply

MODEL = "claude-sonnet-4-6"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
          "additionalProperties": False}


def _backend(server, **settings) -> AnthropicBackend:
    return fast_backend(AnthropicBackend, server, protocol="anthropic", **settings)


def test_tool_results_and_a_follow_up_share_one_user_turn(scripted_llm):
    scripted_llm.script([Reply.text("ok")])
    call = ToolCall(id="toolu_1", name="f", arguments={"x": 1})
    request = LLMRequest(model=f"anthropic/{MODEL}", messages=[
        Message.system("sys"), Message.user("q"), Message.assistant("thinking aloud", tool_calls=(call,)),
        Message.tool("toolu_1", "42"), Message.user("thanks"),
    ], tools=[ToolSchema(name="f", description="d")])
    run(_backend(scripted_llm), request)
    body = scripted_llm.last_request.body
    assert body["system"] == "sys" and body["model"] == MODEL
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"][0] == {"type": "text", "text": "thinking aloud"}
    assert [b["type"] for b in body["messages"][2]["content"]] == ["tool_result", "text"]


def test_streamed_structured_output_through_the_answer_tool(scripted_llm):
    scripted_llm.script([Reply.tool_calls(("city", {"city": "Paris"}))])
    request = LLMRequest(model=MODEL, messages=[Message.user("json")], response_format={"name": "city", "schema": SCHEMA})
    events = run(_backend(scripted_llm, options=AnthropicOptions(structured_output="tool")), request, stream=True)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert json.loads(text) == {"city": "Paris"}
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.response.message.tool_calls == ()
    assert json.loads(end.response.message.text) == {"city": "Paris"}
    assert scripted_llm.last_request.body["tool_choice"] == {"type": "tool", "name": "city"}


def test_native_structured_output_is_chosen_for_recent_models(scripted_llm):
    scripted_llm.script([Reply.json({"city": "Rome"})])
    request = LLMRequest(model=MODEL, messages=[Message.user("json")], response_format={"name": "city", "schema": SCHEMA})
    assert json.loads(run(_backend(scripted_llm), request).message.text) == {"city": "Rome"}
    body = scripted_llm.last_request.body
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}


def test_overloaded_is_retried(scripted_llm):
    scripted_llm.script([Reply.overloaded(), Reply.overloaded(retry_after=0.01), Reply.text("finally")])
    response = run(_backend(scripted_llm), LLMRequest(model=MODEL, messages=[Message.user("x")]))
    assert response.message.text == "finally" and len(scripted_llm.requests) == 3


def test_default_max_tokens_option(scripted_llm):
    scripted_llm.script([Reply.text("ok"), Reply.text("ok")])
    run(_backend(scripted_llm, options=AnthropicOptions(default_max_tokens=321)),
        LLMRequest(model=MODEL, messages=[Message.user("x")]))
    assert scripted_llm.last_request.body["max_tokens"] == 321
    run(_backend(scripted_llm), LLMRequest(model=MODEL, messages=[Message.user("x")], max_tokens=12))
    assert scripted_llm.last_request.body["max_tokens"] == 12


def test_capabilities():
    caps = AnthropicBackend(settings=BackendSettings(api_key="k")).capabilities(f"anthropic/{MODEL}")
    assert (caps.native_tools, caps.json_schema, caps.vision, caps.audio) == (True, True, True, False)
