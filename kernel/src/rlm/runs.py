"""The runs in a log directory: listing, finding and summarising JSONL trajectories.

One module for every reader of a log directory: ``rlm logs`` and the dashboard (rlm-viz) list
the same files in the same order and find a run by the same id rules.  Two ways to read a run:

* :func:`summarize_file` reads every event (tokens and cost summed over the ``llm_call`` events, so
  a run still being written shows what it spent so far) - ``rlm logs``;
* :func:`first_event` and :func:`last_run_end` read only the file's first line and its tail, so
  listing a directory of large trajectories stays fast - the dashboard's run picker.

A run of ``rlm batch`` names its batch in ``run_start`` (``batch_id``); :func:`batch_id` is the one rule
for reading it, so ``rlm logs --batch`` and the dashboard group the same runs.

Nothing here raises for the content of a file (torn, not UTF-8, foreign events); reading a file
that vanished or is unreadable raises :class:`OSError`.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from datetime import datetime
from typing import Any

from rlm.trajectory import escape_surrogates

#: The most of one line :func:`first_event` and :func:`last_run_end` read.
HEAD_CAP = 4 * 1024 * 1024


def trajectory_files(directory: str) -> list[str]:
    """The ``*.jsonl`` files of ``directory``, newest first (by modification time, then name);
    [] when it is not a readable directory.  Files removed while listing are left out."""
    if not os.path.isdir(directory):
        return []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    found: list[tuple[float, str]] = []
    for entry in entries:
        if not entry.name.endswith(".jsonl"):
            continue
        try:
            if not entry.is_file():
                continue
            found.append((entry.stat().st_mtime, entry.path))
        except OSError:  # removed while listing
            continue
    return [path for _, path in sorted(found, reverse=True)]


def trajectory_id(path: str) -> str:
    """The id of a trajectory file: its name without ``.jsonl``."""
    return os.path.basename(path).removesuffix(".jsonl")


def find_trajectory(files: list[str], wanted: str) -> str | None:
    """The file of trajectory ``wanted``: ``"last"`` (the newest), an id or a unique prefix of one.

    None when nothing matches; a :class:`rlm.errors.ConfigError` when a prefix matches several.
    """
    if wanted == "last":
        return files[0] if files else None
    matches = [p for p in files if os.path.basename(p).startswith(wanted)]
    if len(matches) > 1:
        from rlm.errors import ConfigError

        raise ConfigError(f"{escape_surrogates(wanted)!r} matches {len(matches)} trajectories",
                          fix="give more of the id")
    return matches[0] if matches else None


# --- removing runs (``rlm logs rm`` and ``rlm logs prune``) -----------------------------------

#: Seconds of each unit of a duration (``7d``, ``12h``, ``1w2d``).
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds of a duration such as ``90s``, ``30m``, ``12h``, ``7d``, ``2w`` or ``1d12h``;
    :class:`ValueError` for anything else (a bare number has no unit, so it is refused too)."""
    compact = text.strip().lower()
    if not _DURATION.fullmatch(compact):
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(compact))


def removable(directory: str, path: str) -> os.stat_result | None:
    """The ``lstat`` of ``path`` when it is a trajectory that may be deleted: a regular ``*.jsonl``
    file directly in ``directory``, not a symbolic link (whose target may lie anywhere) nor anything
    else; None otherwise (also when it is gone)."""
    if not os.path.basename(path).endswith(".jsonl"):
        return None
    if os.path.realpath(os.path.dirname(os.path.abspath(path))) != os.path.realpath(directory):
        return None
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return info if stat.S_ISREG(info.st_mode) else None


def old_trajectories(directory: str, older_than: float, *, now: float | None = None) -> list[tuple[str, int]]:
    """The trajectories of ``directory`` last modified more than ``older_than`` seconds ago, oldest
    first, with their sizes in bytes.  Age is the file's modification time: a run still being written
    is never old.  Only what :func:`removable` allows is listed (no symbolic links, no other files)."""
    cutoff = (time.time() if now is None else now) - older_than
    found: list[tuple[float, str, int]] = []
    for path in trajectory_files(directory):
        info = removable(directory, path)
        if info is not None and info.st_mtime < cutoff:
            found.append((info.st_mtime, path, info.st_size))
    return [(path, size) for _, path, size in sorted(found)]


def delete_trajectory(directory: str, path: str) -> int:
    """Delete one trajectory file and return its size in bytes.

    A path :func:`removable` refuses raises :class:`ValueError`; a failed delete raises
    :class:`OSError`.  ``os.unlink`` never follows a link, so even a file swapped for a symbolic link
    after the check removes only that link, never what it points at."""
    info = removable(directory, path)
    if info is None:
        raise ValueError(f"{escape_surrogates(path)} is not a trajectory file of {escape_surrogates(directory)}")
    os.unlink(path)
    return info.st_size


def number(value: Any, default: float = 0.0) -> float:
    """A number from an event field; anything else (a hand-edited or foreign file) counts as ``default``."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


#: The longest batch id read from a trajectory; a longer one is ignored.
BATCH_ID_CAP = 64


def batch_id(start: dict[str, Any]) -> str | None:
    """The ``batch_id`` of a ``run_start`` event: a non-empty printable str of at most
    :data:`BATCH_ID_CAP` characters; None when absent or anything else (a foreign or hand-edited file)."""
    value = start.get("batch_id")
    if isinstance(value, str) and 0 < len(value) <= BATCH_ID_CAP and value.isprintable():
        return value
    return None


def summarize_file(path: str) -> dict[str, Any]:
    """One row of ``rlm logs``: id, start, status (``ok``/``failed``/``running``), model, batch id
    (None outside a batch), tokens, cost (None when a call's cost is unknown), duration, prompt,
    error and ``skipped_lines``."""
    from rlm.trajectory import read_trajectory_file

    read = read_trajectory_file(path)
    events = read.events
    start = next((e for e in events if e["type"] == "run_start"), {})
    end = next((e for e in reversed(events) if e["type"] == "run_end"), None)
    usages = [e.get("token_usage") for e in events if e["type"] == "llm_call"]
    tokens = sum(int(number(u.get("total"))) for u in usages if isinstance(u, dict))
    costs = [e.get("cost") for e in events if e["type"] == "llm_call"]
    status = "running" if end is None else ("failed" if end.get("error") else "ok")
    stamps = [number(e.get("timestamp"), -1.0) for e in events]
    stamps = [t for t in stamps if t >= 0]
    first_ts = stamps[0] if stamps else os.path.getmtime(path)
    last_ts = stamps[-1] if stamps else first_ts
    prompt = str(start.get("prompt") or "").replace("\n", " ")
    try:
        started = datetime.fromtimestamp(first_ts).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        started = "?"
    return {
        "trajectory_id": escape_surrogates(trajectory_id(path)),
        "path": escape_surrogates(path),
        "started": started,
        "status": status,
        "model": start.get("model"),
        "batch_id": batch_id(start),
        "tokens": tokens,
        "cost": None if any(not isinstance(c, (int, float)) for c in costs) else sum(costs),
        "duration_s": round(last_ts - first_ts, 3),
        "prompt": prompt[:60] + ("..." if len(prompt) > 60 else ""),
        "error": end.get("error") if end else None,
        "skipped_lines": read.skipped,
    }


def first_event(path: str) -> dict[str, Any]:
    """The file's first event (normally ``run_start``), read from its first line only; {} when it
    is not a JSON object."""
    with open(path, "rb") as fh:
        line = fh.readline(HEAD_CAP)
    try:
        event = json.loads(line)
    except ValueError:
        return {}
    return event if isinstance(event, dict) else {}


def last_run_end(path: str, size: int | None = None) -> dict[str, Any] | None:
    """The ``run_end`` event on the file's last line, read from its tail only; None when the last
    line is something else (a run still being written, or one that died)."""
    if size is None:
        size = os.path.getsize(path)
    if not size:
        return None
    for window in (64 * 1024, HEAD_CAP):
        with open(path, "rb") as fh:
            fh.seek(max(size - window, 0))
            tail = fh.read()
        lines = tail.rstrip(b"\n").split(b"\n")
        last = lines[-1] if lines else b""
        if b'"run_end"' not in last and (len(lines) > 1 or size <= window):
            return None
        try:
            event = json.loads(last)
        except ValueError:
            if size <= window:
                return None
            continue
        return event if isinstance(event, dict) and event.get("type") == "run_end" else None
    return None
