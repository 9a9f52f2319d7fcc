"""rlm-otel: every rlm run exported as an OpenTelemetry trace (``[rlm] trajectory_sinks = ["jsonl", "otel"]``).

The hooks are in :mod:`rlm_otel.plugin` (cheap to import); the OpenTelemetry SDK is imported only when
a run opens the sink (:func:`rlm_otel.sink.from_config`).  :func:`rlm_otel.pipeline.use_exporter` sends
the spans to an exporter of your own instead of the one the ``OTEL_*`` environment variables describe.
"""

__version__ = "0.1.0"
