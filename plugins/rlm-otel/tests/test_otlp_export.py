"""(b) The spans of a run reach an OTLP/HTTP receiver configured by the standard OTEL_* variables only;
(c) a receiver that is down costs one warning and the run still succeeds."""

from __future__ import annotations

import socket

from rlm_testing.server import Reply
from structlog.testing import capture_logs


def _attributes(span) -> dict:
    out = {}
    for kv in span.attributes:
        value = kv.value
        kind = value.WhichOneof("value")
        out[kv.key] = list(v.string_value for v in value.array_value.values) if kind == "array_value" \
            else getattr(value, kind)
    return out


def _resource(resource) -> dict:
    return {kv.key: kv.value.string_value for kv in resource.attributes}


def _run(make_rlm, scripted_llm, **settings):
    scripted_llm.script([
        Reply.tool_calls(("rlm_sub_complete", {"query": "sub question"}, "tc-sub")),
        Reply.text("sub answer", input_tokens=20, output_tokens=2),
        Reply.text("final answer", input_tokens=50, output_tokens=4),
    ])
    result = make_rlm(**settings).completion_sync("the question")
    assert result.success, result.error
    return result


def test_spans_reach_the_collector_that_otel_variables_name(make_rlm, scripted_llm, otlp_receiver, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme,authorization=Bearer%20t0ken")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "my-agent")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    result = _run(make_rlm, scripted_llm)

    received = otlp_receiver.spans()  # the run's end flushed them: here before completion_sync returned
    assert otlp_receiver.paths and set(otlp_receiver.paths) == {"/v1/traces"}
    assert otlp_receiver.headers[0]["x-tenant"] == "acme"
    assert otlp_receiver.headers[0]["authorization"] == "Bearer t0ken"
    assert otlp_receiver.headers[0]["content-type"] == "application/x-protobuf"
    by_name = {}
    for resource, scope, span in received:
        by_name.setdefault(span.name, []).append((resource, scope, span))
    assert sorted(by_name) == ["chat scripted-model", "execute_tool rlm_sub_complete", "invoke_agent rlm",
                               "invoke_agent rlm_sub_complete"]
    assert len(by_name["chat scripted-model"]) == 3
    resource, scope, root = by_name["invoke_agent rlm"][0]
    assert _resource(resource)["service.name"] == "my-agent"
    assert _resource(resource)["deployment.environment"] == "test"
    assert scope.name == "rlm-otel"
    attributes = _attributes(root)
    assert attributes["gen_ai.operation.name"] == "invoke_agent"
    assert attributes["gen_ai.request.model"] == "scripted-model"
    assert attributes["gen_ai.usage.input_tokens"] == result.total_input_tokens
    assert attributes["gen_ai.usage.output_tokens"] == result.total_output_tokens
    assert abs(attributes["rlm.cost_usd"] - result.total_cost_usd) < 1e-12
    assert attributes["rlm.trajectory_id"] == result.trajectory_id
    assert root.parent_span_id == b""

    _, _, sub = by_name["invoke_agent rlm_sub_complete"][0]
    _, _, tool = by_name["execute_tool rlm_sub_complete"][0]
    assert sub.parent_span_id == tool.span_id and tool.parent_span_id == root.span_id
    assert len({span.trace_id for _, _, span in received}) == 1
    chats = [_attributes(span) for _, _, span in by_name["chat scripted-model"]]
    sub_chats = [c for c in chats if c["rlm.call_id"] != attributes["rlm.call_id"]]
    assert [c["gen_ai.usage.input_tokens"] for c in sub_chats] == [20]
    assert all(c["gen_ai.provider.name"] == "scripted-openai" for c in chats)
    assert sorted(tuple(c["gen_ai.response.finish_reasons"]) for c in chats) == [("stop",), ("stop",), ("tool_calls",)]


def test_the_traces_endpoint_variable_and_the_default_service_name(make_rlm, scripted_llm, otlp_receiver, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")  # the signal's own variable wins
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{otlp_receiver.endpoint}/v1/traces")
    _run(make_rlm, scripted_llm)
    received = otlp_receiver.spans()
    assert len(received) == 6
    assert {_resource(resource)["service.name"] for resource, _, _ in received} == {"rlm"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_collector_that_is_down_is_one_warning_and_the_runs_go_on(make_rlm, scripted_llm, monkeypatch, capsys):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2")  # the SDK reads seconds
    with capture_logs() as logs:
        first = _run(make_rlm, scripted_llm)
        second = _run(make_rlm, scripted_llm)
    assert first.response == second.response == "final answer"
    warnings = [entry for entry in logs if entry["log_level"] in ("warning", "error") and "otel" in entry["event"]]
    assert [w["event"] for w in warnings] == ["otel_export_failed"], warnings
    assert "127.0.0.1" in warnings[0]["exporter"] and warnings[0]["fix"]
    err = capsys.readouterr().err
    assert "Transient error" not in err and "Failed to export" not in err, "the SDK's own retry lines stay quiet"


def test_a_collector_that_never_answers_holds_a_run_up_only_until_the_flush_timeout(make_rlm, scripted_llm,
                                                                                     monkeypatch):
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_say_nothing() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_say_nothing, daemon=True)
    thread.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{listener.getsockname()[1]}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "30")
    monkeypatch.setenv("RLM_PLUGINS__OTEL__FLUSH_TIMEOUT", "0.2")
    from rlm_otel.pipeline import Pipeline

    flushed: list[bool] = []
    real_flush = Pipeline.flush
    def flush(self, timeout):
        flushed.append(real_flush(self, timeout))
        return flushed[-1]

    monkeypatch.setattr(Pipeline, "flush", flush)
    try:
        with capture_logs() as logs:
            result = _run(make_rlm, scripted_llm)
        assert result.response == "final answer"
        assert flushed == [False], "the run's end gave up waiting (its spans go on in the background)"
        assert not [entry for entry in logs if entry["log_level"] in ("warning", "error") and "otel" in entry["event"]]
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()
