"""Ctrl-C for the commands that run a model: the first stops the work cleanly, the second at once.

:class:`Interrupts` replaces the ``SIGINT`` handler while ``rlm run`` or ``rlm agent``
works.  The first Ctrl-C calls ``on_first`` (it cancels the run's task; the run then
writes its ``run_end`` with ``cancelled`` and the command prints one line and
exits 130).  A second Ctrl-C does not wait for that cleanup: it
writes the ``run_end`` of every run still open (:func:`rlm.orchestrator.end_open_runs`),
prints one line and ends the process with exit code 130 -- never a death by
signal, never a traceback.  Sandboxes left behind end on their own when
their host process is gone (worker watchdogs, ``auto_remove`` containers).

Why our own handler rather than asyncio's: :func:`asyncio.run` turns the
second Ctrl-C into a ``KeyboardInterrupt`` raised wherever the program is,
even after the loop closed, where it kills the process by ``SIGINT``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, TextIO

#: Exit code of a command stopped by Ctrl-C (128 + SIGINT), documented in the README.
EXIT_INTERRUPTED = 130


class Interrupts:
    """Context manager: ``SIGINT`` -> ``on_first()`` once, then an immediate exit 130."""

    def __init__(self, on_first: Callable[[], None] | None = None, *, stream: TextIO | None = None) -> None:
        self.on_first = on_first
        self.stream = stream
        self.count = 0
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._installed:
            # once interrupted the command is on its way out with 130: a late Ctrl-C must not turn
            # that into a death by signal (or a second line)
            signal.signal(signal.SIGINT, signal.SIG_IGN if self.count else self._previous)
            self._installed = False

    @property
    def interrupted(self) -> bool:
        return self.count > 0

    def _say(self, text: str) -> None:
        stream = self.stream or sys.stderr
        try:
            stream.write(text + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count == 1 and self.on_first is not None:
            try:
                self.on_first()
                return
            except Exception:  # noqa: BLE001, S110 - nothing to cancel any more: quit below
                pass
        from rlm.orchestrator import end_open_runs

        try:
            end_open_runs()
        finally:
            self._say("rlm: interrupted")
            try:
                sys.stdout.flush()
            except (OSError, ValueError):
                pass
            os._exit(EXIT_INTERRUPTED)
