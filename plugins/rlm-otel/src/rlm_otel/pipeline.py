"""Where the spans go: one export pipeline per process, built by the OpenTelemetry SDK from ``OTEL_*``.

A :class:`Pipeline` is an SDK ``TracerProvider`` with a ``BatchSpanProcessor`` per exporter; the runs of a
process share it (one per distinct set of ``OTEL_*`` variables).  The exporters are the SDK's own,
chosen by ``OTEL_TRACES_EXPORTER`` (``otlp``, the default, is OTLP over HTTP/protobuf; ``otlp`` with
``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``, ``console``, ``none`` or any installed exporter's entry-point
name) and configured by the SDK from the environment (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_EXPORTER_OTLP_TIMEOUT``,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``...).

An exporter never fails or holds up a run: spans are sent by the processor's thread; at a run's end
:meth:`Pipeline.flush` waits a bounded time, and not at all while the exporter is known to be down.
An outage is one ``otel_export_failed`` warning (the SDK's own retry messages are kept quiet), its
end an ``otel_export_recovered`` info line.

Imports the SDK at module top: only :func:`rlm_otel.sink.from_config` imports this module.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from rlm.errors import ConfigError
from rlm.logging import get_logger

from rlm_otel import __version__

log = get_logger(__name__)

#: the entry-point group where OpenTelemetry span exporters declare themselves (the SDK's own)
EXPORTER_GROUP = "opentelemetry_traces_exporter"
#: ``OTEL_EXPORTER_OTLP_PROTOCOL`` -> the exporter's entry-point name
_OTLP_BY_PROTOCOL = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
#: an exporter's entry-point name -> the distribution that provides it
EXPORTER_PACKAGES = {
    "otlp_proto_http": "opentelemetry-exporter-otlp-proto-http",
    "otlp_proto_grpc": "opentelemetry-exporter-otlp-proto-grpc",
    "zipkin": "opentelemetry-exporter-zipkin-json",
    "zipkin_json": "opentelemetry-exporter-zipkin-json",
    "zipkin_proto": "opentelemetry-exporter-zipkin-proto-http",
    "console": "opentelemetry-sdk",
}
#: the service name when neither OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES names one
DEFAULT_SERVICE = "rlm"
#: seconds the interpreter's exit waits for the spans not sent yet
EXIT_TIMEOUT = 3.0
#: loggers of the SDK's exporting machinery whose messages during an export become our one warning
_EXPORT_LOGGERS = (
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.sdk._shared_internal",
    "opentelemetry.sdk.trace.export",
)

#: the pipeline whose exporter runs in this thread right now (its log records are ours to report)
_exporting = threading.local()
#: the pipelines whose exporter is down now
_outages: set[int] = set()


# --- which exporters: OTEL_TRACES_EXPORTER ----------------------------------------------------------


def exporter_names(env: Mapping[str, str]) -> list[str]:
    """The entry-point names of the span exporters ``OTEL_TRACES_EXPORTER`` asks for (``otlp`` by
    default, which is ``otlp_proto_http`` unless ``OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL`` says
    ``grpc``); empty for ``none``."""
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]
    out: list[str] = []
    for name in names or ["otlp"]:
        if name == "none":
            continue
        if name == "otlp":
            which = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" if env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") \
                else "OTEL_EXPORTER_OTLP_PROTOCOL"
            protocol = (env.get(which) or "http/protobuf").strip().lower()
            if protocol not in _OTLP_BY_PROTOCOL:
                raise ConfigError(f"{which}={protocol!r}: the OpenTelemetry SDK exports OTLP over http/protobuf or "
                                  f"grpc only", fix=f"set {which}=http/protobuf (the default) or grpc")
            name = _OTLP_BY_PROTOCOL[protocol]
        if name not in out:
            out.append(name)
    return out


def load_exporter(name: str) -> SpanExporter:
    """A new span exporter of the SDK's entry point ``name``, configured by the SDK from ``OTEL_*``."""
    package = EXPORTER_PACKAGES.get(name)
    install = f"pip install {package}" if package else f"install the package that provides the {name!r} exporter"
    found = list(entry_points(group=EXPORTER_GROUP, name=name))
    if not found:
        raise ConfigError(f"OTEL_TRACES_EXPORTER asks for the span exporter {name!r}, which is not installed",
                          fix=f"{install}, or set OTEL_TRACES_EXPORTER=otlp (OTLP/HTTP, installed with rlm-otel)")
    try:
        exporter_type = found[0].load()
    except ImportError as exc:
        raise ConfigError(f"the span exporter {name!r} cannot be imported ({exc})", fix=install) from exc
    try:
        return exporter_type()
    except Exception as exc:  # noqa: BLE001 - an SDK exporter reads its OTEL_* variables in its constructor
        raise ConfigError(f"the span exporter {name!r} refused its OTEL_* configuration ({type(exc).__name__}: {exc})",
                          fix="check the OTEL_EXPORTER_* environment variables") from exc


def describe_exporter(exporter: Any) -> str:
    """``OTLPSpanExporter http://host:4318/v1/traces``: the exporter's type and, when it has one, its endpoint."""
    endpoint = getattr(exporter, "_endpoint", None)  # the OTLP exporters keep the endpoint they resolved
    return f"{type(exporter).__name__} {endpoint}" if isinstance(endpoint, str) else type(exporter).__name__


def default_resource() -> Resource:
    """The SDK's resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, the SDK's own), named
    ``rlm`` when those name no service."""
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": DEFAULT_SERVICE}))
    return resource


# --- the pipeline -----------------------------------------------------------------------------------


class _QuietExportLogs(logging.Filter):
    """Turns the SDK's log records made while one of our exporters runs into that pipeline's outage
    (one structured warning) instead of a line per retry; other records pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        pipeline = getattr(_exporting, "pipeline", None)
        if pipeline is None:  # the processor dropping spans while an exporter is down: part of the outage
            return not (record.name == "opentelemetry.sdk._shared_internal" and _outages)
        if record.levelno >= logging.WARNING:
            message = record.getMessage()
            transient = _TRANSIENT.match(message)  # "Transient error X encountered while exporting ..., retrying"
            pipeline.failed(transient.group(1) if transient else message)
        return False


_QUIET = _QuietExportLogs()
_TRANSIENT = re.compile(r"Transient error (.*) encountered while exporting", re.DOTALL)


def _quiet(logger_names: Sequence[str]) -> None:
    for name in logger_names:
        logger = logging.getLogger(name)
        if _QUIET not in logger.filters:
            logger.addFilter(_QUIET)


class _Watched(SpanExporter):
    """An exporter whose failures (a FAILURE result, an exception, a warning it logs) are its pipeline's
    outage, and whose success ends one."""

    def __init__(self, inner: SpanExporter, pipeline: Pipeline) -> None:
        self.inner = inner
        self.pipeline = pipeline
        modules = [c.__module__ for c in type(inner).__mro__ if c.__module__.startswith("opentelemetry")]
        _quiet([*_EXPORT_LOGGERS, *modules])

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        _exporting.pipeline = self.pipeline
        try:
            result = self.inner.export(spans)
        except Exception as exc:  # noqa: BLE001 - an exporter must not take the processor's thread down
            self.pipeline.failed(f"{type(exc).__name__}: {exc}")
            return SpanExportResult.FAILURE
        finally:
            _exporting.pipeline = None
        if result is SpanExportResult.SUCCESS:
            self.pipeline.succeeded()
        else:
            self.pipeline.failed("the exporter reported a failure")
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class Pipeline:
    """A tracer provider and the batch processors that send its spans to ``exporters``."""

    def __init__(self, exporters: Sequence[SpanExporter], *, resource: Resource | None = None) -> None:
        self.exporters = list(exporters)
        self.description = ", ".join(describe_exporter(e) for e in self.exporters) or "no exporter"
        self._outage = threading.Event()
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._closed = False
        self.provider = TracerProvider(resource=resource or default_resource(), shutdown_on_exit=False)
        self._processors: list[BatchSpanProcessor] = []
        for exporter in self.exporters:
            processor = BatchSpanProcessor(_Watched(exporter, self))
            self.provider.add_span_processor(processor)
            self._processors.append(processor)
        self.tracer = self.provider.get_tracer("rlm-otel", __version__)

    @property
    def down(self) -> bool:
        """Whether the last export failed (the exporter is known to be unreachable or refusing)."""
        return self._outage.is_set()

    def failed(self, reason: str) -> None:
        """An export failed: the first failure of an outage is one warning, the others are quiet (and all
        of them once the pipeline is shut down: an export still running then is being given up)."""
        if self._closed:
            return
        with self._lock:
            first = not self._outage.is_set()
            if first:  # logged before the outage is visible: a run waiting in flush() returns after it
                log.warning("otel_export_failed", exporter=self.description, error=reason[:300],
                            fix="start the collector (or point OTEL_EXPORTER_OTLP_ENDPOINT at one); until it "
                                "answers, spans are dropped and runs go on")
            self._outage.set()
            _outages.add(id(self))

    def succeeded(self) -> None:
        if self._outage.is_set():
            with self._lock:
                self._outage.clear()
                _outages.discard(id(self))
            log.info("otel_export_recovered", exporter=self.description)

    def _flush_all(self) -> None:
        for processor in self._processors:
            try:
                processor.force_flush()
            except Exception as exc:  # noqa: BLE001 - never let a flush thread die loudly
                self.failed(f"{type(exc).__name__}: {exc}")

    def flush(self, timeout: float) -> bool:
        """Send the spans ended so far, waiting at most ``timeout`` seconds, and not at all while the
        exporter is down (the processor's thread keeps trying in the background).  True when sent."""
        if self.down or not self._processors:
            return not self._processors
        with self._lock:
            if self._flusher is None or not self._flusher.is_alive():
                self._flusher = threading.Thread(target=self._flush_all, name="rlm-otel-flush", daemon=True)
                self._flusher.start()
            flusher = self._flusher
        deadline = time.monotonic() + timeout
        while flusher.is_alive() and not self.down:
            left = deadline - time.monotonic()
            if left <= 0:
                log.info("otel_flush_timed_out", exporter=self.description, timeout=timeout)
                return False
            flusher.join(min(left, 0.05))
        return not flusher.is_alive() and not self.down

    def shutdown(self, timeout: float = EXIT_TIMEOUT) -> None:
        """Send what is left (at most ``timeout`` seconds; nothing while down) and stop the processors."""
        if not self.down:
            self.flush(timeout)
        self._closed = True
        stopper = threading.Thread(target=self.provider.shutdown, name="rlm-otel-shutdown", daemon=True)
        stopper.start()
        stopper.join(0 if self.down else timeout)
        _outages.discard(id(self))


# --- the process's pipelines --------------------------------------------------------------------------

_pipelines: dict[tuple[tuple[str, str], ...], Pipeline | None] = {}
_override: list[Pipeline] = []
_registry_lock = threading.Lock()
_atexit_registered = False


def _otel_env(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in env.items() if k.startswith("OTEL_")))


def _sdk_disabled(env: Mapping[str, str]) -> bool:
    return env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def current() -> Pipeline | None:
    """The pipeline this process's runs send their spans to: the one :func:`use_exporter` installed, else
    the one the ``OTEL_*`` environment describes (built on first use, then shared); None when
    ``OTEL_TRACES_EXPORTER=none`` or ``OTEL_SDK_DISABLED=true``."""
    global _atexit_registered
    if _override:
        return _override[-1]
    env = os.environ
    if _sdk_disabled(env):
        return None
    key = _otel_env(env)
    with _registry_lock:
        if key not in _pipelines:
            exporters = [load_exporter(name) for name in exporter_names(env)]
            _pipelines[key] = Pipeline(exporters) if exporters else None
            if not _atexit_registered:
                atexit.register(shutdown_all)
                _atexit_registered = True
        return _pipelines[key]


def use_exporter(exporter: SpanExporter | None, *, resource: Resource | None = None) -> Pipeline | None:
    """Send the spans of this process's later runs to ``exporter`` (an application's own exporter, or the
    SDK's ``InMemorySpanExporter`` in tests) instead of where ``OTEL_*`` says; ``None`` goes back to
    ``OTEL_*``.  Returns the new pipeline (None for ``None``)."""
    with _registry_lock:
        for old in _override:
            old.shutdown(0)
        _override.clear()
        if exporter is None:
            return None
        pipeline = Pipeline([exporter], resource=resource)
        _override.append(pipeline)
        return pipeline


def shutdown_all(timeout: float = EXIT_TIMEOUT) -> None:
    """Stop every pipeline, sending what is left (at most ``timeout`` seconds each; called at exit)."""
    with _registry_lock:
        pipelines = [p for p in (*_pipelines.values(), *_override) if p is not None]
        _pipelines.clear()
        _override.clear()
    for pipeline in pipelines:
        pipeline.shutdown(timeout)


__all__ = ["DEFAULT_SERVICE", "EXPORTER_GROUP", "EXPORTER_PACKAGES", "Pipeline", "current", "default_resource",
           "describe_exporter", "exporter_names", "load_exporter", "shutdown_all", "use_exporter"]
