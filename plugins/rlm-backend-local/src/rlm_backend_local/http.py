"""A small asyncio HTTP/1.1 client for an OpenAI-compatible server (llama.cpp's, here or remote).

Just what talking to a llama.cpp server needs: a JSON POST/GET with one
connection per request (``Connection: close``), bodies framed by
``Content-Length``, chunked transfer encoding or end of stream, and
Server-Sent Events for streaming (read by :mod:`rlm.sse`).  ``http://`` and ``https://`` URLs: TLS
uses the standard library's default context (:func:`ssl.create_default_context`:
the system's CA certificates, ``$SSL_CERT_FILE`` honoured, certificate and
host name checked).  Everything is a coroutine, so a timeout or a
cancellation closes the socket at once.  No SDK, no third-party dependency:
the backend installs alone with the kernel.

A response head and body are each at most :data:`MAX_BODY` bytes.  A status
other than 200 is the caller's to turn into :class:`APIStatusError`, which
:func:`rlm_backend_kit.provider_errors.classify` reads like an SDK's status error.
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from attrs import define, field
from rlm import sse

#: Largest response head or body accepted (a local server never sends more).
MAX_BODY = 64 << 20


class HTTPFailure(Exception):
    """The connection failed or the response was not valid HTTP (transient unless ``permanent``)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        #: trying again cannot help (a URL this client cannot use, a refused certificate)
        self.permanent = permanent


class TLSFailure(HTTPFailure):
    """The server's TLS certificate was refused (permanent: the fix is the certificate or the URL)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


@define(frozen=True, kw_only=True)
class Response:
    status: int
    headers: Mapping[str, str] = field(factory=dict)  # lower-case names
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


class APIStatusError(Exception):
    """A response with an error status, shaped like an SDK's ``APIStatusError`` (``status_code``, ``body``,
    ``response.headers``, ``message``) so that :func:`rlm_backend_kit.provider_errors.classify` maps it as it maps theirs."""

    def __init__(self, response: Response) -> None:
        self.response = response
        self.status_code = response.status
        try:
            self.body: Any = response.json()
        except (ValueError, UnicodeDecodeError):
            self.body = None
        text = " ".join(response.body.decode("utf-8", "replace").split())[:300]
        self.message = text or f"HTTP {response.status}"
        super().__init__(f"HTTP {response.status}: {self.message}")


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _target(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path)`` of ``url``."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS:
        raise HTTPFailure(f"only http:// and https:// URLs are supported, not {url!r}", permanent=True)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:  # a port that is no number
        raise HTTPFailure(f"not a valid URL: {url!r} ({exc})", permanent=True) from None
    return parts.scheme, parts.hostname or "127.0.0.1", port, path


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The standard library's default client context: certificates and host names are checked."""
    return ssl.create_default_context()


async def _connect(scheme: str, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if scheme == "https":
        try:
            return await asyncio.open_connection(host, port, limit=MAX_BODY, ssl=tls_context(),
                                                 server_hostname=host)
        except ssl.SSLCertVerificationError as exc:
            raise TLSFailure(f"the TLS certificate of {host}:{port} was refused: "
                             f"{exc.verify_message or exc.reason or exc}") from exc
        except ssl.SSLError as exc:
            raise HTTPFailure(f"the TLS handshake with {host}:{port} failed: {exc.reason or exc}") from exc
    return await asyncio.open_connection(host, port, limit=MAX_BODY)


class _Connection:
    """One request/response exchange on a fresh TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> tuple[_Connection, int, dict[str, str]]:
        scheme, host, port, path = _target(url)
        try:
            reader, writer = await _connect(scheme, host, port)
        except OSError as exc:
            raise HTTPFailure(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from exc
        conn = cls(reader, writer)
        host_header = f"[{host}]" if ":" in host else host
        if port != _DEFAULT_PORTS[scheme]:
            host_header += f":{port}"
        try:
            lines = [f"{method} {path} HTTP/1.1", f"Host: {host_header}", "Connection: close",
                     "Accept-Encoding: identity"]
            lines += [f"{k}: {v}" for k, v in headers.items()]
            if body is not None:
                lines.append(f"Content-Length: {len(body)}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
            await writer.drain()
            status, response_headers = await conn._read_head()
        except BaseException:
            conn.close()
            raise
        return conn, status, response_headers

    async def _read_head(self) -> tuple[int, dict[str, str]]:
        try:
            raw = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise HTTPFailure("the server closed the connection without answering") from exc
        except (asyncio.LimitOverrunError, OSError) as exc:
            raise HTTPFailure(f"reading the response failed: {exc}") from exc
        status_line, *header_lines = raw.decode("latin-1").split("\r\n")
        try:
            version, code, *_ = status_line.split(" ", 2)
            status = int(code)
            if not version.startswith("HTTP/"):
                raise ValueError(status_line)
        except ValueError as exc:
            raise HTTPFailure(f"not an HTTP response: {status_line[:80]!r}") from exc
        headers: dict[str, str] = {}
        for line in header_lines:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return status, headers

    async def chunks(self, headers: Mapping[str, str]) -> AsyncIterator[bytes]:
        """The body, as it arrives."""
        try:
            if "chunked" in headers.get("transfer-encoding", "").lower():
                while True:
                    size_line = await self.reader.readuntil(b"\r\n")
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        return
                    data = await self.reader.readexactly(size + 2)
                    yield data[:-2]
            elif "content-length" in headers:
                remaining = int(headers["content-length"])
                while remaining > 0:
                    data = await self.reader.read(min(remaining, 1 << 16))
                    if not data:
                        raise HTTPFailure("the connection closed in the middle of the response")
                    remaining -= len(data)
                    yield data
            else:
                while data := await self.reader.read(1 << 16):
                    yield data
        except asyncio.IncompleteReadError as exc:
            raise HTTPFailure("the connection closed in the middle of the response") from exc
        except (ValueError, asyncio.LimitOverrunError) as exc:
            raise HTTPFailure(f"malformed response framing: {exc}") from exc
        except OSError as exc:
            raise HTTPFailure(f"reading the response failed: {exc}") from exc

    async def read_body(self, headers: Mapping[str, str]) -> bytes:
        out = bytearray()
        async for data in self.chunks(headers):
            out += data
            if len(out) > MAX_BODY:
                raise HTTPFailure("the response is too large")
        return bytes(out)

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001 - closing a dead socket
            pass


def _headers(api_key: str | None, *, json_body: bool, stream: bool = False) -> dict[str, str]:
    headers = {"Accept": "text/event-stream" if stream else "application/json"}
    if json_body:
        headers["Content-Type"] = "application/json"
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


async def request(method: str, url: str, *, payload: Any = None, api_key: str | None = None) -> Response:
    """One request; the whole response.  Raises :class:`HTTPFailure` for transport problems."""
    body = None if payload is None else json.dumps(payload).encode("utf-8")
    conn, status, headers = await _Connection.open(method, url, _headers(api_key, json_body=body is not None), body)
    try:
        return Response(status=status, headers=headers, body=await conn.read_body(headers))
    finally:
        conn.close()


@define(kw_only=True, eq=False)
class EventStream:
    """An open SSE response: ``status``/``headers``, then ``body`` (errors) or ``events()``."""

    status: int
    headers: Mapping[str, str]
    _conn: _Connection

    async def body(self) -> bytes:
        return await self._conn.read_body(self.headers)

    async def events(self) -> AsyncIterator[str]:
        """The ``data`` of each event (:mod:`rlm.sse`); ends at ``[DONE]`` or the end of the stream.
        :class:`rlm.sse.SSEError` for a stream that is no valid event stream."""
        parser = sse.SSEParser()
        async for chunk in self._conn.chunks(self.headers):
            for event in parser.feed(chunk):
                if event.data.strip() == "[DONE]":
                    return
                yield event.data
        for event in parser.finish():
            if event.data.strip() == "[DONE]":
                return
            yield event.data

    def close(self) -> None:
        self._conn.close()


async def open_stream(url: str, *, payload: Any, api_key: str | None = None) -> EventStream:
    """POST ``payload`` and return the open response (call ``close()`` when done)."""
    body = json.dumps(payload).encode("utf-8")
    conn, status, headers = await _Connection.open("POST", url, _headers(api_key, json_body=True, stream=True), body)
    return EventStream(status=status, headers=headers, conn=conn)
