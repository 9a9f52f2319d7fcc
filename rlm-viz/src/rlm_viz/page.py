"""What one screen of the dashboard shows of a trajectory, and the full texts it fetches on demand.

The browser gets a bounded page, never the whole run: the execution tree is paged
(:data:`CALLS_PER_PAGE` calls, :data:`STEPS_PER_PAGE` steps of a call at a time), every text
is previewed to :data:`PREVIEW_CHARS` characters, and a text shown in full is served
:data:`FULL_PAGE_CHARS` characters at a time.  The data layer keeps only clipped texts
(:func:`rlm_viz.model.clip`); the full text of one field is read back from the file:
:func:`event_offsets` finds where each event starts (numbered as the reader numbers them) and
:func:`full_text` reads that one line.  :func:`prepare` computes, once per file state, everything
the charts need.  :func:`turns` splits a call into the model turns of the iteration timeline, each
code block with the sub-calls it spawned and FINAL / ERR / LIMIT badges.  No Streamlit import.
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
    tokens_histogram: list[dict[str, Any]]
    duration_histogram: list[dict[str, Any]]


def prepare(t: Trajectory) -> Prepared:
    return Prepared(trajectory=t, calls=t.walk(), totals=stats.totals(t), tokens_per_call=stats.tokens_per_call(t),
                    time_by_category=stats.time_by_category(t), time_per_call=stats.time_per_call(t),
                    slowest_steps=stats.slowest_steps(t), tool_distribution=stats.tool_distribution(t),
                    cost_by_model=stats.cost_by_model(t), cost_by_depth=stats.cost_by_depth(t),
                    tokens_histogram=stats.tokens_histogram(t), duration_histogram=stats.duration_histogram(t))


# --- the iteration timeline of one call ----------------------------------------------------------

#: characters of a call's prompt in its label
LABEL_PROMPT_CHARS = 60
#: sub-calls listed under one code block at a time
CHILDREN_PER_PAGE = 10
#: turns shown at a time in "all turns"
TURNS_PER_PAGE = 10
#: what the badges of a turn mean
BADGES = {"FINAL": "the call answered in this turn", "ERR": "something failed in this turn",
          "LIMIT": "a limit stopped the call in this turn"}


def prompt_preview(text: str, limit: int = LABEL_PROMPT_CHARS) -> str:
    """The first ``limit`` characters of ``text`` on one line (whitespace collapsed), "…" when cut."""
    flat = " ".join(text[:limit * 4].split())
    return flat if len(flat) <= limit else flat[:limit - 1].rstrip() + "…"


def call_title(c: Call) -> str:
    """``kind id · "prompt preview"``: what a call is about, not only its id."""
    preview = prompt_preview(c.prompt)
    return f"{c.label} · “{preview}”" if preview else c.label


@attrs.define(frozen=True, kw_only=True)
class Block:
    """One step of a turn after its model call (a code run, tool results, an answer, an error ...)
    and the sub-calls started while it ran, in start order."""

    step: Step
    children: tuple[str, ...] = ()


@attrs.define(frozen=True, kw_only=True)
class Turn:
    """One model turn of a call: the ``llm_call`` (None for turn 0, what came before the first model
    call: the prompt), the steps up to the next model call with the sub-calls each spawned, the badges
    (:data:`BADGES`), and what the turn spent."""

    number: int
    llm: Step | None
    blocks: tuple[Block, ...]
    badges: tuple[str, ...]
    input_tokens: int
    output_tokens: int
    cost: float | None
    duration_ms: float

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def turns(t: Trajectory, c: Call) -> list[Turn]:
    """The turns of call ``c``: turn 0 (only when something came before the first model call) and one
    per ``llm_call``.  A sub-call hangs under the first code run or tool result of its parent that was
    written after it started (the block whose code or tool spawned it); one started after the last of
    them hangs under the turn's last block."""
    groups: list[tuple[Step | None, list[Step]]] = [(None, [])]
    for s in c.steps:
        if s.type == "llm_call":
            groups.append((s, []))
        else:
            groups[-1][1].append(s)
    if not groups[0][1]:
        groups.pop(0)
    starts = sorted((t.calls[k].steps[0].index, k) for k in c.children if k in t.calls and t.calls[k].steps)
    out = []
    for n, (llm, rest) in enumerate(groups):
        number = n if groups[0][0] is None else n + 1
        first = llm.index if llm else -1
        last = groups[n + 1][0].index if n + 1 < len(groups) else sys.maxsize  # type: ignore[union-attr]
        mine = [k for i, k in starts if first < i < last]
        spawned: dict[int, list[str]] = {}
        for k in mine:
            at = t.calls[k].steps[0].index
            owner = next((b for b, s in enumerate(rest) if s.index > at and s.type in ("repl_execution", "tool_results")),
                         len(rest) - 1)
            spawned.setdefault(owner, []).append(k)
        blocks = [Block(step=s, children=tuple(spawned.get(b, ()))) for b, s in enumerate(rest)]
        if -1 in spawned:  # sub-calls of a turn with no step after its model call (still running)
            blocks.append(Block(step=llm, children=tuple(spawned[-1])))  # type: ignore[arg-type]
        steps = [llm, *rest] if llm else rest
        cost = llm.cost if llm else None
        out.append(Turn(number=number, llm=llm, blocks=tuple(blocks), badges=_badges(steps),
                        input_tokens=llm.input_tokens if llm else 0, output_tokens=llm.output_tokens if llm else 0,
                        cost=cost, duration_ms=sum(s.duration_ms for s in steps if s.type not in ("call_end", "run_end"))))
    return out


def _badges(steps: list[Step]) -> tuple[str, ...]:
    badges = []
    ended = [s for s in steps if s.type in ("call_end", "run_end")]
    if any(s.text("final") for s in steps) or any(not s.error for s in ended):
        badges.append("FINAL")
    if any(s.error for s in steps) or any(s.type in ("error", "no_answer") for s in steps):
        badges.append("ERR")
    if any(s.type == "limit_hit" or s.text("limit") or s.text("forced") for s in steps):
        badges.append("LIMIT")
    return tuple(badges)


def error_turn(t: Trajectory, call_id: str | None) -> int:
    """The number of the first turn of ``call_id`` with an ERR badge (the last turn when none has)."""
    c = t.calls.get(call_id or "run")
    if c is None:
        return 1
    ts = turns(t, c)
    return next((x.number for x in ts if "ERR" in x.badges), ts[-1].number if ts else 0)


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
