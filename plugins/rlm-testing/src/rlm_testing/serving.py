"""The scripted server's HTTP/1.1 layer: one asyncio event loop, in a daemon thread, serves every connection.

``http.server`` starts a thread per connection and parses headers with the e-mail parser: about 0.7 ms of
CPU a request, all of it under one GIL, so a client fanning out hundreds of calls measured the server as
much as itself.  Here a connection is a coroutine, a reply's delay an ``asyncio.sleep`` and a request head
a split on CRLF.  The listen backlog is :data:`LISTEN_BACKLOG` (hundreds of clients may connect at once;
a short queue makes the kernel drop their SYNs and each such client waits ~1 s to retry).

What is answered is not decided here: :class:`HTTPServing` calls ``answer(request)`` -- on the loop's
thread, so it must not block -- which returns the :class:`~rlm_testing.wire.Rendered` reply and the
seconds to wait before it, or None to close the connection without a reply (the server is stopping).
The faults of :class:`~rlm_testing.wire.Rendered` are written here: ``drop`` (close without a reply),
``stall`` (part of the reply, then silence), ``hang`` (silence), each holding the connection until the
client leaves or the server stops.
"""

from __future__ import annotations

import asyncio
import http
import socket
import sys
import threading
import time
from collections.abc import Callable
from email.utils import formatdate

from attrs import frozen

from rlm.logging import get_logger

from rlm_testing.wire import Rendered

log = get_logger(__name__)

#: the listen backlog: connections the kernel queues before the loop accepts them (clamped to
#: ``net.core.somaxconn``, 4096 by default on Linux)
LISTEN_BACKLOG = 1024
#: the most bytes of a request line and its headers (a longer head is answered 431)
MAX_HEAD_BYTES = 64 * 1024
#: the most bytes of a request body (a larger one is answered 413)
MAX_BODY_BYTES = 256 * 1024 * 1024
#: an idle kept-alive connection, or a request that stops arriving, is closed after this many seconds
IDLE_TIMEOUT = 30.0
#: the ``Server`` header
SERVER_NAME = f"rlm-testing-scripted-llm/0.1 Python/{sys.version.split()[0]}"
METHODS = ("GET", "POST")


@frozen
class Request:
    """One request as it came: method, path and query (split at ``?``), lower-cased headers (the last of a
    repeated name), the raw body and the client's (host, port)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    client: tuple[str, int] | None


Answer = Callable[[Request], "tuple[float, Rendered] | None"]


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_date_cache: list = [0, ""]


def _date() -> str:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, formatdate(now, usegmt=True)]
    return _date_cache[1]


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {status} {reason}", f"Server: {SERVER_NAME}", f"Date: {_date()}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _error_reply(status: int, message: str) -> bytes:
    body = f"{status} {message}\n".encode()
    return _head(status, [("content-type", "text/plain; charset=utf-8"), ("content-length", str(len(body))),
                          ("connection", "close")]) + body


class HTTPServing:
    """Serves ``answer`` over HTTP/1.1 on an asyncio loop in a daemon thread; :meth:`start` binds (and
    raises OSError there when it cannot), :meth:`stop` closes every connection and ends the thread."""

    def __init__(self, answer: Answer, *, host: str, port: int, name: str = "scripted-llm") -> None:
        self._answer = answer
        self.host, self.port, self.name = host, port, name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def open_connections(self) -> int:
        """Connections being served now (kept-alive idle ones included)."""
        return len(self._tasks)

    def start(self) -> int:
        """Bind, listen and serve; the bound port."""
        sock = socket.create_server((self.host, self.port), backlog=LISTEN_BACKLOG)
        self.port = sock.getsockname()[1]
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name=f"{self.name}:{self.port}", daemon=True)
        self._thread.start()
        try:
            self._server = asyncio.run_coroutine_threadsafe(
                asyncio.start_server(self._connection, sock=sock, backlog=LISTEN_BACKLOG, limit=MAX_HEAD_BYTES),
                loop).result(timeout=10)
        except BaseException:
            sock.close()
            self.stop()
            raise
        return self.port

    def stop(self) -> None:
        """Stop accepting, close every connection (a reply still waiting is abandoned), end the thread."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout=5)
            except Exception as exc:  # noqa: BLE001 - stopping goes on
                log.warning("scripted_llm_stop_failed", error=repr(exc))
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not loop.is_running():
            loop.close()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # --- a connection ---------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) and len(peer) >= 2 else None
        try:
            while True:
                try:
                    request = await self._read_request(reader, writer, client)
                except _BadRequest as bad:
                    writer.write(_error_reply(bad.status, str(bad)))
                    await writer.drain()
                    return
                if request is None:
                    return
                request, keep_alive = request
                answered = self._answer(request)
                if answered is None:  # stopping
                    return
                delay, rendered = answered
                if delay > 0:
                    await asyncio.sleep(delay)
                if not await self._write(reader, writer, rendered, keep_alive) or not keep_alive:
                    return
        except asyncio.CancelledError:
            pass  # the server is stopping
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, OSError) as exc:
            log.debug("client_connection_closed", error=type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 - one connection's failure is not the server's
            log.warning("scripted_llm_handler_failed", error=repr(exc), exc_info=True)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _read_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            client: tuple[str, int] | None) -> tuple[Request, bool] | None:
        """The next request and whether the connection stays open after it; None at the end of the connection."""
        try:
            async with asyncio.timeout(IDLE_TIMEOUT):
                raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                raise _BadRequest(400, "the request head is incomplete") from None
            return None
        except asyncio.LimitOverrunError:
            raise _BadRequest(431, "the request head is too large") from None
        except TimeoutError:
            return None
        lines = raw.lstrip(b"\r\n")[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadRequest(400, f"bad request line {lines[0][:80]!r}")
        method, target, version = parts
        if method not in METHODS:
            raise _BadRequest(501, f"unsupported method ({method!r})")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _BadRequest(400, "a malformed header line")
            headers[name.lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        if version == "HTTP/1.1" and headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        async with asyncio.timeout(IDLE_TIMEOUT):
            body = await self._read_body(reader, headers)
        path, _, query = target.partition("?")
        return Request(method=method, path=path, query=query, headers=headers, body=body, client=client), keep_alive

    @staticmethod
    async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts, total = [], 0
            while True:
                line = await reader.readuntil(b"\r\n")
                try:
                    size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                except ValueError:
                    raise _BadRequest(400, "a malformed chunk size") from None
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, up to the empty line
                        pass
                    return b"".join(parts)
                total += size
                if total > MAX_BODY_BYTES:
                    raise _BadRequest(413, "the request body is too large")
                parts.append((await reader.readexactly(size + 2))[:-2])
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            raise _BadRequest(400, "a malformed content-length") from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise _BadRequest(413 if length > 0 else 400, "a bad content-length")
        return await reader.readexactly(length) if length else b""

    async def _write(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, r: Rendered,
                     keep_alive: bool) -> bool:
        """Write ``r``; whether the connection may serve another request."""
        if r.hang:
            await self._hold(reader)
            return False
        if r.drop:
            return False  # closed (FIN) without a byte of reply
        headers = [("content-type", r.content_type), *r.headers.items()]
        if r.events is None:
            headers.append(("content-length", str(len(r.body))))
            if not keep_alive:
                headers.append(("connection", "close"))
            writer.write(_head(r.status, headers) + (r.body[: len(r.body) // 2] if r.stall else r.body))
            await writer.drain()
            if r.stall:
                await self._hold(reader)
                return False
            return True
        headers += [("transfer-encoding", "chunked"), ("cache-control", "no-cache")]
        if not keep_alive:
            headers.append(("connection", "close"))
        writer.write(_head(r.status, headers))
        for event in r.events:  # one write each: a client sees them arrive one by one
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
        if r.stall:
            await self._hold(reader)
            return False
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    @staticmethod
    async def _hold(reader: asyncio.StreamReader) -> None:
        """Send nothing more until the client closes its end (or the server stops: the task is cancelled)."""
        try:
            while await reader.read(64 * 1024):
                pass
        except (ConnectionError, OSError):
            pass
