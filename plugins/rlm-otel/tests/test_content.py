"""(d) Prompts, responses, tool arguments and results and REPL code stay out of the spans unless content
capture is on ([plugins.otel] capture_content, RLM_OTEL_CAPTURE_CONTENT); captured content is capped."""

from __future__ import annotations

import json

import pytest
from rlm.errors import ConfigError
from rlm.tools import tool
from rlm_testing.server import Reply

from rlm_otel.spans import INPUT_MESSAGES, OUTPUT_MESSAGES, TOOL_ARGUMENTS, TOOL_RESULT, cap

SECRET = "SECRET-7f3a9c-do-not-export"


@tool
def echo(text: str) -> str:
    """Give ``text`` back.

    Args:
        text: what to give back.
    """
    return f"echo: {text}"


def _run(make_rlm, scripted_llm, prompt: str = f"What does {SECRET} mean?"):
    scripted_llm.script([
        Reply.tool_calls(("rlm_sub_complete", {"query": f"explain {SECRET}"}, "tc-sub")),
        Reply.text(f"the sub-call says {SECRET}"),
        Reply.tool_calls(("execute_code", {"code": f"print('{SECRET}')"}, "tc-code"),
                         ("echo", {"text": SECRET}, "tc-echo")),
        Reply.text(f"It means {SECRET}."),
    ])
    result = make_rlm(tools=[echo]).completion_sync(prompt)
    assert result.success, result.error
    return result


def _everything(spans) -> str:
    """Every span as the SDK serialises it: name, attributes, events, status, links, resource."""
    return "\n".join(span.to_json() for span in spans)


def test_content_is_off_by_default(make_rlm, scripted_llm, memory_spans):
    result = _run(make_rlm, scripted_llm)
    assert SECRET in json.dumps(result.events), "the trajectory itself has it: the test plants it everywhere"
    spans = memory_spans.get_finished_spans()
    assert len(spans) == 10  # the run, the sub-call, 4 model calls, 3 tool calls, 1 execution
    assert SECRET not in _everything(spans)
    for span in spans:
        assert not {INPUT_MESSAGES, OUTPUT_MESSAGES, TOOL_ARGUMENTS, TOOL_RESULT} & set(span.attributes), span.name


@pytest.mark.parametrize("env", [{"RLM_PLUGINS__OTEL__CAPTURE_CONTENT": "true"}, {"RLM_OTEL_CAPTURE_CONTENT": "1"}])
def test_content_is_captured_when_configured(make_rlm, scripted_llm, memory_spans, monkeypatch, env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    _run(make_rlm, scripted_llm)
    spans = {s.name: s for s in memory_spans.get_finished_spans()}
    root = spans["invoke_agent rlm"]
    assert json.loads(root.attributes[INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": f"What does {SECRET} mean?"}]}]
    answer = json.loads(root.attributes[OUTPUT_MESSAGES])[0]
    assert answer["parts"] == [{"type": "text", "content": f"It means {SECRET}."}]
    sub = spans["invoke_agent rlm_sub_complete"]
    assert SECRET in sub.attributes[INPUT_MESSAGES] and SECRET in sub.attributes[OUTPUT_MESSAGES]
    assert json.loads(spans["execute_tool echo"].attributes[TOOL_ARGUMENTS]) == {"text": SECRET}
    assert SECRET in spans["execute_tool echo"].attributes[TOOL_RESULT]
    assert SECRET in spans["repl_execution"].attributes["rlm.repl.code"]
    chats = [s for s in memory_spans.get_finished_spans() if s.name.startswith("chat ")]
    first = json.loads(chats[0].attributes[INPUT_MESSAGES])
    assert [m["role"] for m in first] == ["system", "user"]
    outputs = [json.loads(c.attributes[OUTPUT_MESSAGES])[0] for c in chats]
    assert {"type": "tool_call", "id": "tc-echo", "name": "echo", "arguments": {"text": SECRET}} in \
        [p for o in outputs for p in o["parts"]]


def test_the_environment_variable_turns_capture_off_over_the_config(make_rlm, scripted_llm, memory_spans, monkeypatch):
    monkeypatch.setenv("RLM_PLUGINS__OTEL__CAPTURE_CONTENT", "true")
    monkeypatch.setenv("RLM_OTEL_CAPTURE_CONTENT", "0")
    _run(make_rlm, scripted_llm)
    assert SECRET not in _everything(memory_spans.get_finished_spans())


def test_captured_content_is_capped(make_rlm, scripted_llm, memory_spans, monkeypatch):
    monkeypatch.setenv("RLM_OTEL_CAPTURE_CONTENT", "yes")
    monkeypatch.setenv("RLM_PLUGINS__OTEL__MAX_CONTENT_CHARS", "100")
    _run(make_rlm, scripted_llm, prompt="x" * 20_000)
    spans = memory_spans.get_finished_spans()
    lengths = [len(value) for span in spans for key, value in span.attributes.items()
               if key in (INPUT_MESSAGES, OUTPUT_MESSAGES, TOOL_ARGUMENTS, TOOL_RESULT) or key.startswith("rlm.repl.")
               and isinstance(value, str)]
    assert lengths and max(lengths) <= 100
    root = next(s for s in spans if s.name == "invoke_agent rlm")
    assert root.attributes[INPUT_MESSAGES].endswith("more chars]")


def test_cap():
    assert cap("short", 100) == "short"
    text = "y" * 1000
    cut = cap(text, 64)
    assert 60 <= len(cut) <= 64 and cut.startswith("y" * 40)
    assert cut.endswith(f"...[{1000 - cut.index('.')} more chars]")


def test_a_capture_setting_that_is_not_yes_or_no_is_an_error(make_rlm, monkeypatch):
    monkeypatch.setenv("RLM_OTEL_CAPTURE_CONTENT", "maybe")
    with pytest.raises(ConfigError, match="RLM_OTEL_CAPTURE_CONTENT='maybe' is neither on nor off"):
        make_rlm().completion_sync("hi")
