"""``rlm plugins``: what is installed, what it provides, what is broken or disabled."""

from __future__ import annotations

import json
from typing import Annotated, Any

from cyclopts import Parameter

_PLURAL = {"budget_policy": "budget policies"}


def plugins(*, json_output: Annotated[bool, Parameter(name="--json")] = False) -> int:
    """List installed plugins with what each provides; broken ones with the reason.

    Parameters
    ----------
    json_output: bool
        Print the list as JSON.
    """
    from rlm.cli import plugin_manager
    from rlm.config import RLMConfig
    from rlm.registry import environment_isolation, provided_by

    pm = plugin_manager()
    config: Any = None  # loaded only if some plugin provides an environment
    rows = []
    for record in pm.records:
        active = record.status in {"loaded", "builtin"}
        provides = provided_by(pm, record.name, config=RLMConfig()) if active else {}
        isolation: dict[str, dict[str, str]] = {}
        if "environment" in provides:
            config = config or _config(pm)
            isolation = environment_isolation(pm, record.name, config)
        rows.append({
            "name": record.name,
            "status": record.status,
            "distribution": record.distribution,
            "version": record.version,
            "module": record.module,
            "error": record.error,
            "provides": provides,
            "isolation": isolation,
        })
    if json_output:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        origin = f"{row['distribution']} {row['version']}" if row["distribution"] else row["module"]
        print(f"{row['name']}  [{row['status']}]  {origin}")
        if row["status"] == "broken":
            print(f"    error: {row['error']}")
            print(f"    fix: reinstall it, or hide it with RLM_DISABLE_PLUGINS={row['name']}")
        elif row["status"] == "disabled":
            print("    disabled by RLM_DISABLE_PLUGINS")
        for kind, names in row["provides"].items():
            print(f"    {_PLURAL.get(kind, kind.replace('_', ' ') + 's')}: {', '.join(names)}")
        for env, layers in row["isolation"].items():
            print(f"    isolation of environment {env!r}: " + "; ".join(f"{k}: {v}" for k, v in layers.items()))
    return 0


def _config(pm: Any) -> Any:
    """The effective configuration for the isolation describers; the defaults if it does not load."""
    from rlm.config import RLMConfig, load_config
    from rlm.logging import get_logger
    from rlm.registry import collect

    try:
        sections = {name: reg.load() for name, reg in collect(pm, "config_section", strict=False).items()}
        return load_config(sections=sections)
    except Exception as exc:  # noqa: BLE001 - `rlm doctor` reports it; the list must still print
        get_logger(__name__).warning("config_not_loaded", error=str(exc), using="defaults")
        return RLMConfig()
