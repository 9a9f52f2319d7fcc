"""(a) A real run through the scripted OpenAI-compatible server, exported to the SDK's in-memory exporter:
the span tree (a sub-call, tool calls, a REPL execution), its GenAI attributes, its times and its
token counts, and the error status of errors and limits."""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import SpanKind, StatusCode
from rlm.tools import tool
from rlm_testing.server import Reply

from rlm_otel.spans import (
    AGENT_NAME,
    COST,
    ERROR_TYPE,
    FINISH_REASONS,
    INPUT_TOKENS,
    OPERATION,
    OUTPUT_TOKENS,
    PROVIDER,
    REQUEST_MODEL,
    RESPONSE_MODEL,
    SYSTEM,
    TOOL_CALL_ID,
    TOOL_NAME,
)


@tool
def shout(text: str) -> str:
    """Say ``text`` loudly.

    Args:
        text: what to say.
    """
    return text.upper()


def _script(scripted_llm) -> None:
    scripted_llm.script([
        Reply.tool_calls(("rlm_sub_complete", {"query": "what is six times seven?"}, "tc-sub")),
        Reply.text("forty-two", input_tokens=30, output_tokens=3),
        Reply.tool_calls(("execute_code", {"code": "print(6 * 7)"}, "tc-code"), ("shout", {"text": "hi"}, "tc-shout")),
        Reply.text("The answer is 42."),
    ])


def _by_name(spans) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for span in spans:
        out.setdefault(span.name, []).append(span)
    return out


def _parent(span) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def test_a_run_is_one_trace_with_a_span_per_call_model_call_tool_and_execution(make_rlm, scripted_llm, memory_spans):
    _script(scripted_llm)
    result = make_rlm(tools=[shout]).completion_sync("What is 6 * 7?")
    assert result.success, result.error
    assert result.response == "The answer is 42."

    spans = memory_spans.get_finished_spans()
    names = _by_name(spans)
    assert sorted(names) == ["chat scripted-model", "execute_tool execute_code", "execute_tool rlm_sub_complete",
                             "execute_tool shout", "invoke_agent rlm", "invoke_agent rlm_sub_complete",
                             "repl_execution"]
    assert len(names["chat scripted-model"]) == 4  # three turns of the run, one of the sub-call
    assert len({s.context.trace_id for s in spans}) == 1, "one run, one trace"

    (root,) = names["invoke_agent rlm"]
    (sub_tool,) = names["execute_tool rlm_sub_complete"]
    (sub,) = names["invoke_agent rlm_sub_complete"]
    (code_tool,) = names["execute_tool execute_code"]
    (shout_tool,) = names["execute_tool shout"]
    (repl,) = names["repl_execution"]
    chats = names["chat scripted-model"]

    # the tree: the sub-call under the tool that made it, the REPL execution under execute_code
    assert root.parent is None
    assert _parent(sub_tool) == _parent(code_tool) == _parent(shout_tool) == root.context.span_id
    assert _parent(sub) == sub_tool.context.span_id
    assert _parent(repl) == code_tool.context.span_id
    sub_chats = [c for c in chats if _parent(c) == sub.context.span_id]
    root_chats = [c for c in chats if _parent(c) == root.context.span_id]
    assert (len(sub_chats), len(root_chats)) == (1, 3)

    # GenAI attributes
    assert root.attributes[OPERATION] == "invoke_agent" and root.attributes[AGENT_NAME] == "rlm"
    assert sub.attributes[OPERATION] == "invoke_agent" and sub.attributes["rlm.sub_call_type"] == "rlm_sub_complete"
    assert sub.attributes["rlm.depth"] == 1
    assert sub.attributes["rlm.parent_call_id"] == root.attributes["rlm.call_id"]
    for chat in chats:
        assert chat.kind is SpanKind.CLIENT
        assert chat.attributes[OPERATION] == "chat"
        assert chat.attributes[PROVIDER] == chat.attributes[SYSTEM] == "scripted-openai"
        assert chat.attributes[REQUEST_MODEL] == chat.attributes[RESPONSE_MODEL] == "scripted-model"
    assert [c.attributes[FINISH_REASONS] for c in root_chats] == [("tool_calls",), ("tool_calls",), ("stop",)]
    assert sub_chats[0].attributes[INPUT_TOKENS] == 30 and sub_chats[0].attributes[OUTPUT_TOKENS] == 3
    for span, name, call_id in ((sub_tool, "rlm_sub_complete", "tc-sub"), (code_tool, "execute_code", "tc-code"),
                                (shout_tool, "shout", "tc-shout")):
        assert span.attributes[OPERATION] == "execute_tool"
        assert (span.attributes[TOOL_NAME], span.attributes[TOOL_CALL_ID]) == (name, call_id)
    assert root.attributes["rlm.trajectory_id"] == result.trajectory_id
    assert root.attributes["rlm.protocol"] == "tools"
    assert repl.attributes["rlm.repl.output_chars"] == 3
    assert repl.attributes["rlm.repl.code_chars"] == len("print(6 * 7)")

    # tokens and cost: the run's usage, on the root and summed over the model calls
    assert root.attributes[INPUT_TOKENS] == result.total_input_tokens
    assert root.attributes[OUTPUT_TOKENS] == result.total_output_tokens
    assert sum(c.attributes[INPUT_TOKENS] for c in chats) == result.total_input_tokens
    assert sum(c.attributes[OUTPUT_TOKENS] for c in chats) == result.total_output_tokens
    assert root.attributes[COST] == result.total_cost_usd
    assert abs(sum(c.attributes[COST] for c in chats) - result.total_cost_usd) < 1e-9
    assert sub.attributes[INPUT_TOKENS] == 30 and sub.attributes[OUTPUT_TOKENS] == 3, "a call counts its model calls"
    assert root.attributes["rlm.total_calls"] == result.total_calls

    # nothing failed
    assert all(s.status.status_code is StatusCode.UNSET for s in spans)


def test_span_times_are_the_events_times(make_rlm, scripted_llm, memory_spans):
    _script(scripted_llm)
    result = make_rlm(tools=[shout]).completion_sync("What is 6 * 7?")
    events = {e["type"]: e for e in result.events}  # the last of each type
    starts = [e for e in result.events if e["type"] == "run_start"]
    names = _by_name(memory_spans.get_finished_spans())
    (root,) = names["invoke_agent rlm"]
    assert root.start_time == int(starts[0]["timestamp"] * 1e9)
    assert root.end_time == int(events["run_end"]["timestamp"] * 1e9)
    (sub,) = names["invoke_agent rlm_sub_complete"]
    assert sub.start_time == int(events["call_start"]["timestamp"] * 1e9)
    assert sub.end_time == int(events["call_end"]["timestamp"] * 1e9)
    last_chat = max(names["chat scripted-model"], key=lambda s: s.end_time)
    llm = [e for e in result.events if e["type"] == "llm_call"][-1]
    assert last_chat.end_time == int(llm["timestamp"] * 1e9)
    assert last_chat.end_time - last_chat.start_time == int(llm["duration_ms"] * 1e6)
    for span in memory_spans.get_finished_spans():
        assert root.start_time <= span.start_time <= span.end_time <= root.end_time, span.name


def test_a_failed_sub_call_and_a_failed_tool_are_errors(make_rlm, scripted_llm, memory_spans):
    scripted_llm.script([
        Reply.tool_calls(("rlm_sub_complete", {"query": "q"}, "tc-sub"), ("no_such_tool", {}, "tc-bad")),
        Reply.error(status=400, message="the scripted provider refuses"),
        Reply.text("I could not delegate; the answer is 42."),
    ])
    result = make_rlm(max_parallel=1).completion_sync("go")
    assert result.success, result.error
    names = _by_name(memory_spans.get_finished_spans())
    (sub,) = names["invoke_agent rlm_sub_complete"]
    assert sub.status.status_code is StatusCode.ERROR
    assert sub.attributes[ERROR_TYPE] == "BackendError"
    assert [e.name for e in sub.events] == ["exception"]
    assert sub.events[0].attributes["exception.type"] == "BackendError"
    (bad,) = names["execute_tool no_such_tool"]
    assert bad.status.status_code is StatusCode.ERROR and bad.attributes[ERROR_TYPE] == "tool_error"
    (root,) = names["invoke_agent rlm"]
    assert root.status.status_code is StatusCode.UNSET, "the run itself answered"


def test_a_limit_is_an_error_on_the_run(make_rlm, scripted_llm, memory_spans):
    scripted_llm.script([
        Reply.tool_calls(("shout", {"text": "a"}, "tc-1")),
        Reply.text("forced answer"),
    ])
    result = make_rlm(tools=[shout], max_turns=1).completion_sync("go")
    assert result.limit_hit == "max_turns"
    (root,) = _by_name(memory_spans.get_finished_spans())["invoke_agent rlm"]
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes[ERROR_TYPE] == "limit_hit" and root.attributes["rlm.limit_hit"] == "max_turns"
    assert "rlm.limit_hit" in [e.name for e in root.events]


def test_a_run_inside_an_application_span_continues_its_trace(make_rlm, scripted_llm, memory_spans):
    from opentelemetry.sdk.trace import TracerProvider

    scripted_llm.script([Reply.text("hello")])
    app_tracer = TracerProvider().get_tracer("the-app")
    with app_tracer.start_as_current_span("handle request") as app_span:
        result = make_rlm().completion_sync("hi")
    assert result.success, result.error
    (root,) = _by_name(memory_spans.get_finished_spans())["invoke_agent rlm"]
    assert root.context.trace_id == app_span.get_span_context().trace_id
    assert _parent(root) == app_span.get_span_context().span_id


def test_each_run_is_a_trace_of_its_own(make_rlm, scripted_llm, memory_spans):
    scripted_llm.script([Reply.text("one"), Reply.text("two")])
    rlm = make_rlm()
    assert rlm.completion_sync("first").success
    assert rlm.completion_sync("second").success
    roots = _by_name(memory_spans.get_finished_spans())["invoke_agent rlm"]
    assert len(roots) == 2 and roots[0].context.trace_id != roots[1].context.trace_id
