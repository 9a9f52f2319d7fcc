"""``rlm doctor``'s checks: the Check value type and the kernel's own checks.

Plugins add checks through ``rlm_register_doctor_checks``.  A check returns
Check values: ``ok``, ``warn`` (an optional piece is missing; exit 0) or
``fail`` (a real problem; exit 1), each with the fix when not ok.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Literal

from attrs import define

from rlm.config import RLMConfig
from rlm.hints import missing_plugin_fix

Status = Literal["ok", "warn", "fail"]

#: Environment variables that configure an LLM provider (their values are never shown).
PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")


@define(frozen=True, kw_only=True)
class Check:
    """One line of the doctor's report."""

    status: Status
    summary: str
    fix: str | None = None


def check_python(config: RLMConfig) -> Iterator[Check]:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info >= (3, 11):
        yield Check(status="ok", summary=f"Python {version} ({sys.executable})")
    else:
        yield Check(status="fail", summary=f"Python {version} is too old", fix="use Python 3.11 or newer")


def check_config(config: RLMConfig) -> Iterator[Check]:
    if config.source:
        yield Check(status="ok", summary=f"config file {config.source}")
    else:
        yield Check(status="warn", summary="no rlm.toml found (defaults in use)", fix="run `rlm init` to write one")
    yield Check(status="ok", summary=f"model {config.model!r}, environment {config.environment!r}")


def check_plugins(config: RLMConfig) -> Iterator[Check]:
    from rlm.cli import plugin_manager
    from rlm.registry import collect

    pm = plugin_manager()
    for record in pm.records:
        if record.status == "broken":
            yield Check(
                status="fail",
                summary=f"plugin {record.name} is broken: {record.error}",
                fix=f"reinstall {record.distribution or record.name}, or set RLM_DISABLE_PLUGINS={record.name}",
            )
        elif record.status == "disabled":
            yield Check(status="warn", summary=f"plugin {record.name} is disabled (RLM_DISABLE_PLUGINS)")
    loaded = [r.name for r in pm.records if r.status == "loaded"]
    yield Check(status="ok", summary=f"{len(loaded)} plugin(s) loaded: {', '.join(loaded) or 'none'}")

    backends = collect(pm, "backend", strict=False)
    if backends:
        yield Check(status="ok", summary=f"LLM backends: {', '.join(sorted(backends))}")
    else:
        yield Check(status="warn", summary="no LLM backend installed",
                    fix="pip install rlm-backend-litellm (or rlm-runtime)")
    environments = collect(pm, "environment", strict=False)
    if config.environment in environments:
        yield Check(status="ok", summary=f"environment {config.environment!r} is installed")
    else:
        have = ", ".join(sorted(environments)) or "none"
        yield Check(
            status="fail" if environments else "warn",
            summary=f"environment {config.environment!r} is not installed (installed: {have})",
            fix=missing_plugin_fix("environment", config.environment, environments),
        )


def check_providers(config: RLMConfig) -> Iterator[Check]:
    present = [name for name in PROVIDER_KEYS if os.environ.get(name)]
    if present:
        yield Check(status="ok", summary=f"provider keys set: {', '.join(present)}")
    else:
        yield Check(
            status="warn",
            summary="No providers configured",
            fix="set OPENAI_API_KEY or ANTHROPIC_API_KEY (or use a local model)",
        )


def worst(checks: Iterable[Check]) -> Status:
    statuses = {c.status for c in checks}
    return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "ok"
