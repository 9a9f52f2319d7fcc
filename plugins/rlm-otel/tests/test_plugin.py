"""rlm-otel's hooks and configuration: the ``otel`` sink, ``[plugins.otel]``, the doctor check, the
exporter choice from ``OTEL_TRACES_EXPORTER``, a cheap import, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from rlm.config import load_config
from rlm.errors import ConfigError
from rlm.plugins import create_plugin_manager
from rlm.registry import collect
from rlm_testing.server import Reply

import rlm_otel
from rlm_otel import pipeline, plugin
from rlm_otel.settings import OtelSettings, settings_from
from rlm_otel.sink import NullSink, OtelSink, from_config


@pytest.fixture
def pm():
    manager = create_plugin_manager(entry_points=False)
    manager.register(plugin, name="otel")
    return manager


def _config(pm, env=None, **overrides):
    sections = {name: reg.load() for name, reg in collect(pm, "config_section").items()}
    return load_config(use_file=False, env=env or {}, sections=sections, **overrides)


def test_registers_the_sink_the_section_and_the_doctor_check(pm):
    sinks = collect(pm, "trajectory_sink")
    assert sinks["otel"].target == "rlm_otel.sink:from_config" and sinks["otel"].load() is from_config
    assert collect(pm, "config_section")["otel"].load() is OtelSettings
    assert "otel" in collect(pm, "doctor_check")


def test_the_entry_point_names_the_plugin_module():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="rlm") if e.name == "otel"]
    assert ep.value == "rlm_otel.plugin"
    manager = create_plugin_manager(disabled=set(), strict=True)
    record = manager.record_for("otel")
    assert record is not None and (record.status, record.distribution) == ("loaded", "rlm-otel")


def test_importing_the_plugin_is_cheap():
    code = ("import sys, json; import rlm_otel.plugin; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'google.protobuf', "
            "'requests', 'attrs', 'structlog', 'rlm_otel.settings', 'rlm_otel.sink', 'rlm_otel.pipeline', "
            "'rlm_otel.spans')))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(result.stdout) == []


def test_settings_defaults_and_validation(pm):
    assert settings_from(_config(pm)) == OtelSettings(capture_content=False, max_content_chars=4096, flush_timeout=3.0)
    config = _config(pm, env={"RLM_PLUGINS__OTEL__CAPTURE_CONTENT": "1", "RLM_PLUGINS__OTEL__FLUSH_TIMEOUT": "0.5"})
    assert settings_from(config, env={}) == OtelSettings(capture_content=True, flush_timeout=0.5)
    assert settings_from(config, env={"RLM_OTEL_CAPTURE_CONTENT": "off"}).capture_content is False
    assert settings_from(_config(pm), env={"RLM_OTEL_CAPTURE_CONTENT": "on"}).capture_content is True


@pytest.mark.parametrize(("key", "value", "message"), [
    ("MAX_CONTENT_CHARS", "10", "max_content_chars must be a whole number of at least 64"),
    ("FLUSH_TIMEOUT", "0", "flush_timeout must be a number of seconds more than 0 and at most 60"),
    ("FLUSH_TIMEOUT", "600", "flush_timeout must be a number of seconds more than 0 and at most 60"),
])
def test_bad_settings_are_config_errors(pm, key, value, message):
    with pytest.raises(ConfigError, match=message):
        _config(pm, env={f"RLM_PLUGINS__OTEL__{key}": value})


def test_an_unknown_setting_is_a_config_error(pm, tmp_path):
    toml = tmp_path / "rlm.toml"
    toml.write_text("[plugins.otel]\ncapture_contents = true\n", encoding="utf-8")
    sections = {name: reg.load() for name, reg in collect(pm, "config_section").items()}
    with pytest.raises(ConfigError, match="unknown key; did you mean capture_content"):
        load_config(path=toml, env={}, sections=sections)


def test_exporter_names_follow_the_otel_variables():
    assert pipeline.exporter_names({}) == ["otlp_proto_http"]
    assert pipeline.exporter_names({"OTEL_TRACES_EXPORTER": "none"}) == []
    assert pipeline.exporter_names({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}) == \
        ["otlp_proto_grpc"]
    assert pipeline.exporter_names({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                                    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}) == ["otlp_proto_http"]
    assert pipeline.exporter_names({"OTEL_TRACES_EXPORTER": "otlp, console"}) == ["otlp_proto_http", "console"]
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL='http/json'") as info:
        pipeline.exporter_names({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    assert "http/protobuf" in str(info.value.fix)


def test_a_missing_exporter_names_the_pip_command(pm, monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "no_such_exporter")
    with pytest.raises(ConfigError, match="'no_such_exporter', which is not installed") as info:
        from_config(config=_config(pm))
    assert "OTEL_TRACES_EXPORTER=otlp" in info.value.fix
    if not _installed("otlp_proto_grpc"):
        with pytest.raises(ConfigError) as grpc:
            pipeline.load_exporter("otlp_proto_grpc")
        assert grpc.value.fix.startswith("pip install opentelemetry-exporter-otlp-proto-grpc")


def _installed(name: str) -> bool:
    from importlib.metadata import entry_points

    return bool(list(entry_points(group=pipeline.EXPORTER_GROUP, name=name)))


def test_a_missing_sdk_names_the_pip_command(pm):
    config = _config(pm)
    with pytest.MonkeyPatch.context() as patch:  # undone before the fixtures' teardown needs the SDK again
        patch.setitem(sys.modules, "opentelemetry.sdk.resources", None)  # as if opentelemetry-sdk were absent
        patch.delitem(sys.modules, "rlm_otel.pipeline")
        patch.delattr(rlm_otel, "pipeline")
        with pytest.raises(ConfigError, match="needs the OpenTelemetry SDK") as info:
            from_config(config=config)
    assert info.value.fix.startswith("pip install 'opentelemetry-sdk")


def test_the_sink_is_the_otlp_pipeline_by_default_and_nothing_with_none(pm, monkeypatch):
    sink = from_config(config=_config(pm))
    assert isinstance(sink, OtelSink)
    assert "OTLPSpanExporter http://localhost:4318/v1/traces" in sink.pipeline.description
    assert from_config(config=_config(pm)).pipeline is sink.pipeline, "the runs of a process share one pipeline"
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert isinstance(from_config(config=_config(pm)), NullSink)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert isinstance(from_config(config=_config(pm)), NullSink)


def test_a_run_with_the_exporter_off_succeeds(make_rlm, scripted_llm, monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    scripted_llm.script([Reply.text("fine")])
    assert make_rlm().completion_sync("hi").response == "fine"


def test_doctor_check(pm, monkeypatch):
    from rlm_otel.doctor import check

    (line,) = check(_config(pm))
    assert line.status == "ok" and "not on" in line.summary
    on = _config(pm, trajectory_sinks=("jsonl", "otel"))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.example:4318")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "svc")
    (line,) = check(on)
    assert line.status == "ok"
    assert "'svc'" in line.summary and "http://collector.example:4318/v1/traces" in line.summary
    assert "capture off" in line.summary
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "nope")
    (line,) = check(on)
    assert line.status == "fail" and "'nope'" in line.summary and line.fix
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    (line,) = check(on)
    assert line.status == "warn"


def test_readme_names_the_settings():
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    for field in attrs.fields(OtelSettings):
        assert field.name in readme
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME", "RLM_OTEL_CAPTURE_CONTENT", "jaegertracing"):
        assert name in readme
