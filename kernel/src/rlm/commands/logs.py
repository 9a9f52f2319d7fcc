"""``rlm logs``: list the trajectories in the log directory (``--batch ID``: only the runs of one
``rlm batch``), or print one as a call tree; ``rlm logs rm`` deletes one, ``rlm logs prune`` those
older than a duration.

Listing, finding, summarising and deleting runs is :mod:`rlm.runs`, shared with the dashboard
(rlm-viz).  ``logs`` is a cyclopts App whose default command lists and shows, so ``rlm logs``,
``rlm logs last``, ``rlm logs ID`` and ``rlm logs --schema`` read as they always did.

Events are read by their type and fields (:mod:`rlm.events`); the schema version ``v`` is not
required, so trajectories written before it existed read the same."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import Annotated, Any

from cyclopts import App, Parameter

from rlm.runs import batch_id, find_trajectory, first_event, number, summarize_file, trajectory_files
from rlm.trajectory import escape_surrogates

logs = App(name="logs")

#: ``--log-dir``, also ``--dir``/``-d`` as rlm-runtime 2.x named it.
LogDir = Annotated[str | None, Parameter(name=["--log-dir", "--dir", "-d"])]


@logs.default
def show(
    trajectory: str | None = None,
    *,
    log_dir: LogDir = None,
    limit: Annotated[int, Parameter(name=["--limit", "--tail", "-n"])] = 20,
    batch: str | None = None,
    json_output: Annotated[bool, Parameter(name=["--json"])] = False,
    schema: bool = False,
) -> int:
    """List recent runs (newest first), or show one run as a tree with tokens, cost and durations.

    Parameters
    ----------
    trajectory: str
        A trajectory id (or a unique prefix, or "last") to show.
    log_dir: str
        Directory of the JSONL trajectories (default from rlm.toml, else ./logs; --dir: rlm-runtime 2.x's name).
    limit: int
        How many runs to list, newest first (--tail: rlm-runtime 2.x's name).
    batch: str
        List only the runs of this `rlm batch` (its id, as the listing's batch column shows it).
    json_output: bool
        Print JSON instead of text.
    schema: bool
        Print the JSON Schema of trajectory events (the contract for sinks and readers) and exit.
    """
    if schema:
        from rlm.events import json_schema

        print(json.dumps(json_schema(), indent=2))
        return 0
    from rlm.errors import ConfigError

    if limit < 1:
        raise ConfigError(f"--limit {limit}: must be at least 1", fix="give how many runs to list, e.g. --limit 10")
    directory = _directory(log_dir)
    files = trajectory_files(directory)
    shown = escape_surrogates(directory)
    if trajectory is None:
        return _list(files, shown, limit=limit, batch=batch, json_output=json_output)
    if batch is not None:
        raise ConfigError("--batch filters the listing, not one run",
                          fix=f"drop --batch, or drop {escape_surrogates(trajectory)!r} to list the batch")
    path = find_trajectory(files, trajectory)
    if path is None:
        raise ConfigError(f"no trajectory {escape_surrogates(trajectory)!r} in {shown}/",
                          fix="run `rlm logs` to list them")
    from rlm.trajectory import read_trajectory_file

    try:
        read = read_trajectory_file(path)
    except OSError as exc:
        raise ConfigError(f"cannot read {escape_surrogates(path)}: {exc.strerror}",
                          fix="check the file's permissions") from None
    _warn_skipped(read.skipped, path=path)
    events = read.events
    if json_output:
        print(json.dumps(events, indent=2, ensure_ascii=False))
    else:
        print(render_tree(events))
    return 0


@logs.command(name="rm")
def rm(trajectory: str, /, *, log_dir: LogDir = None) -> int:
    """Delete one trajectory file.

    Exit 1 when no trajectory has that id, 2 when a prefix matches several.

    Parameters
    ----------
    trajectory: str
        The trajectory id (or a unique prefix, or "last"), as `rlm logs` shows it.
    log_dir: str
        Directory of the JSONL trajectories (default from rlm.toml, else ./logs).
    """
    import os

    from rlm.errors import RLMError
    from rlm.runs import delete_trajectory, removable

    directory = _directory(log_dir)
    shown = escape_surrogates(directory)
    path = find_trajectory(trajectory_files(directory), trajectory)
    if path is None:
        raise RLMError(f"no trajectory {escape_surrogates(trajectory)!r} in {shown}/", fix="run `rlm logs` to list them")
    if removable(directory, path) is None:
        what = "a symbolic link" if os.path.islink(path) else "not a regular file"
        raise RLMError(f"{escape_surrogates(path)} is {what}: rlm logs rm deletes only trajectory files",
                       fix="remove it yourself if you mean to")
    try:
        size = delete_trajectory(directory, path)
    except (OSError, ValueError) as exc:
        raise RLMError(f"cannot remove {escape_surrogates(path)}: {getattr(exc, 'strerror', None) or exc}",
                       fix="check the folder's permissions") from None
    print(f"removed {escape_surrogates(path)} ({size} bytes)")
    return 0


@logs.command(name="prune")
def prune(*, older_than: str, dry_run: bool = False, log_dir: LogDir = None) -> int:
    """Delete the trajectories not modified for longer than a duration.

    Only *.jsonl files of the log directory: never other files, never a symbolic link.

    Parameters
    ----------
    older_than: str
        Age of the oldest runs to keep: a number and a unit, s, m, h, d or w (7d, 12h, 1w2d).
    dry_run: bool
        List what would be deleted, delete nothing.
    log_dir: str
        Directory of the JSONL trajectories (default from rlm.toml, else ./logs).
    """
    from rlm.errors import ConfigError
    from rlm.runs import delete_trajectory, old_trajectories, parse_duration

    try:
        seconds = parse_duration(older_than)
    except ValueError:
        raise ConfigError(f"--older-than {escape_surrogates(older_than)!r}: not a duration",
                          fix="give a number and a unit, s, m, h, d or w (e.g. 7d, 12h, 1w2d)") from None
    directory = _directory(log_dir)
    shown = escape_surrogates(directory)
    old = old_trajectories(directory, seconds)
    if not old:
        print(f"no trajectories older than {escape_surrogates(older_than.strip())} in {shown}/")
        return 0
    removed = total = failed = 0
    for path, size in old:
        name = escape_surrogates(path)
        if dry_run:
            print(f"would remove {name} ({size} bytes)")
        else:
            try:
                size = delete_trajectory(directory, path)
            except (OSError, ValueError) as exc:
                failed += 1
                print(f"rlm: warning: cannot remove {name}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
                continue
            print(f"removed {name} ({size} bytes)")
        removed += 1
        total += size
    plural = "y" if removed == 1 else "ies"
    if dry_run:
        print(f"would remove {removed} trajector{plural}, {total} bytes (dry run: nothing deleted)")
    else:
        print(f"removed {removed} trajector{plural}, {total} bytes")
    return 1 if failed else 0


def _list(files: list[str], shown: str, *, limit: int, batch: str | None, json_output: bool) -> int:
    """Print the listing of ``files`` (newest first, at most ``limit`` rows; only ``batch``'s runs
    when given) as text or JSON."""
    if batch is not None and batch_id({"batch_id": batch}) is None:
        from rlm.errors import ConfigError

        raise ConfigError(f"--batch {escape_surrogates(batch)!r}: not a batch id",
                          fix="give the id from the batch column of `rlm logs` (e.g. b-1a2b3c4d5e6f)")
    if batch is None:
        rows, more = _rows(iter(files[:limit]), None, None), False
    else:
        candidates = _in_batch(files, batch)
        rows = _rows(candidates, limit, batch)
        more = len(rows) == limit and next(candidates, None) is not None
    if json_output:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    elif not rows:
        print(f"no runs of batch {batch!r} in {shown}/: run `rlm logs` to see the batch ids" if batch
              else f"no trajectories in {shown}/ yet: run `rlm run \"...\"` first")
    else:
        if batch is not None:
            print(_batch_line(batch, rows, more=more))
        width = 0 if batch is not None else max(len(r["batch_id"] or "") for r in rows)
        for r in rows:
            print(_row_line(r, width))
    return 0


def _in_batch(files: Iterable[str], batch: str) -> Iterator[str]:
    """The files whose first line names ``batch`` (read from that line only); a file that cannot be
    read is passed on, for the listing to count as unreadable."""
    for path in files:
        try:
            if batch_id(first_event(path)) != batch:
                continue
        except OSError:
            pass
        yield path


def _rows(paths: Iterator[str], limit: int | None, batch: str | None) -> list[dict[str, Any]]:
    """Rows of :func:`summarize_file` (of ``batch`` only, when given), at most ``limit`` (None: no
    cap; no path is read past it), with one warning on stderr for what could not be read."""
    rows: list[dict[str, Any]] = []
    skipped = unreadable = torn_files = 0
    for path in paths if limit is None or limit > 0 else ():
        try:
            row = summarize_file(path)
        except OSError:  # deleted or unreadable since it was listed
            unreadable += 1
            continue
        if batch is not None and row["batch_id"] != batch:
            continue
        lines = row.pop("skipped_lines")
        skipped += lines
        torn_files += lines > 0
        rows.append(row)
        if limit is not None and len(rows) >= limit:
            break
    _warn_skipped(skipped, files=torn_files, unreadable=unreadable)
    return rows


def _batch_line(batch: str, rows: list[dict[str, Any]], *, more: bool) -> str:
    """The heading of a ``--batch`` listing: the batch id and how its listed runs ended."""
    counts = {status: sum(r["status"] == status for r in rows) for status in ("ok", "failed", "running")}
    ended = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    runs = f"{len(rows)} run{'s' if len(rows) != 1 else ''}"
    tail = " (the newest; --limit lists more)" if more else ""
    return f"batch {batch}: {runs} ({ended}){tail}"


def _row_line(r: dict[str, Any], batch_width: int) -> str:
    """One line of the text listing; a batch column ``batch_width`` wide when it is not 0."""
    cost = "?" if r["cost"] is None else f"${r['cost']:.4f}"
    batch = f"{r['batch_id'] or '-':<{batch_width}}  " if batch_width else ""
    return (f"{r['trajectory_id']}  {r['started']}  {r['status']:<9} {r['tokens']:>7} tok  {cost:>9}  "
            f"{r['duration_s']:>6.1f}s  {batch}{r['model']}  {r['prompt']}")


def _directory(log_dir: str | None) -> str:
    """The log directory: ``--log-dir``, else the configuration's ``log_dir``."""
    if log_dir:
        return log_dir
    from rlm.config import load_config

    return load_config(sections=_sections()).log_dir


def _sections() -> dict[str, Any]:
    from rlm.cli import plugin_manager
    from rlm.registry import collect

    return {name: reg.load() for name, reg in collect(plugin_manager(), "config_section", strict=False).items()}


def _warn_skipped(skipped: int, *, path: str | None = None, files: int = 0, unreadable: int = 0) -> None:
    """One line on stderr when lines (or whole files) could not be read; nothing otherwise."""
    if not skipped and not unreadable:
        return
    parts = []
    if skipped:
        where = f" of {escape_surrogates(path)}" if path else (
            f" in {files} trajector{'ies' if files != 1 else 'y'}" if files else "")
        parts.append(f"skipped {skipped} unreadable line{'s' if skipped != 1 else ''}{where} "
                     "(torn by a crash, not UTF-8, or not a JSON event)")
    if unreadable:
        parts.append(f"skipped {unreadable} unreadable trajector{'ies' if unreadable != 1 else 'y'}")
    print("rlm: warning: " + "; ".join(parts), file=sys.stderr)


def render_tree(events: list[dict[str, Any]]) -> str:
    """The calls of a trajectory as an indented tree with their steps."""
    lines: list[str] = []
    start = next((e for e in events if e["type"] == "run_start"), None)
    if start:
        sub = f"  sub_model={start['sub_model']}" if start.get("sub_model") else ""
        lines.append(f"run {start.get('trajectory_id')}  model={start.get('model')}{sub}  "
                     f"env={start.get('environment')}  protocol={start.get('protocol')}")
        lines.append(f"  prompt: {_short(start.get('prompt'))}")
        isolation = start.get("isolation")
        if isinstance(isolation, dict) and isolation:
            lines.append("  isolation: " + "; ".join(f"{k}: {str(v).split(':')[0]}" for k, v in isolation.items()))
    for e in events:
        pad = "  " * (int(number(e.get("depth"))) + 1)
        try:
            lines.extend(_event_lines(e, pad))
        except (KeyError, TypeError, ValueError, AttributeError):  # a field of an unexpected shape
            lines.append(f"{pad}({_short(e.get('type'))} event with unexpected fields)")
    if not any(e["type"] == "run_end" for e in events):
        lines.append("  (still running, or it ended without a run_end event)")
    return "\n".join(lines)


def _event_lines(e: dict[str, Any], pad: str) -> list[str]:
    """The lines of one event of the tree (none for the kinds it does not show)."""
    lines: list[str] = []
    kind = e["type"]
    if kind == "call_start":
        lines.append(f"{pad}└─ {e.get('sub_call_type')} [{e['call_id']}] {_short(e.get('prompt'))}")
    elif kind == "llm_call":
        usage = e.get("token_usage") or {}
        cost = "?" if e.get("cost") is None else f"${e['cost']:.5f}"
        calls = ", ".join(c["name"] for c in e.get("tool_calls") or []) or _short(e.get("response"))
        cost = "cached" if e.get("cached") else cost
        lines.append(f"{pad}llm {e.get('model') or '?'} {usage.get('input', 0)}+{usage.get('output', 0)} tok {cost} "
                     f"{e.get('duration_ms', 0):.0f}ms -> {calls}")
    elif kind == "context_injected":
        lines.append(f"{pad}context from {e.get('provider')} for {_short(e.get('query'))}: "
                     f"{e.get('tokens', 0)} tokens" + (f" (error: {_short(e['error'])})" if e.get("error") else ""))
    elif kind == "repl_execution":
        status = "error" if e.get("error") else "ok"
        lines.append(f"{pad}repl ({status}, {e.get('execution_time_ms') or 0:.1f}ms): {_short(e.get('code'))}")
    elif kind == "tool_results":
        for r in e.get("tool_results") or []:
            mark = "!" if r.get("is_error") else "="
            lines.append(f"{pad}{r['name']} {mark} {_short(r.get('content'))} ({r.get('duration_ms', 0):.0f}ms)")
    elif kind == "limit_hit":
        lines.append(f"{pad}LIMIT {e.get('message')}")
    elif kind == "call_end":
        lines.append(f"{pad}   => {_short(e.get('response'))}")
    elif kind == "run_end":
        usage = e.get("token_usage") or {}
        cost = "?" if e.get("cost") is None else f"${e['cost']:.4f}"
        lines.append(f"  answer: {_short(e.get('response'), 200)}")
        lines.append(f"  {e.get('total_calls')} model calls, {usage.get('total')} tokens, {cost}, "
                     f"{(e.get('duration_ms') or 0) / 1000:.2f}s" + (f", error: {e['error']}" if e.get("error")
                                                                     else ""))
    return lines


def _short(value: Any, width: int = 80) -> str:
    text = str(value if value is not None else "").replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 3] + "..."
