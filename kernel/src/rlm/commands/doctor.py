"""``rlm doctor``: run every registered check and print a report."""

from __future__ import annotations

import json
import sys
from typing import Annotated

from cyclopts import Parameter

from rlm.doctor import Check, worst

_MARK = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}


def doctor(*, json_output: Annotated[bool, Parameter(name="--json")] = False) -> int:
    """Check Python, plugins, configuration and provider keys.

    Missing optional pieces are warnings (exit 0); real problems exit 1.

    Parameters
    ----------
    json_output: bool
        Print the report as JSON.
    """
    from rlm.cli import plugin_manager
    from rlm.config import load_config
    from rlm.errors import RLMError
    from rlm.registry import collect
    from rlm.trajectory import escape_surrogates

    pm = plugin_manager()
    checks: list[tuple[str, Check]] = []
    try:
        sections = {name: reg.load() for name, reg in collect(pm, "config_section", strict=False).items()}
        config = load_config(sections=sections)
    except RLMError as exc:
        # one line naming the file or variable, the cause (a bad key, a nan, bytes that are not UTF-8)
        # and its line, then the fix: fix or delete that file (never `rlm init`)
        from rlm.doctor import config_problem

        checks.append(("config", config_problem(exc)))
        from rlm.config import RLMConfig

        config = RLMConfig()
    config_failed = bool(checks)
    for name, reg in collect(pm, "doctor_check", strict=False).items():
        if name == "config" and config_failed:  # it would describe the stand-in defaults, not the file
            continue
        try:
            checks.extend((name, c) for c in reg.load()(config=config))
        except Exception as exc:  # noqa: BLE001 - a failing check is a finding, not a crash
            checks.append((name, Check(status="fail", summary=f"check {name!r} crashed: {exc}")))
    if json_output:
        print(json.dumps([{"check": n, "status": c.status, "summary": c.summary, "fix": c.fix} for n, c in checks],
                         indent=2))
    else:
        for _, check in checks:
            line = f"[{_MARK[check.status]}] {check.summary}"
            if check.fix and check.status != "ok":
                line += f"\n       fix: {check.fix}"
            print(escape_surrogates(line))  # a path that is not UTF-8 must not end the report
        verdict = worst(c for _, c in checks)
        print({"ok": "All good.", "warn": "Usable; warnings above.", "fail": "Problems found."}[verdict],
              file=sys.stderr)
    return 1 if worst(c for _, c in checks) == "fail" else 0
