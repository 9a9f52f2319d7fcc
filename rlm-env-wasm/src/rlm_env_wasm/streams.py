"""The host ends of the guest's stdio, shaped for :class:`rlm_repl.client.GuestClient`.

:class:`GuestOutput` receives the guest's stdout in whatever chunks wasmtime
hands to the ``stdout_custom`` callback (on the guest's thread) and serves
lines to ``async readline()`` on whichever event loop awaits it.  It bounds
what the guest can make the host hold: the bytes sent since the host last
wrote (``budget``) are capped, and past the cap the guest is stopped through
``on_overflow``.  Lines that do not carry the session's nonce are dropped
here, counted, and logged once per request, so a flood of stray lines cannot
turn into a flood of log lines.

:class:`FifoWriter` writes to the guest's stdin FIFO without blocking the
event loop (non-blocking fd, waiting for writability when the pipe is full).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from collections.abc import Callable

from rlm.logging import get_logger

log = get_logger(__name__)

#: How many candidate starts :func:`_message_suffix` tries in a line.
MAX_RECOVERY_TRIES = 16


class GuestOutput:
    """A thread-fed, loop-agnostic line reader over the guest's stdout."""

    def __init__(self, *, budget: int, on_overflow: Callable[[str], None]) -> None:
        self.budget = budget
        self.on_overflow = on_overflow
        self.nonce: bytes | None = None
        self._buffer = bytearray()
        self._lines: list[bytes] = []
        self._lock = threading.Lock()
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        self._eof = False
        self._since_host_spoke = 0
        self.dropped_lines = 0
        self.overflowed = False

    # --- the guest's side (any thread) ---------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """wasmtime's stdout callback: never raises."""
        try:
            self._feed(data)
        except Exception as exc:  # noqa: BLE001 - an exception here would print from wasmtime-py
            log.warning("wasm_stdout_feed_failed", error=str(exc))

    def _feed(self, data: bytes) -> None:
        overflow = False
        with self._lock:
            if self._eof or self.overflowed:
                return
            self._since_host_spoke += len(data)
            if self._since_host_spoke > self.budget:
                self.overflowed = overflow = True
                self._buffer.clear()
            else:
                self._buffer += data
                if b"\n" in data:
                    *complete, rest = self._buffer.split(b"\n")
                    self._buffer = bytearray(rest)
                    for line in complete:
                        if self.nonce is not None and self.nonce not in line:
                            self.dropped_lines += 1
                        elif line.strip():
                            self._lines.append(_message_suffix(line) + b"\n")
            wake = bool(self._lines)
        if overflow:
            self.on_overflow(f"the guest wrote more than {self.budget >> 20} MiB to its stdout "
                             "without the host answering (an output flood through os.write?)")
        if wake or overflow:
            self._wake()

    def close(self) -> None:
        """End of stream: ``readline`` returns ``b""`` once the lines already read are served."""
        with self._lock:
            self._eof = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is None:
            return
        loop, future = waiter

        def settle() -> None:
            if not future.done():
                future.set_result(None)

        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(settle)

    # --- the host's side (an event loop) -------------------------------------------------------

    def host_spoke(self) -> None:
        """The host writes to the guest: the guest may send ``budget`` bytes again.

        Lines still queued now were written before this message, so they cannot answer
        it (the server writes nothing between its reply and its next read): drop them.
        Only guest code that found the nonce writes such lines, to pre-answer later requests.
        """
        with self._lock:
            self._since_host_spoke = 0
            stale, self._lines = len(self._lines), []
            dropped, self.dropped_lines = self.dropped_lines + stale, 0
        if dropped:
            log.info("wasm_stray_lines_dropped", count=dropped)

    async def readline(self) -> bytes:
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._lines:
                    return self._lines.pop(0)
                if self._eof or self.overflowed:
                    return b""
                future: asyncio.Future[None] = loop.create_future()
                self._waiter = (loop, future)
            try:
                await future
            finally:
                with self._lock:
                    if self._waiter is not None and self._waiter[1] is future:
                        self._waiter = None


def _message_suffix(line: bytes) -> bytes:
    """The protocol message at the end of ``line``: bytes that guest code wrote to fd 1
    without a newline end up in front of the server's next message; cut them off."""
    if line.startswith(b"{"):
        return line
    start = line.find(b'{"')
    for _ in range(MAX_RECOVERY_TRIES):
        if start < 0:
            break
        try:
            if isinstance(json.loads(line[start:]), dict):
                return line[start:]
        except ValueError:
            pass
        start = line.find(b'{"', start + 1)
    return line


class FifoWriter:
    """``write`` + ``async drain`` over the write end of the guest's stdin FIFO.

    :meth:`abort` (any thread) makes a waiting or later ``drain`` fail with
    BrokenPipeError: the guest is gone and will never read what is pending.
    """

    def __init__(self, fd: int, *, on_write: Callable[[], None]) -> None:
        self.fd = fd
        self.on_write = on_write
        self._pending = bytearray()
        self._aborted = False
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        os.set_blocking(fd, False)

    def write(self, data: bytes) -> None:
        self._pending += data
        self.on_write()

    def abort(self) -> None:
        self._aborted = True
        waiter = self._waiter
        if waiter is not None:
            loop, future = waiter

            def settle() -> None:
                if not future.done():
                    future.set_result(None)

            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle)

    async def drain(self) -> None:
        while self._pending:
            if self._aborted:
                self._pending.clear()
                raise BrokenPipeError("the guest is gone")
            try:
                written = os.write(self.fd, self._pending)
            except BlockingIOError:
                await self._writable()
                continue
            except OSError as exc:
                self._pending.clear()
                raise BrokenPipeError(f"the guest's stdin is closed ({exc})") from exc
            del self._pending[:written]

    async def _writable(self) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not future.done():
                future.set_result(None)

        self._waiter = (loop, future)
        if self._aborted:
            return
        try:
            loop.add_writer(self.fd, ready)
        except (OSError, ValueError) as exc:
            raise BrokenPipeError(f"the guest's stdin is closed ({exc})") from exc
        try:
            await future
        finally:
            self._waiter = None
            with contextlib.suppress(OSError, ValueError):
                loop.remove_writer(self.fd)
