"""The ``otel`` trajectory sink: one run's events made into spans as they come, sent at the run's end.

:func:`from_config` is the factory the kernel calls when a top-level run starts (``[rlm]
trajectory_sinks`` names ``otel``).  It imports the OpenTelemetry SDK (a missing one is a
:class:`rlm.errors.ConfigError` naming the pip command) and takes the process's shared
:mod:`rlm_otel.pipeline`.  A run started inside an application's active OpenTelemetry span is a child
of that span (same trace); otherwise each run is a trace of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rlm.logging import get_logger

from rlm_otel.settings import OtelSettings, settings_from

if TYPE_CHECKING:
    from rlm.config import RLMConfig

    from rlm_otel.pipeline import Pipeline

log = get_logger(__name__)

#: what to install when the SDK or the OTLP exporter is missing
PIP_FIX = ("pip install 'opentelemetry-sdk>=1.27' 'opentelemetry-exporter-otlp-proto-http>=1.27' "
           "(both come with rlm-otel)")


class OtelSink:
    """Writes one run's trajectory events as spans to ``pipeline``; never raises from :meth:`write`."""

    def __init__(self, *, pipeline: Pipeline, settings: OtelSettings | None = None) -> None:
        from opentelemetry import context, trace

        from rlm_otel.spans import TraceBuilder

        self.pipeline = pipeline
        self.settings = settings or OtelSettings()
        # an application's span active where the run was started: the run's trace continues it
        current = trace.get_current_span().get_span_context()
        self.builder = TraceBuilder(pipeline.tracer, capture_content=self.settings.capture_content,
                                    max_content_chars=self.settings.max_content_chars,
                                    parent_context=context.get_current() if current.is_valid else None)
        self._broken = False

    def write(self, event: Mapping[str, Any]) -> None:
        if self._broken:
            return
        try:
            self.builder.handle(event)
        except Exception as exc:  # noqa: BLE001 - a trace we cannot make must not end the run
            self._broken = True
            log.warning("otel_span_failed", event_type=event.get("type"), error=f"{type(exc).__name__}: {exc}",
                        fix="this run's trace is incomplete; the run goes on (please report the error)")

    def close(self) -> None:
        try:
            self.builder.close()
        except Exception as exc:  # noqa: BLE001
            log.warning("otel_span_failed", event_type="close", error=f"{type(exc).__name__}: {exc}",
                        fix="this run's trace is incomplete; the run goes on (please report the error)")
        self.pipeline.flush(self.settings.flush_timeout)


class NullSink:
    """What ``otel`` is when ``OTEL_TRACES_EXPORTER=none`` or ``OTEL_SDK_DISABLED=true``: nothing."""

    def write(self, event: Mapping[str, Any]) -> None:
        return None

    def close(self) -> None:
        return None


def from_config(config: RLMConfig) -> OtelSink | NullSink:
    """The sink of one run (the kernel's factory: ``factory(config=RLMConfig)``)."""
    from rlm.errors import ConfigError

    settings = settings_from(config)
    try:
        from rlm_otel import pipeline
    except ImportError as exc:
        raise ConfigError(f"the otel trajectory sink needs the OpenTelemetry SDK, which cannot be imported ({exc})",
                          fix=PIP_FIX) from exc
    shared = pipeline.current()
    if shared is None:
        return NullSink()
    return OtelSink(pipeline=shared, settings=settings)


__all__ = ["NullSink", "OtelSink", "PIP_FIX", "from_config"]
