"""``rlm plugins``: what is installed, what it provides, what is broken or disabled."""

from __future__ import annotations

import json
from typing import Annotated

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
    from rlm.registry import provided_by

    pm = plugin_manager()
    rows = []
    for record in pm.records:
        provides = provided_by(pm, record.name, config=RLMConfig()) if record.status in {"loaded", "builtin"} else {}
        rows.append({
            "name": record.name,
            "status": record.status,
            "distribution": record.distribution,
            "version": record.version,
            "module": record.module,
            "error": record.error,
            "provides": provides,
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
    return 0
