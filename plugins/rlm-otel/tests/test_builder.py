"""The event -> span mapping on hand-written trajectories: the REPL protocol's ``llm_query`` sub-calls,
span events, torn trajectories, and a sink that never raises."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from structlog.testing import capture_logs

from rlm_otel.sink import OtelSink
from rlm_otel.spans import ERROR_TYPE, INPUT_TOKENS, OUTPUT_TOKENS, TraceBuilder

T0 = 1_800_000_000.0


@pytest.fixture
def exported():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


def _event(kind, at, call="c0", parent=None, depth=0, sub=None, **fields):
    return {"type": kind, "v": 2, "trajectory_id": "t1", "call_id": call, "parent_call_id": parent,
            "sub_call_type": sub, "depth": depth, "timestamp": T0 + at, **fields}


def _llm(at, call="c0", depth=0, tokens=(10, 2), forced=False):
    return _event("llm_call", at, call=call, depth=depth, parent="c0" if depth else None,
                  sub="llm_query" if depth else None, model="m", prompt=[{"role": "user", "content": "p"}],
                  response="r", tool_calls=[], token_usage={"input": tokens[0], "output": tokens[1],
                                                            "total": sum(tokens)},
                  cost=0.001, duration_ms=500.0, finish_reason="stop", forced=forced)


REPL_RUN = [
    _event("run_start", 0, prompt="p", system=None, model="m", backend="openai", environment="local",
           protocol="repl", isolation=None, token_budget=None, cost_limit=None, max_depth=2, tools=[]),
    _llm(1),
    _event("call_start", 1.5, call="c1", parent="c0", depth=1, sub="llm_query", prompt="chunk", token_limit=100),
    _llm(2, call="c1", depth=1, tokens=(5, 1)),
    _event("call_end", 2.1, call="c1", parent="c0", depth=1, sub="llm_query", response="x", limit=None,
           duration_ms=600.0, tokens_spent=6, cost=0.001),
    _event("repl_execution", 2.5, code="llm_query('chunk')", output="x\n", value=None, error=None, truncated=False,
           execution_time_ms=900.0, duration_ms=1000.0, final=None, notice=None),
    _event("context_compacted", 2.6, removed_chars=100, window=1000, estimated_tokens=900),
    _event("limit_hit", 2.7, limit="max_turns", message="20 turns"),
    _llm(3, forced=True),
    _event("run_end", 4, response="answer", error=None, limit_hit="max_turns", answer_source="forced", total_calls=3,
           token_usage={"input": 25, "output": 5, "total": 30}, cost=0.003, duration_ms=4000.0),
]


def test_the_repl_protocol(exported):
    tracer, exporter = exported
    builder = TraceBuilder(tracer)
    for event in REPL_RUN:
        builder.handle(event)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert sorted(spans) == ["chat m", "invoke_agent llm_query", "invoke_agent rlm", "repl_execution"]
    root, sub, repl = spans["invoke_agent rlm"], spans["invoke_agent llm_query"], spans["repl_execution"]
    assert sub.parent.span_id == root.context.span_id, "llm_query: a child of its calling call"
    assert repl.parent.span_id == root.context.span_id
    assert (repl.start_time, repl.end_time) == (int((T0 + 1.5) * 1e9), int((T0 + 2.5) * 1e9))
    assert repl.attributes["rlm.repl.execution_time_ms"] == 900.0
    assert (sub.attributes[INPUT_TOKENS], sub.attributes[OUTPUT_TOKENS]) == (5, 1)
    assert (root.attributes[INPUT_TOKENS], root.attributes[OUTPUT_TOKENS]) == (25, 5)
    assert [e.name for e in root.events] == ["rlm.context_compacted", "rlm.limit_hit"]
    assert root.status.status_code is StatusCode.ERROR and root.attributes[ERROR_TYPE] == "limit_hit"
    chats = [s for s in exporter.get_finished_spans() if s.name == "chat m"]
    assert [c.attributes["rlm.forced"] for c in chats] == [False, False, True]


def test_a_failing_repl_execution_is_an_error_without_its_text(exported):
    tracer, exporter = exported
    builder = TraceBuilder(tracer)
    builder.handle(REPL_RUN[0])
    builder.handle(_event("repl_execution", 1, code="x", output="", value=None, error="NameError: name 'secret'",
                          truncated=False, execution_time_ms=1.0, duration_ms=2.0, final=None, notice=None))
    builder.close()
    repl = next(s for s in exporter.get_finished_spans() if s.name == "repl_execution")
    assert repl.status.status_code is StatusCode.ERROR and repl.attributes[ERROR_TYPE] == "repl_error"
    assert "secret" not in repl.to_json()


def test_a_run_without_run_end_ends_as_an_error_when_the_sink_closes(exported):
    tracer, exporter = exported
    builder = TraceBuilder(tracer)
    for event in REPL_RUN[:3]:  # stopped inside the sub-call
        builder.handle(event)
    assert [s.name for s in exporter.get_finished_spans()] == ["chat m"]
    builder.close()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    for name in ("invoke_agent rlm", "invoke_agent llm_query"):
        assert spans[name].status.status_code is StatusCode.ERROR
        assert spans[name].attributes[ERROR_TYPE] == "incomplete"
    builder.handle(_llm(9))
    assert len(exporter.get_finished_spans()) == 3, "nothing after the end"


def test_events_without_run_start_still_make_a_trace(exported):
    tracer, exporter = exported
    builder = TraceBuilder(tracer)
    builder.handle(_llm(1))
    builder.handle(_event("mystery_event", 1.2))
    builder.handle(REPL_RUN[-1])
    names = sorted(s.name for s in exporter.get_finished_spans())
    assert names == ["chat m", "invoke_agent rlm"]


def test_a_sink_that_cannot_make_a_span_warns_once_and_never_raises(exported):
    tracer, exporter = exported

    class _Pipeline:
        def __init__(self):
            self.tracer = tracer
            self.flushed = 0

        def flush(self, timeout):
            self.flushed += 1
            return True

    shared = _Pipeline()
    sink = OtelSink(pipeline=shared)
    with capture_logs() as logs:
        sink.write(REPL_RUN[0])
        sink.write({**_llm(1), "token_usage": "not a mapping", "duration_ms": object()})
        sink.write({**_llm(2), "tool_calls": 7, "timestamp": "late"})
        sink.write(_llm(3))
        sink.close()
    assert shared.flushed == 1
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert [(w["event"], w["event_type"]) for w in warnings] == [("otel_span_failed", "llm_call")]
    assert any(s.name == "invoke_agent rlm" for s in exporter.get_finished_spans())
