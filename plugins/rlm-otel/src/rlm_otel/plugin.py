"""The hook implementations of rlm-otel (cheap to import: nothing but the kernel's hook marker).

Registers the ``otel`` trajectory sink, the ``[plugins.otel]`` settings and a doctor check, all as
``"module:attr"`` strings: the OpenTelemetry SDK is imported only when a run uses the sink.
"""

from __future__ import annotations

from rlm import hookimpl

#: What users name in ``[rlm] trajectory_sinks``.
SINK = "otel"


@hookimpl
def rlm_register_trajectory_sinks(register):
    register(SINK, "rlm_otel.sink:from_config",
             description="an OpenTelemetry trace per run, sent where the OTEL_* environment variables say "
                         "(OTLP/HTTP by default)")


@hookimpl
def rlm_register_config_sections(register):
    register("otel", "rlm_otel.settings:OtelSettings",
             description='OpenTelemetry traces ([rlm] trajectory_sinks = ["jsonl", "otel"])')


@hookimpl
def rlm_register_doctor_checks(register):
    register("otel", "rlm_otel.doctor:check")
