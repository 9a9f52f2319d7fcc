"""The run picker's data: one :class:`~rlm_viz.model.RunSummary` per trajectory in a log directory.

Listing and reading are the kernel's :mod:`rlm.runs` (shared with ``rlm logs``): a summary reads
only the file's first line (``run_start``) and its tail (``run_end``), so listing a directory of
large trajectories stays fast.  The batch id of a run of ``rlm batch`` is read by the kernel's rule
(:func:`rlm.runs.batch_id`), so the dashboard groups the same runs as ``rlm logs --batch``.
"""

from __future__ import annotations

import os
import time

from rlm.errors import ConfigError
from rlm.runs import batch_id, first_event, last_run_end, trajectory_files, trajectory_id

from rlm_viz.model import BatchGroup, RunSummary, clip

#: a run with no ``run_end`` whose file changed this recently counts as running
LIVE_SECONDS = 300.0


def check_dir(directory: str) -> str:
    """``directory`` if it is a directory; else a :class:`ConfigError` naming the fix."""
    if not os.path.isdir(directory):
        raise ConfigError(f"no trajectory directory {directory!r}",
                          fix="pass --dir with the log directory of your runs (default ./logs; "
                              "`rlm run` writes there), or run something first")
    return directory


def summarize(path: str, *, now: float | None = None) -> RunSummary:
    """The picker row of one trajectory file."""
    stat = os.stat(path)
    first = first_event(path)
    end = last_run_end(path, stat.st_size)
    tid = trajectory_id(path)
    if end is None:
        live = (now if now is not None else time.time()) - stat.st_mtime < LIVE_SECONDS
        status, cost, tokens, duration, error = ("running" if live else "incomplete"), None, None, None, None
    else:
        error = end.get("error") or None
        status = "error" if error else ("limit" if end.get("limit_hit") else "ok")
        cost = end.get("cost") if isinstance(end.get("cost"), (int, float)) else None
        tokens = (end.get("token_usage") or {}).get("total")
        duration = end["duration_ms"] / 1000 if isinstance(end.get("duration_ms"), (int, float)) else None
    prompt = clip(first.get("prompt"), 200).replace("\n", " ")
    return RunSummary(trajectory_id=tid, path=path, started=float(first.get("timestamp") or stat.st_mtime),
                      task=prompt or "(no run_start)", model=str(first.get("model") or "?"), status=status,
                      cost=cost, tokens=tokens if isinstance(tokens, int) else None, duration_s=duration,
                      size_bytes=stat.st_size, error=str(error) if error else None, batch_id=batch_id(first))


def list_runs(directory: str, *, query: str = "", limit: int | None = None) -> list[RunSummary]:
    """Summaries of the runs in ``directory`` matching ``query`` (all words, any field), newest first."""
    now = time.time()
    out = []
    for path in trajectory_files(directory):
        try:
            summary = summarize(path, now=now)
        except OSError:
            continue
        if summary.matches(query):
            out.append(summary)
    out.sort(key=lambda s: s.started, reverse=True)
    return out[:limit] if limit else out


def batch_groups(rows: list[RunSummary]) -> list[BatchGroup]:
    """One group per batch id of ``rows``, in the order of its first run there (newest first for
    :func:`list_runs`); [] when no run belongs to a batch."""
    ids = list(dict.fromkeys(r.batch_id for r in rows if r.batch_id))
    return [_group(b, [r for r in rows if r.batch_id == b]) for b in ids]


def _group(batch: str, rows: list[RunSummary]) -> BatchGroup:
    return BatchGroup(batch_id=batch, runs=len(rows), ok=sum(r.status == "ok" for r in rows),
                      failed=sum(r.status == "error" for r in rows))
