"""The container's attach socket as the line reader/writer :class:`rlm_repl.client.GuestClient` needs.

Without a TTY docker multiplexes the attached streams: every frame is an
8-byte header (stream: 1 stdout, 2 stderr; 3 zero bytes; payload size, big
endian) and the payload.  :class:`AttachStream` splits them: stdout bytes feed
:meth:`AttachStream.readline`, stderr bytes a small tail kept to explain a
crash.  Writes go raw to the container's stdin.

I/O uses ``loop.sock_recv``/``loop.sock_sendall`` of whichever event loop is
running, on a non-blocking socket, so the stream works from any loop
(``asyncio.run`` per call included) and a cancelled read loses nothing.
"""

from __future__ import annotations

import asyncio
import socket

STDOUT, STDERR = 1, 2
HEADER = 8
MAX_LINE = 256 * 1024 * 1024
STDERR_TAIL = 8192


class AttachStream:
    """Demultiplexed line reader and raw writer over a docker attach socket."""

    def __init__(self, sock: socket.socket, *, max_line: int = MAX_LINE) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.max_line = max_line
        self._frames = bytearray()  # multiplexed bytes not parsed yet
        self._stdout = bytearray()
        self._scanned = 0  # bytes of _stdout known to hold no newline
        self._pending = bytearray()
        self._stderr = bytearray()
        self.eof = False

    @property
    def stderr_tail(self) -> str:
        """The last bytes the container wrote to stderr."""
        return self._stderr.decode("utf-8", "replace")

    def _parse(self) -> None:
        buf = self._frames
        while len(buf) >= HEADER:
            size = int.from_bytes(buf[4:8], "big")
            if len(buf) < HEADER + size:
                return
            kind = buf[0]
            payload = buf[HEADER:HEADER + size]
            del buf[:HEADER + size]
            if kind == STDOUT:
                self._stdout += payload
            elif kind == STDERR:
                self._stderr += payload
                if len(self._stderr) > STDERR_TAIL:
                    del self._stderr[:len(self._stderr) - STDERR_TAIL]

    async def _fill(self) -> None:
        data = await asyncio.get_running_loop().sock_recv(self.sock, 1 << 16)
        if not data:
            self.eof = True
            return
        self._frames += data
        self._parse()

    async def readline(self) -> bytes:
        """The next stdout line (with its newline); what is left, then b"", at the end."""
        while True:
            index = self._stdout.find(b"\n", self._scanned)
            if index >= 0:
                line = bytes(self._stdout[:index + 1])
                del self._stdout[:index + 1]
                self._scanned = 0
                return line
            self._scanned = len(self._stdout)
            if self._scanned > self.max_line:
                raise ValueError(f"a line of the guest exceeds {self.max_line} bytes")
            if self.eof:
                rest = bytes(self._stdout)
                self._stdout.clear()
                self._scanned = 0
                return rest
            await self._fill()

    def write(self, data: bytes) -> None:
        self._pending += data

    async def drain(self) -> None:
        if not self._pending:
            return
        data = bytes(self._pending)
        self._pending.clear()
        await asyncio.get_running_loop().sock_sendall(self.sock, data)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
