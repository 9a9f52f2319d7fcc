"""``rlm doctor``'s line for rlm-otel: whether runs are traced, where the spans go, whether content is captured."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from rlm.doctor import Check
from rlm.errors import ConfigError

if TYPE_CHECKING:
    from rlm.config import RLMConfig


def check(config: RLMConfig) -> Iterator[Check]:
    from rlm_otel.plugin import SINK
    from rlm_otel.settings import settings_from

    if SINK not in config.trajectory_sinks:
        yield Check(status="ok", summary=f'otel: installed, not on (add "{SINK}" to [rlm] trajectory_sinks, or '
                                         f"RLM_TRAJECTORY_SINKS=jsonl,{SINK})")
        return
    try:
        settings = settings_from(config)
        from rlm_otel import pipeline
    except ConfigError as exc:
        yield Check(status="fail", summary=f"otel: {exc.message}", fix=exc.fix)
        return
    except ImportError as exc:
        from rlm_otel.sink import PIP_FIX

        yield Check(status="fail", summary=f"otel: the OpenTelemetry SDK cannot be imported ({exc})", fix=PIP_FIX)
        return
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        yield Check(status="warn", summary="otel: OTEL_SDK_DISABLED=true, no span is sent",
                    fix="unset OTEL_SDK_DISABLED to trace runs")
        return
    try:
        exporters = [pipeline.load_exporter(name) for name in pipeline.exporter_names(os.environ)]
    except ConfigError as exc:
        yield Check(status="fail", summary=f"otel: {exc.message}", fix=exc.fix)
        return
    if not exporters:
        yield Check(status="warn", summary="otel: OTEL_TRACES_EXPORTER=none, no span is sent",
                    fix="unset OTEL_TRACES_EXPORTER (OTLP/HTTP) or name an exporter")
        return
    where = ", ".join(pipeline.describe_exporter(e) for e in exporters)
    for exporter in exporters:
        exporter.shutdown()
    service = pipeline.default_resource().attributes.get("service.name")
    content = "on" if settings.capture_content else "off"
    yield Check(status="ok", summary=f"otel: traces of service {service!r} go to {where}; prompt and response "
                                     f"capture {content}")
