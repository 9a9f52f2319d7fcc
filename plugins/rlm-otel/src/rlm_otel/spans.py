"""Trajectory events -> OpenTelemetry spans, with the GenAI semantic conventions' attributes.

:class:`TraceBuilder` gets the events of one run in order and makes, with their times:

- ``invoke_agent rlm``: the run (``run_start`` .. ``run_end``), the root of the trace;
- ``invoke_agent <sub_call_type>``: each sub-call (``call_start`` .. ``call_end``), a child of the tool
  span that made it (``rlm_sub_complete``, ``rlm_batch_complete``) or of its parent call (``llm_query``);
- ``chat <model>``: each model call (``llm_call``: its ``duration_ms`` before its ``timestamp``);
- ``execute_tool <name>``: each tool call (``tool_start`` .. its result in ``tool_results``);
- ``repl_execution``: each code execution (``repl_execution``), a child of its ``execute_code`` tool
  span when there is one.

Limits, backend errors, missing answers, compaction, repeated code and injected context become span
events; errors and limits set the span's status to ERROR with ``error.type``.  Prompts, responses,
tool arguments and results, code and output are put in only with ``capture_content``, each attribute
cut at ``max_content_chars``.  Tool outputs that an ``llm_call`` prompt stores by reference are not
looked up: they are in the ``execute_tool`` span's ``gen_ai.tool.call.result``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from attrs import define, field
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

# --- attribute names (OpenTelemetry semantic conventions for GenAI, and rlm's own) ------------------

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
SYSTEM = "gen_ai.system"  # the older name of gen_ai.provider.name, still read by many backends
AGENT_NAME = "gen_ai.agent.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
REQUEST_SEED = "gen_ai.request.seed"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
TOOL_TYPE = "gen_ai.tool.type"
TOOL_ARGUMENTS = "gen_ai.tool.call.arguments"
TOOL_RESULT = "gen_ai.tool.call.result"
ERROR_TYPE = "error.type"
COST = "rlm.cost_usd"

#: the longest error text kept in a status description or an exception event
ERROR_CHARS = 300
#: the sub-call types made by a tool of the same name (their spans are children of that tool's span)
_TOOL_SUB_CALLS = ("rlm_sub_complete", "rlm_batch_complete")


def cap(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending with how many were left out."""
    if len(text) <= limit:
        return text
    longest_marker = len(f"...[{len(text)} more chars]")
    keep = max(limit - longest_marker, 0)
    return (text[:keep] + f"...[{len(text) - keep} more chars]")[:limit]


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes OpenTelemetry accepts: None left out, a list of strings kept as strings."""
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            value = [str(v) for v in value if v is not None]
        elif not isinstance(value, (str, bool, int, float)):
            value = str(value)
        out[key] = value
    return out


def _text_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}] if content else []
    parts: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else []:
        if isinstance(part, Mapping) and part.get("type") == "text":
            parts.append({"type": "text", "content": part.get("text", "")})
        elif isinstance(part, Mapping):
            parts.append(dict(part))  # an image or audio part: its summary (size, url), never its bytes
    return parts


def _tool_call_parts(calls: Any) -> list[dict[str, Any]]:
    return [{"type": "tool_call", "id": c.get("id"), "name": c.get("name"), "arguments": c.get("arguments")}
            for c in calls or [] if isinstance(c, Mapping)]


def message_parts(message: Mapping[str, Any]) -> dict[str, Any]:
    """One trajectory message in the GenAI conventions' shape: ``{"role", "parts": [...]}``."""
    role = message.get("role")
    if role == "tool":
        response = message["content"] if "content" in message else "[in this tool call's execute_tool span]"
        return {"role": "tool", "parts": [{"type": "tool_call_response", "id": message.get("tool_call_id"),
                                           "response": response}]}
    return {"role": role, "parts": _text_parts(message.get("content")) + _tool_call_parts(message.get("tool_calls"))}


@define(kw_only=True, eq=False)
class _Tool:
    span: Span
    call_id: str
    name: str
    start_ns: int
    children: int = 0
    repl: bool = False


@define(kw_only=True, eq=False)
class _Call:
    span: Span
    call_id: str | None
    parent: _Call | None
    depth: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    #: (error.type, description) of an error or limit seen during the call
    failure: tuple[str, str] | None = None
    tools: list[_Tool] = field(factory=list)


class TraceBuilder:
    """Makes the spans of one run from its trajectory events (given in order to :meth:`handle`)."""

    def __init__(self, tracer: trace.Tracer, *, capture_content: bool = False, max_content_chars: int = 4096,
                 parent_context: Context | None = None) -> None:
        self._tracer = tracer
        self.capture_content = capture_content
        self.max_content_chars = max_content_chars
        self._parent_context = parent_context if parent_context is not None else Context()
        self._calls: dict[str | None, _Call] = {}
        self._root: _Call | None = None
        self._run: dict[str, Any] = {}
        self.ended = False

    # --- helpers -------------------------------------------------------------------------------

    def _content(self, value: Any) -> str | None:
        """``value`` as an attribute (a string as it is, anything else as JSON), cut; None unless capturing."""
        if not self.capture_content or value is None:
            return None
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        return cap(text, self.max_content_chars)

    def _model_attributes(self, model: Any) -> dict[str, Any]:
        backend = self._run.get("backend")
        return {PROVIDER: backend, SYSTEM: backend, REQUEST_MODEL: model}

    def _start(self, name: str, parent: Span | None, start_ns: int, attributes: Mapping[str, Any], *,
               kind: SpanKind = SpanKind.INTERNAL) -> Span:
        context = trace.set_span_in_context(parent) if parent is not None else self._parent_context
        return self._tracer.start_span(name, context=context, kind=kind, attributes=_clean(attributes),
                                       start_time=start_ns)

    @staticmethod
    def _finish(span: Span, end_ns: int, failure: tuple[str, str] | None) -> None:
        if failure is not None:
            span.set_attribute(ERROR_TYPE, failure[0])
            span.set_status(Status(StatusCode.ERROR, cap(failure[1], ERROR_CHARS)))
        span.end(end_time=end_ns)

    @staticmethod
    def _time(event: Mapping[str, Any]) -> int:
        ts = event.get("timestamp")
        return _ns(ts) if isinstance(ts, (int, float)) and not isinstance(ts, bool) else time.time_ns()

    @staticmethod
    def _before(event: Mapping[str, Any], end_ns: int) -> int:
        """The start of what ``event`` reports at its end, ``duration_ms`` earlier."""
        duration = event.get("duration_ms")
        if isinstance(duration, (int, float)) and not isinstance(duration, bool) and duration > 0:
            return end_ns - int(duration * 1e6)
        return end_ns

    def _root_call(self, event: Mapping[str, Any]) -> _Call:
        if self._root is None:  # no run_start (a torn or partial trajectory): the run starts now
            self._start_run(event, {})
        assert self._root is not None
        return self._root

    def _call(self, event: Mapping[str, Any]) -> _Call:
        """The open call ``event`` belongs to (started here if its ``call_start`` was not seen)."""
        call_id = event.get("call_id")
        found = self._calls.get(call_id)
        if found is not None:
            return found
        root = self._root_call(event)
        if call_id == root.call_id or not event.get("depth"):
            return root
        return self._start_call(event, self._calls.get(event.get("parent_call_id")) or root)

    # --- the run ---------------------------------------------------------------------------------

    def handle(self, event: Mapping[str, Any]) -> None:
        """Turn one trajectory event into spans (events after ``run_end`` and unknown types are ignored)."""
        kind = event.get("type")
        handler = getattr(self, f"_on_{kind}", None) if isinstance(kind, str) and kind.isidentifier() else None
        if handler is not None and not self.ended:
            handler(event)

    def _start_run(self, event: Mapping[str, Any], run: Mapping[str, Any]) -> None:
        self._run = dict(run)
        attributes = {
            OPERATION: "invoke_agent", AGENT_NAME: "rlm", **self._model_attributes(run.get("model")),
            "rlm.trajectory_id": event.get("trajectory_id"), "rlm.call_id": event.get("call_id"), "rlm.depth": 0,
            "rlm.protocol": run.get("protocol"), "rlm.path": run.get("path"), "rlm.environment": run.get("environment"),
            "rlm.requested_model": run.get("requested_model"), "rlm.sub_model": run.get("sub_model"),
            "rlm.token_budget": run.get("token_budget"), "rlm.cost_limit": run.get("cost_limit"),
            "rlm.max_depth": run.get("max_depth"), "rlm.tools": run.get("tools"), "rlm.batch_id": run.get("batch_id"),
            INPUT_MESSAGES: self._content([{"role": "user", "parts": _text_parts(run["prompt"])}]
                                          if "prompt" in run else None),
            SYSTEM_INSTRUCTIONS: self._content(_text_parts(run["system"]) if run.get("system") else None),
        }
        span = self._start("invoke_agent rlm", None, self._time(event), attributes)
        self._root = _Call(span=span, call_id=event.get("call_id"), parent=None)
        self._calls[self._root.call_id] = self._root

    def _on_run_start(self, event: Mapping[str, Any]) -> None:
        if self._root is None:
            self._start_run(event, event)

    def _on_run_end(self, event: Mapping[str, Any]) -> None:
        root = self._root_call(event)
        end = self._time(event)
        usage = event.get("token_usage") if isinstance(event.get("token_usage"), Mapping) else {}
        span = root.span
        span.set_attributes(_clean({
            INPUT_TOKENS: usage.get("input", root.input_tokens), OUTPUT_TOKENS: usage.get("output", root.output_tokens),
            COST: event.get("cost"), "rlm.total_calls": event.get("total_calls"),
            "rlm.total_tool_calls": event.get("total_tool_calls"), "rlm.answer_source": event.get("answer_source"),
            "rlm.limit_hit": event.get("limit_hit"), "rlm.duration_ms": event.get("duration_ms"),
            OUTPUT_MESSAGES: self._content([{"role": "assistant", "parts": _text_parts(event.get("response") or ""),
                                             "finish_reason": event.get("answer_source")}]),
        }))
        failure = root.failure
        if event.get("error"):
            failure = (str(event.get("error_type") or "error"), str(event["error"]))
        elif event.get("limit_hit"):
            failure = ("limit_hit", f"limit reached: {event['limit_hit']}")
        self.end_all(end, reason="the run ended before it")
        self._finish(span, end, failure)
        self.ended = True

    def end_all(self, end_ns: int | None = None, *, reason: str) -> None:
        """End every span still open but the run's (the deepest first) at ``end_ns``, with ERROR ``reason``."""
        end_ns = time.time_ns() if end_ns is None else end_ns
        for call in sorted(self._calls.values(), key=lambda c: -c.depth):
            self._end_tools(call, call.tools, end_ns, reason=reason)
            if call is not self._root:
                self._finish(call.span, end_ns, ("incomplete", reason))
        self._calls = {k: v for k, v in self._calls.items() if v is self._root}

    def close(self) -> None:
        """The sink is closing: a run that never wrote ``run_end`` ends now, as an error."""
        if not self.ended and self._root is not None:
            end = time.time_ns()
            self.end_all(end, reason="the run wrote no run_end")
            self._finish(self._root.span, end, ("incomplete", "the run wrote no run_end"))
        self.ended = True

    # --- sub-calls -------------------------------------------------------------------------------

    def _start_call(self, event: Mapping[str, Any], parent: _Call) -> _Call:
        kind = event.get("sub_call_type")
        parent_span = parent.span
        if kind in _TOOL_SUB_CALLS:  # made by a tool of the parent call: nest under that tool's span
            tools = [t for t in parent.tools if t.name == kind]
            tool = next((t for t in tools if t.children == 0), tools[0] if tools else None)
            if tool is not None:
                tool.children += 1
                parent_span = tool.span
        sub_model = self._run.get("sub_model") or self._run.get("model")
        attributes = {
            OPERATION: "invoke_agent", AGENT_NAME: "rlm", **self._model_attributes(sub_model),
            "rlm.call_id": event.get("call_id"), "rlm.parent_call_id": event.get("parent_call_id"),
            "rlm.depth": event.get("depth"), "rlm.sub_call_type": kind, "rlm.token_limit": event.get("token_limit"),
            INPUT_MESSAGES: self._content([{"role": "user", "parts": _text_parts(event["prompt"])}]
                                          if "prompt" in event else None),
            SYSTEM_INSTRUCTIONS: self._content(_text_parts(event["system"]) if event.get("system") else None),
        }
        span = self._start(f"invoke_agent {kind or 'sub_call'}", parent_span, self._time(event), attributes)
        depth = event.get("depth")
        call = _Call(span=span, call_id=event.get("call_id"), parent=parent,
                     depth=depth if isinstance(depth, int) else parent.depth + 1)
        self._calls[call.call_id] = call
        return call

    def _on_call_start(self, event: Mapping[str, Any]) -> None:
        if event.get("call_id") not in self._calls:
            root = self._root_call(event)
            self._start_call(event, self._calls.get(event.get("parent_call_id")) or root)

    def _on_call_end(self, event: Mapping[str, Any]) -> None:
        call = self._calls.get(event.get("call_id"))
        if call is None or call is self._root:
            return
        end = self._time(event)
        call.span.set_attributes(_clean({
            INPUT_TOKENS: call.input_tokens, OUTPUT_TOKENS: call.output_tokens, COST: event.get("cost"),
            "rlm.tokens_spent": event.get("tokens_spent"), "rlm.limit_hit": event.get("limit"),
            "rlm.duration_ms": event.get("duration_ms"),
            OUTPUT_MESSAGES: self._content([{"role": "assistant", "parts": _text_parts(event["response"])}]
                                           if "response" in event else None),
        }))
        failure = call.failure
        if event.get("error"):
            failure = (str(event.get("error_type") or "error"), str(event["error"]))
        elif event.get("limit"):
            failure = ("limit_hit", f"limit reached: {event['limit']}")
        self._end_tools(call, call.tools, end, reason="the call ended before the tool")
        self._finish(call.span, end, failure)
        del self._calls[call.call_id]

    # --- model calls -------------------------------------------------------------------------------

    def _on_llm_call(self, event: Mapping[str, Any]) -> None:
        call = self._call(event)
        end = self._time(event)
        usage = event.get("token_usage") if isinstance(event.get("token_usage"), Mapping) else {}
        tokens_in, tokens_out = usage.get("input"), usage.get("output")
        node: _Call | None = call
        while node is not None:  # a call's usage counts its sub-calls'
            node.input_tokens += tokens_in if isinstance(tokens_in, int) else 0
            node.output_tokens += tokens_out if isinstance(tokens_out, int) else 0
            node = node.parent
        model = event.get("model")
        finish = event.get("finish_reason")
        prompt = event.get("prompt")
        attributes = {
            OPERATION: "chat", **self._model_attributes(model), RESPONSE_MODEL: model,
            INPUT_TOKENS: tokens_in, OUTPUT_TOKENS: tokens_out, FINISH_REASONS: [finish] if finish else None,
            COST: event.get("cost"), REQUEST_TEMPERATURE: event.get("temperature"), REQUEST_SEED: event.get("seed"),
            "rlm.call_id": event.get("call_id"), "rlm.forced": event.get("forced"), "rlm.cached": event.get("cached"),
            INPUT_MESSAGES: self._content([message_parts(m) for m in prompt if isinstance(m, Mapping)]
                                          if isinstance(prompt, list) else None),
            OUTPUT_MESSAGES: self._content([{
                "role": "assistant",
                "parts": _text_parts(event.get("response") or "") + _tool_call_parts(event.get("tool_calls")),
                "finish_reason": finish}]),
        }
        span = self._start(f"chat {model}", call.span, self._before(event, end), attributes, kind=SpanKind.CLIENT)
        self._finish(span, end, None)

    def _on_error(self, event: Mapping[str, Any]) -> None:
        call = self._call(event)
        error_type = str(event.get("error_type") or "error")
        message = cap(str(event.get("error") or ""), ERROR_CHARS)
        call.span.add_event("exception", _clean({"exception.type": error_type, "exception.message": message,
                                                 "rlm.where": event.get("where")}), timestamp=self._time(event))
        call.failure = (error_type, message)

    # --- tools and the REPL ---------------------------------------------------------------------------

    def _on_tool_start(self, event: Mapping[str, Any]) -> None:
        call = self._call(event)
        start = self._time(event)
        for tool_call in event.get("tool_calls") or []:
            if not isinstance(tool_call, Mapping):
                continue
            name = str(tool_call.get("name"))
            attributes = {OPERATION: "execute_tool", TOOL_NAME: name, TOOL_CALL_ID: tool_call.get("id"),
                          TOOL_TYPE: "function", "rlm.call_id": event.get("call_id"),
                          TOOL_ARGUMENTS: self._content(tool_call.get("arguments"))}
            span = self._start(f"execute_tool {name}", call.span, start, attributes)
            call.tools.append(_Tool(span=span, call_id=str(tool_call.get("id")), name=name, start_ns=start))

    def _on_tool_results(self, event: Mapping[str, Any]) -> None:
        call = self._call(event)
        end = self._time(event)
        for result in event.get("tool_results") or []:
            if not isinstance(result, Mapping):
                continue
            tool = next((t for t in call.tools if t.call_id == str(result.get("call_id"))), None)
            if tool is None:
                continue
            call.tools.remove(tool)
            duration = result.get("duration_ms")
            finished = min(tool.start_ns + int(duration * 1e6), end) \
                if isinstance(duration, (int, float)) and not isinstance(duration, bool) else end
            tool.span.set_attributes(_clean({"rlm.duration_ms": duration,
                                             TOOL_RESULT: self._content(result.get("content"))}))
            failure = ("tool_error", f"the tool {tool.name} returned an error") if result.get("is_error") else None
            self._finish(tool.span, max(finished, tool.start_ns), failure)
        self._end_tools(call, list(call.tools), end, reason="no result was recorded for the tool call")

    def _end_tools(self, call: _Call, tools: Iterable[_Tool], end_ns: int, *, reason: str) -> None:
        for tool in list(tools):
            self._finish(tool.span, max(end_ns, tool.start_ns), ("incomplete", reason))
            call.tools.remove(tool)

    def _on_repl_execution(self, event: Mapping[str, Any]) -> None:
        call = self._call(event)
        end = self._time(event)
        parent = next((t for t in call.tools if t.name == "execute_code" and not t.repl), None)
        if parent is not None:
            parent.repl = True
        final = event.get("final")
        code, output = event.get("code"), event.get("output")
        attributes = {
            "rlm.call_id": event.get("call_id"), "rlm.repl.execution_time_ms": event.get("execution_time_ms"),
            "rlm.repl.truncated": event.get("truncated"),
            "rlm.repl.final": final.get("kind") if isinstance(final, Mapping) else None,
            "rlm.repl.code_chars": len(code) if isinstance(code, str) else None,
            "rlm.repl.output_chars": len(output) if isinstance(output, str) else None,
            "rlm.repl.notice": cap(str(event["notice"]), ERROR_CHARS) if event.get("notice") else None,
            "rlm.repl.code": self._content(code), "rlm.repl.output": self._content(output),
            "rlm.repl.value": self._content(event.get("value")), "rlm.repl.error": self._content(event.get("error")),
        }
        span = self._start("repl_execution", parent.span if parent is not None else call.span,
                           self._before(event, end), attributes)
        self._finish(span, end, ("repl_error", "the code raised an error") if event.get("error") else None)

    # --- what happened within a call: span events ------------------------------------------------------

    def _on_limit_hit(self, event: Mapping[str, Any]) -> None:
        call = self._call(event)
        limit = str(event.get("limit"))
        call.span.add_event("rlm.limit_hit", _clean({"rlm.limit": limit, "rlm.message": event.get("message")}),
                            timestamp=self._time(event))
        call.failure = call.failure or ("limit_hit", f"limit reached: {limit}")

    def _on_no_answer(self, event: Mapping[str, Any]) -> None:
        call = self._call(event)
        attributes = _clean({"rlm.limit": event.get("limit"), "rlm.reason": event.get("reason")})
        call.span.add_event("rlm.no_answer", attributes, timestamp=self._time(event))
        call.failure = ("no_answer", f"no answer: {event.get('reason')}")

    def _on_context_compacted(self, event: Mapping[str, Any]) -> None:
        self._call(event).span.add_event("rlm.context_compacted", _clean({
            "rlm.removed_chars": event.get("removed_chars"), "rlm.window": event.get("window"),
            "rlm.estimated_tokens": event.get("estimated_tokens")}), timestamp=self._time(event))

    def _on_repeated_code(self, event: Mapping[str, Any]) -> None:
        self._call(event).span.add_event("rlm.repeated_code", _clean({
            "rlm.runs": event.get("runs"), REQUEST_TEMPERATURE: event.get("temperature"),
            REQUEST_SEED: event.get("seed"), "rlm.repl.code": self._content(event.get("code")),
            "rlm.repl.error": self._content(event.get("error"))}), timestamp=self._time(event))

    def _on_context_injected(self, event: Mapping[str, Any]) -> None:
        self._call(event).span.add_event("rlm.context_injected", _clean({
            "rlm.provider": event.get("provider"), "rlm.chars": event.get("chars"), "rlm.tokens": event.get("tokens"),
            "rlm.error": event.get("error"), "rlm.query": self._content(event.get("query"))}),
            timestamp=self._time(event))


__all__ = ["TraceBuilder", "cap", "message_parts"]
