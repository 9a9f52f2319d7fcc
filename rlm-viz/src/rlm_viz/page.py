"""What one screen of the dashboard shows of a trajectory, and the full texts it fetches on demand.

The browser gets a bounded page, never the whole run: the execution tree is paged
(:data:`CALLS_PER_PAGE` calls, :data:`STEPS_PER_PAGE` steps of a call at a time), every text
is previewed to :data:`PREVIEW_CHARS` characters, and a text shown in full is served
:data:`FULL_PAGE_CHARS` characters at a time.  The data layer keeps only clipped texts
(:func:`rlm_viz.model.clip`); the full text of one field is read back from the file:
:func:`event_offsets` finds where each event starts (numbered as the reader numbers them) and
:func:`full_text` reads that one line.  :func:`prepare` computes, once per file state, everything
the charts need.  No Streamlit import.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import attrs

from rlm_viz import stats
from rlm_viz.model import Call, Step, Trajectory, clip

CALLS_PER_PAGE = 20
STEPS_PER_PAGE = 20
PREVIEW_CHARS = 1000
FULL_PAGE_CHARS = 20_000
#: a run with at most this many calls renders every call's steps at once (no lazy expanders)
EAGER_CALLS = 10

#: where a text of a step is in its event: keys, and indexes into the event's list of dicts
Field = tuple[str | int, ...]


def pages(count: int, per_page: int) -> int:
    """How many pages ``count`` items fill (at least one)."""
    return max(1, -(-count // per_page))


def page_range(count: int, page: int, per_page: int) -> range:
    """The item indexes on (1-based) ``page``, which is clamped to the pages there are."""
    page = min(max(page, 1), pages(count, per_page))
    return range((page - 1) * per_page, min(page * per_page, count))


def preview(text: str, limit: int = PREVIEW_CHARS) -> tuple[str, bool]:
    """``text`` cut to ``limit`` characters, and whether it was cut."""
    if len(text) <= limit:
        return text, False
    return text[:limit] + f"\n… [only the first {limit:,} characters shown]", True


@attrs.frozen
class Prepared:
    """One state of a trajectory with the rows of every chart, computed once and shared by all sessions."""

    trajectory: Trajectory
    calls: list[Call]
    totals: dict[str, Any]
    tokens_per_call: list[dict[str, Any]]
    time_by_category: list[dict[str, Any]]
    time_per_call: list[dict[str, Any]]
    slowest_steps: list[dict[str, Any]]
    tool_distribution: list[dict[str, Any]]
    cost_by_model: list[dict[str, Any]]
    cost_by_depth: list[dict[str, Any]]


def prepare(t: Trajectory) -> Prepared:
    return Prepared(trajectory=t, calls=t.walk(), totals=stats.totals(t), tokens_per_call=stats.tokens_per_call(t),
                    time_by_category=stats.time_by_category(t), time_per_call=stats.time_per_call(t),
                    slowest_steps=stats.slowest_steps(t), tool_distribution=stats.tool_distribution(t),
                    cost_by_model=stats.cost_by_model(t), cost_by_depth=stats.cost_by_depth(t))


# --- full texts, read back from the file ---------------------------------------------------------


def event_offsets(path: str, *, exact: bool = False) -> list[int]:
    """The byte offset of every event of ``path``, in the numbering of
    :class:`~rlm_viz.reader.TrajectoryLoader` (complete lines holding a JSON object).  A line is
    taken for an object when it starts with ``{`` and ends with ``}``; ``exact`` parses each one."""
    offsets = []
    pos = 0
    with open(path, "rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                break  # being written: the reader has not counted it yet
            body = line.strip()
            if body and (_is_object(body) if exact else body[:1] == b"{" and body[-1:] == b"}"):
                offsets.append(pos)
            pos += len(line)
    return offsets


def _is_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def read_event(path: str, offsets: list[int], step: Step) -> dict[str, Any]:
    """The event of ``step`` from ``path``, found by ``offsets`` (of :func:`event_offsets`) or, when
    those disagree with the step (an unreadable line that looked like an object), by an exact scan."""
    for table in (offsets, None):
        table = table if table is not None else event_offsets(path, exact=True)
        if step.index < len(table):
            with open(path, "rb") as fh:
                fh.seek(table[step.index])
                try:
                    event = json.loads(fh.readline())
                except ValueError:
                    continue
            if isinstance(event, dict) and _same(event, step):
                return event
    raise LookupError(f"event {step.index} ({step.type} of call {step.call_id}) is not in {path} any more: "
                      "the file was replaced; reload the page")


def _same(event: dict[str, Any], step: Step) -> bool:
    return str(event.get("type", "?")) == step.type and str(event.get("call_id") or "run") == step.call_id


def field_text(event: dict[str, Any], field: Field) -> str:
    """The whole text at ``field`` of ``event`` (an integer indexes the dicts of a list, as the reader
    counts tool calls and results); "" where there is none."""
    value: Any = event
    for key in field:
        if isinstance(key, int):
            items = [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []
            value = items[key] if key < len(items) else None
        else:
            value = value.get(key) if isinstance(value, dict) else None
    return clip(value, sys.maxsize)


def full_text(path: str, offsets: list[int], step: Step, field: Field) -> str:
    """The unclipped text of one field of ``step``, read back from ``path``."""
    return field_text(read_event(path, offsets, step), field)
