"""Progress on stderr for long runs: a plugin observing ``rlm_trajectory_event``.

On a terminal it redraws one status line (turn, tokens, cost, current
action); otherwise, or with ``--verbose``, it prints one plain line per step.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

from rlm.events import describe
from rlm.hookspecs import hookimpl


class ProgressPrinter:
    """Registered on the CLI's plugin manager for the duration of one run."""

    def __init__(self, *, stream: TextIO, verbose: bool = False, max_iterations: int | None = None) -> None:
        self.stream = stream
        self.max_iterations = max_iterations
        self.iteration = 0
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.verbose = verbose
        self.tokens = 0
        self.cost = 0.0
        self.calls = 0
        self.started = time.monotonic()
        self._line = False

    def _describe(self, event: dict[str, Any]) -> str | None:
        """Count the event into the totals; its line (:func:`rlm.events.describe`), indented by depth."""
        number = None
        if event["type"] == "llm_call":
            if not event.get("depth"):
                self.iteration += 1
            usage = event.get("token_usage") or {}
            self.tokens += int(usage.get("total") or 0)
            self.cost += float(event.get("cost") or 0.0)
            self.calls += 1
            number = self.calls
        line = describe(event, number=number)
        return None if line is None else "  " * int(event.get("depth") or 0) + line

    @hookimpl
    def rlm_trajectory_event(self, event):
        line = self._describe(dict(event))
        if line is None:
            return
        if self.verbose or not self.tty:
            if self.verbose:
                print(line, file=self.stream, flush=True)
            return
        elapsed = time.monotonic() - self.started
        step = f"iteration {self.iteration}/{self.max_iterations} " if self.max_iterations else ""
        status = f"\r\x1b[2K[{elapsed:5.1f}s] {step}{self.tokens} tokens ${self.cost:.4f} | {line.strip()[:60]}"
        self.stream.write(status)
        self.stream.flush()
        self._line = True

    def finish(self) -> None:
        if self._line:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._line = False

    def summary(self, result: Any, config: Any) -> str:
        cost = "unknown cost" if result.total_cost_usd is None else f"${result.total_cost_usd:.4f}"
        limit = f", limit hit: {result.limit_hit}" if result.limit_hit else ""
        path = f"{config.log_dir}/{result.trajectory_id}.jsonl" if "jsonl" in config.trajectory_sinks else "-"
        return (f"[rlm] {result.total_calls} model calls, {result.total_tool_calls} tool calls, "
                f"{result.total_tokens} tokens, {cost}, {result.duration_ms / 1000:.1f}s{limit}; trajectory: {path}")
