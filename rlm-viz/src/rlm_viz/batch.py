"""The batch/eval view's data: one row per run of a batch (status, cost, tokens, time, failure) and,
when an ``rlm batch`` output or an ``rlm eval`` results file is given, each run's item id and score.

Both files are JSONL with one object per finished item carrying ``trajectory_id`` (``rlm batch``:
``id``, ``status``; ``rlm eval``: also ``score``, ``mode``, ``task``); an id written twice (a retried
item) counts by its last line, as ``rlm batch`` reads it.  No Streamlit import.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from rlm.errors import ConfigError

from rlm_viz.model import RunSummary

#: the most lines of a results file read (an eval of a million items is summarised by its first ones)
MAX_RESULT_LINES = 200_000


@attrs.define(frozen=True, kw_only=True)
class Results:
    """The lines of a results file by trajectory id, and how many lines could not be used."""

    by_trajectory: dict[str, dict[str, Any]]
    skipped: int = 0

    @property
    def scored(self) -> bool:
        return any(isinstance(r.get("score"), (int, float)) for r in self.by_trajectory.values())


def read_results(path: str) -> Results:
    """The lines of an ``rlm batch`` output or ``rlm eval`` results file, by ``trajectory_id``.

    Raises :class:`~rlm.errors.ConfigError` (with the fix) when the file cannot be read or holds no
    line with a ``trajectory_id``."""
    rows: dict[str, dict[str, Any]] = {}
    skipped = 0
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for n, line in enumerate(fh):
                if n >= MAX_RESULT_LINES:
                    break
                try:
                    row = json.loads(line)
                except ValueError:
                    skipped += bool(line.strip())
                    continue
                tid = row.get("trajectory_id") if isinstance(row, dict) else None
                if isinstance(tid, str) and tid:
                    rows[tid] = row
                else:
                    skipped += 1
    except OSError as exc:
        raise ConfigError(f"cannot read the results file {path!r}: {exc.strerror or exc}",
                         fix="give the path of an `rlm batch` output (-o) or an `rlm eval` results file") from exc
    if not rows:
        raise ConfigError(f"{path!r} has no line with a trajectory_id",
                         fix="give the JSONL that `rlm batch -o` or `rlm eval -o` wrote (one object per item)")
    return Results(by_trajectory=rows, skipped=skipped)


def batch_rows(runs: list[RunSummary], results: Results | None = None) -> list[dict[str, Any]]:
    """One row per run, oldest first: its item id and score (from ``results``), status, failure, cost,
    tokens, seconds, task and trajectory id."""
    out = []
    for r in sorted(runs, key=lambda r: r.started):
        line = results.by_trajectory.get(r.trajectory_id, {}) if results else {}
        score = line.get("score")
        row: dict[str, Any] = {"item": str(line["id"]) if "id" in line else None}
        if results is not None and results.scored:
            row["score"] = float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else None
        row |= {"status": r.status, "error": (r.error or line.get("error") or "")[:200] or None,
                "cost": r.cost, "tokens": r.tokens, "duration_s": r.duration_s, "task": r.task[:80],
                "id": r.trajectory_id}
        out.append(row)
    return out


def batch_totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs, ok, failed (``error``), limit and unfinished counts, total cost and tokens, mean score
    (None without scores) of :func:`batch_rows`."""
    scores = [r["score"] for r in rows if r.get("score") is not None]
    return {"runs": len(rows), "ok": sum(r["status"] == "ok" for r in rows),
            "failed": sum(r["status"] == "error" for r in rows), "limit": sum(r["status"] == "limit" for r in rows),
            "unfinished": sum(r["status"] in ("running", "incomplete") for r in rows),
            "cost": sum(r["cost"] or 0.0 for r in rows), "tokens": sum(r["tokens"] or 0 for r in rows),
            "mean_score": sum(scores) / len(scores) if scores else None}
