"""Frozen value types of the dashboard's data layer: steps, calls, a trajectory snapshot, a run summary,
the runs of one batch.

Long texts (prompts, responses, code, outputs) are cut to :data:`TEXT_CAP`
characters when an event is parsed, so a 100 MB trajectory stays small in
memory; the cut is marked in the text itself.
"""

from __future__ import annotations

from typing import Any

import attrs

#: the most characters kept of one text field of an event
TEXT_CAP = 4000


def clip(value: Any, cap: int = TEXT_CAP) -> str:
    """``value`` as text, cut to ``cap`` characters with a note of how much was left out."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else _as_text(value)
    if len(text) <= cap:
        return text
    return text[:cap] + f"\n… [{len(text) - cap:,} more characters; full text: `rlm logs <id> --json`]"


def _as_text(value: Any) -> str:
    import json

    try:
        return json.dumps(value, ensure_ascii=False, indent=1, default=str)
    except (TypeError, ValueError):
        return repr(value)


@attrs.frozen(slots=True)
class ToolUse:
    """One tool call and (once known) its result."""

    name: str
    arguments: str = ""
    content: str = ""
    is_error: bool = False
    duration_ms: float = 0.0


@attrs.frozen(slots=True)
class Step:
    """One event of a call, reduced to what the dashboard shows."""

    index: int
    type: str
    call_id: str | None
    timestamp: float
    duration_ms: float = 0.0
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None
    error: str | None = None
    #: (label, clipped text) pairs: prompt, response, code, output, value, message ...
    texts: tuple[tuple[str, str], ...] = ()
    tools: tuple[ToolUse, ...] = ()

    def text(self, label: str) -> str:
        return next((t for name, t in self.texts if name == label), "")


@attrs.frozen(slots=True)
class Call:
    """One call of the execution tree (the top call, a sub-call or an ``llm_query``)."""

    call_id: str
    parent_call_id: str | None
    depth: int
    sub_call_type: str | None
    prompt: str
    response: str
    steps: tuple[Step, ...]
    children: tuple[str, ...]
    models: tuple[str, ...]
    input_tokens: int
    output_tokens: int
    cost: float
    llm_ms: float
    tool_ms: float
    repl_ms: float
    duration_ms: float
    errors: tuple[str, ...]
    finished: bool

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def label(self) -> str:
        kind = self.sub_call_type or ("run" if self.parent_call_id is None else "call")
        return f"{kind} {self.call_id}"


@attrs.frozen
class Trajectory:
    """A snapshot of one trajectory as read so far."""

    trajectory_id: str
    path: str
    start: dict[str, Any]
    end: dict[str, Any] | None
    calls: dict[str, Call]
    roots: tuple[str, ...]
    errors: tuple[tuple[str | None, str], ...]
    events: int
    bytes_read: int
    bad_lines: int

    @property
    def live(self) -> bool:
        """True while no ``run_end`` has been written (a run in progress, or one that crashed)."""
        return self.end is None

    def walk(self) -> list[Call]:
        """The calls depth first, parents before children, in start order."""
        out: list[Call] = []
        stack = [self.calls[c] for c in reversed(self.roots) if c in self.calls]
        while stack:
            call = stack.pop()
            out.append(call)
            stack.extend(self.calls[c] for c in reversed(call.children) if c in self.calls)
        return out


@attrs.frozen
class RunSummary:
    """One row of the run picker, read from a trajectory's first and last lines; ``batch_id`` names
    the ``rlm batch`` the run belongs to (None outside a batch)."""

    trajectory_id: str
    path: str
    started: float
    task: str
    model: str
    status: str
    cost: float | None
    tokens: int | None
    duration_s: float | None
    size_bytes: int
    error: str | None = None
    batch_id: str | None = None

    def matches(self, query: str) -> bool:
        """True when every word of ``query`` is in the id, task, model, status, error or batch id."""
        q = query.strip().lower()
        if not q:
            return True
        hay = " ".join([self.trajectory_id, self.task, self.model, self.status, self.error or "",
                        self.batch_id or ""]).lower()
        return all(word in hay for word in q.split())


@attrs.frozen(slots=True)
class BatchGroup:
    """The listed runs of one ``rlm batch``: how many, how many ended ``ok`` and how many in ``error``."""

    batch_id: str
    runs: int
    ok: int
    failed: int

    @property
    def label(self) -> str:
        return f"{self.batch_id} · {self.runs} run{'s' if self.runs != 1 else ''} · {self.ok} ok · {self.failed} failed"
