"""Incremental reading of one JSONL trajectory into the execution tree.

A :class:`TrajectoryLoader` remembers the byte offset after the last complete
line it parsed; :meth:`TrajectoryLoader.update` reads only what was appended
since (a run still being written grows between calls), at most ``max_bytes``
at a time so a caller can show progress on a 100 MB file.  A line without its
newline yet is left for the next update; a line that is not JSON is counted and
skipped.  Each event is folded into per-call accumulators at once and its long
texts are clipped (:func:`rlm_viz.model.clip`), so memory stays a fraction of
the file size.  :meth:`TrajectoryLoader.snapshot` returns a frozen
:class:`~rlm_viz.model.Trajectory`.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from rlm.events import PromptResolver
from rlm.logging import get_logger

from rlm_viz.model import Call, Step, ToolUse, Trajectory, clip

log = get_logger(__name__)

#: how much one update reads unless told otherwise
CHUNK = 8 * 1024 * 1024


class _CallAcc:
    __slots__ = (
        "call_id",
        "children",
        "cost",
        "depth",
        "duration_ms",
        "errors",
        "finished",
        "first_ts",
        "input_tokens",
        "last_ts",
        "llm_ms",
        "models",
        "output_tokens",
        "parent_call_id",
        "prompt",
        "repl_ms",
        "response",
        "steps",
        "sub_call_type",
        "tool_ms",
    )

    def __init__(self, call_id: str, parent: str | None, depth: int, sub_call_type: str | None) -> None:
        self.call_id = call_id
        self.parent_call_id = parent
        self.depth = depth
        self.sub_call_type = sub_call_type
        self.prompt = ""
        self.response = ""
        self.steps: list[Step] = []
        self.children: list[str] = []
        self.models: dict[str, None] = {}
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost = 0.0
        self.llm_ms = 0.0
        self.tool_ms = 0.0
        self.repl_ms = 0.0
        self.duration_ms: float | None = None
        self.errors: list[str] = []
        self.finished = False
        self.first_ts: float | None = None
        self.last_ts: float | None = None

    def freeze(self) -> Call:
        span = ((self.last_ts or 0) - (self.first_ts or 0)) * 1000
        return Call(call_id=self.call_id, parent_call_id=self.parent_call_id, depth=self.depth,
                    sub_call_type=self.sub_call_type, prompt=self.prompt, response=self.response,
                    steps=tuple(self.steps), children=tuple(self.children), models=tuple(self.models),
                    input_tokens=self.input_tokens, output_tokens=self.output_tokens, cost=self.cost,
                    llm_ms=self.llm_ms, tool_ms=self.tool_ms, repl_ms=self.repl_ms,
                    duration_ms=self.duration_ms if self.duration_ms is not None else max(span, 0.0),
                    errors=tuple(self.errors), finished=self.finished)


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


class TrajectoryLoader:
    """Reads one trajectory file incrementally; thread-safe (one lock around update and snapshot)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.trajectory_id = os.path.basename(path).removesuffix(".jsonl")
        self.offset = 0
        self.events = 0
        self.bad_lines = 0
        self.start: dict[str, Any] = {}
        self.end: dict[str, Any] | None = None
        self.errors: list[tuple[str | None, str]] = []
        self._calls: dict[str, _CallAcc] = {}
        self._roots: list[str] = []
        #: puts back the tool outputs llm_call prompts store by reference (rlm.events, schema v2)
        self._resolver = PromptResolver()
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    @property
    def done(self) -> bool:
        """True when everything written so far has been read."""
        return self.offset >= self.size

    def update(self, max_bytes: int | None = None) -> int:
        """Parse the complete lines appended since the last update (at most ``max_bytes``); the count of new events."""
        with self._lock:
            try:
                fh = open(self.path, "rb")  # noqa: SIM115 - closed below
            except FileNotFoundError:
                return 0
            with fh:
                size = os.fstat(fh.fileno()).st_size
                if size < self.offset:  # truncated or replaced: start over
                    log.warning("trajectory_shrank", path=self.path)
                    self.__init__(self.path)  # type: ignore[misc]
                fh.seek(self.offset)
                budget = max_bytes or max(size - self.offset, 0)
                data = fh.read(budget)
                if budget < size - self.offset or not data.endswith(b"\n"):
                    cut = data.rfind(b"\n")
                    if cut < 0:
                        # one line longer than the budget: read on to its end
                        rest = fh.readline()
                        if not rest.endswith(b"\n"):
                            return 0
                        data += rest
                    else:
                        data = data[:cut + 1]
            before = self.events
            for line in data.splitlines():
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    self.bad_lines += 1
                    continue
                if isinstance(event, dict):
                    self._fold(self._resolver.resolve(event))
                else:
                    self.bad_lines += 1
            self.offset += len(data)
            return self.events - before

    def load_all(self) -> Trajectory:
        while self.update(CHUNK):
            pass
        return self.snapshot()

    # --- folding ------------------------------------------------------------------------------

    def _call(self, event: dict[str, Any]) -> _CallAcc:
        call_id = str(event.get("call_id") or "run")
        acc = self._calls.get(call_id)
        if acc is None:
            parent = event.get("parent_call_id")
            acc = self._calls[call_id] = _CallAcc(call_id, parent, int(_num(event.get("depth"))),
                                                  event.get("sub_call_type"))
            if parent and parent in self._calls:
                self._calls[parent].children.append(call_id)
            elif parent:  # parent not seen (torn file): hang it at the top, still visible
                self._roots.append(call_id)
            else:
                self._roots.append(call_id)
        return acc

    def _fold(self, event: dict[str, Any]) -> None:
        kind = str(event.get("type", "?"))
        index = self.events
        self.events += 1
        acc = self._call(event)
        ts = _num(event.get("timestamp"))
        if ts:
            acc.first_ts = ts if acc.first_ts is None else min(acc.first_ts, ts)
            acc.last_ts = ts if acc.last_ts is None else max(acc.last_ts, ts)
        step: Step | None = None
        common = {"index": index, "type": kind, "call_id": acc.call_id, "timestamp": ts}
        if kind == "run_start":
            self.start = {k: v for k, v in event.items() if k not in ("prompt", "system")}
            self.start["prompt"] = clip(event.get("prompt"))
            acc.prompt = self.start["prompt"]
            step = Step(**common, model=event.get("model"),
                        texts=(("prompt", acc.prompt), ("system", clip(event.get("system")))))
        elif kind == "call_start":
            acc.prompt = clip(event.get("prompt"))
            step = Step(**common, texts=(("prompt", acc.prompt),))
        elif kind == "llm_call":
            usage = event.get("token_usage") or {}
            inp, out = int(_num(usage.get("input"))), int(_num(usage.get("output")))
            cost = event.get("cost")
            model = str(event.get("model") or "?")
            acc.models[model] = None
            acc.input_tokens += inp
            acc.output_tokens += out
            acc.cost += _num(cost)
            acc.llm_ms += _num(event.get("duration_ms"))
            tools = tuple(ToolUse(name=str(c.get("name", "?")), arguments=clip(c.get("arguments"), 1000))
                          for c in (event.get("tool_calls") or []) if isinstance(c, dict))
            step = Step(**common, duration_ms=_num(event.get("duration_ms")), model=model, input_tokens=inp,
                        output_tokens=out, cost=cost if isinstance(cost, (int, float)) else None,
                        texts=(("prompt", clip(event.get("prompt"))), ("response", clip(event.get("response"))))
                        + ((("forced", "the forced last turn after a limit"),) if event.get("forced") else ()),
                        tools=tools)
        elif kind == "tool_results":
            tools = []
            for r in event.get("tool_results") or []:
                if not isinstance(r, dict):
                    continue
                use = ToolUse(name=str(r.get("name", "?")), content=clip(r.get("content"), 2000),
                              is_error=bool(r.get("is_error")), duration_ms=_num(r.get("duration_ms")))
                acc.tool_ms += use.duration_ms
                if use.is_error:
                    acc.errors.append(f"tool {use.name}: {use.content[:200]}")
                tools.append(use)
            step = Step(**common, duration_ms=sum(t.duration_ms for t in tools), tools=tuple(tools),
                        error="tool error" if any(t.is_error for t in tools) else None)
        elif kind == "tool_start":
            return  # its calls are shown with the llm_call that asked for them and the results
        elif kind == "repl_execution":
            acc.repl_ms += _num(event.get("duration_ms"))
            error = event.get("error") or None
            if error:
                acc.errors.append(f"REPL: {clip(error, 300)}")
            step = Step(**common, duration_ms=_num(event.get("duration_ms")),
                        error=clip(error) if error else None,
                        texts=(("code", clip(event.get("code"))), ("output", clip(event.get("output"))),
                               ("value", clip(event.get("value"))))
                        + ((("final", clip(event["final"], 1000)),) if event.get("final") else ()))
        elif kind == "call_end":
            acc.finished = True
            acc.response = clip(event.get("response"))
            if isinstance(event.get("duration_ms"), (int, float)):
                acc.duration_ms = float(event["duration_ms"])
            error = event.get("error") or None
            if error and not acc.errors:  # a failure the call's own events did not already record
                acc.errors.append(f"{event.get('error_type') or 'error'}: {clip(error, 300)}")
                self.errors.append((acc.call_id, f"call failed: {event.get('error_type') or 'error'}: {clip(error, 300)}"))
            step = Step(**common, duration_ms=_num(event.get("duration_ms")),
                        error=clip(error) if error else None,
                        texts=(("response", acc.response),) + ((("limit", str(event["limit"])),)
                                                                if event.get("limit") else ()))
        elif kind == "run_end":
            self.end = {k: v for k, v in event.items() if k != "response"}
            acc.finished = True
            acc.response = clip(event.get("response"))
            if isinstance(event.get("duration_ms"), (int, float)):
                acc.duration_ms = float(event["duration_ms"])
            if event.get("error"):
                acc.errors.append(str(event["error"]))
                self.errors.append((acc.call_id, f"run failed: {event.get('error_type') or 'error'}: {event['error']}"))
            step = Step(**common, duration_ms=_num(event.get("duration_ms")), error=event.get("error") or None,
                        texts=(("response", acc.response),))
        elif kind == "error":
            message = f"{event.get('error_type') or 'error'}: {event.get('error')}"
            acc.errors.append(message)
            self.errors.append((acc.call_id, message))
            step = Step(**common, error=clip(message))
        elif kind == "limit_hit":
            step = Step(**common, texts=(("limit", f"{event.get('limit')}: {event.get('message')}"),))
        elif kind == "no_answer":
            message = f"no answer: {event.get('reason')}"
            acc.errors.append(message)
            self.errors.append((acc.call_id, message))
            step = Step(**common, error=clip(message),
                        texts=(("limit", str(event["limit"])),) if event.get("limit") else ())
        elif kind == "repeated_code":
            step = Step(**common, error=clip(event.get("error")) if event.get("error") else None,
                        texts=(("repeated", f"the same code, run {event.get('runs')} times; next turns sampled at "
                                            f"temperature {event.get('temperature')}"),
                               ("code", clip(event.get("code")))))
        elif kind == "context_compacted":
            step = Step(**common, texts=(("compacted", f"removed {event.get('removed_chars')} characters"),))
        elif kind == "context_injected":
            injected = (f"{event.get('provider')}: {event.get('tokens')} tokens "
                        f"({event.get('chars')} characters) injected")
            step = Step(**common, error=clip(event.get("error")) if event.get("error") else None,
                        texts=(("context", injected), ("query", clip(event.get("query")))))
        else:
            step = Step(**common, texts=(("event", clip({k: v for k, v in event.items()
                                                         if k not in ("trajectory_id", "timestamp")}, 1000)),))
        acc.steps.append(step)
        if kind == "repl_execution" and step.error:
            self.errors.append((acc.call_id, f"REPL error: {step.error[:300]}"))

    def snapshot(self) -> Trajectory:
        """A frozen view of everything read so far."""
        with self._lock:
            return Trajectory(trajectory_id=self.trajectory_id, path=self.path, start=dict(self.start),
                              end=dict(self.end) if self.end is not None else None,
                              calls={k: v.freeze() for k, v in self._calls.items()}, roots=tuple(self._roots),
                              errors=tuple(self.errors), events=self.events, bytes_read=self.offset,
                              bad_lines=self.bad_lines)
