"""A lean keep-alive HTTP/1.1 transport for the SDKs' httpx clients, one SSL context per process, and
SDK clients shared across runs.

The official SDKs (openai, anthropic) stay the clients: they get an ``httpx.AsyncClient`` whose transport
is :class:`LeanTransport`, which speaks HTTP/1.1 over asyncio streams and skips httpx's default
pool/anyio/h11 path (most of the SDK's CPU per call).  Its connections are kept per event loop, so
one transport -- and one SDK client -- serves every event loop of the process (``completion_sync`` runs
a fresh one each call): nothing of a loop outlives it but idle sockets, closed by
:meth:`LeanTransport.close_loop`.  Nothing caps the connections open at once (N concurrent calls, a batch of
sub-calls, are N requests on the wire) and up to :data:`MAX_IDLE` idle ones are kept per loop and origin; a
host name is looked up once per :data:`DNS_TTL` for all of them (:class:`AddressCache`), not once a connection.
:meth:`LeanTransport.post_bytes` sends a request head built once (the OpenAI backend's non-streamed calls) through
the same pool, limits and errors, without httpx's request and response objects.

The server is not trusted: the status line and headers are capped (:data:`MAX_HEADER_BYTES`,
:data:`MAX_HEADERS`), a body is capped (:data:`MAX_BODY_BYTES`), every read waits at most the request's
read timeout, and every violation is an ``httpx`` error (``RemoteProtocolError``, ``ReadTimeout``...),
which the SDKs and :mod:`rlm_backend_kit.provider_errors` turn into the backend's usual errors.

Anything unusual goes through httpx's own transport instead (:func:`lean_ok`): a proxy in the
environment, a scheme other than http/https, or ``RLM_HTTP_TRANSPORT=httpx``.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import socket
import ssl
import sys
import threading
import urllib.request
import weakref
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Any

#: the most bytes of status line + headers
MAX_HEADER_BYTES = 64 * 1024
#: the most header lines
MAX_HEADERS = 128
#: the most bytes of one response body (decoded size is httpx's; this is the wire size)
MAX_BODY_BYTES = 64 * 1024 * 1024
#: the most idle connections kept per (event loop, origin).  Nothing caps the open ones: N concurrent calls
#: (a batch of sub-calls) open N connections, and keeping them lets the next N reuse them instead of paying
#: N connects, and N closes on the way back, on the one event loop that serves every call
MAX_IDLE = 256
#: connect timeout when the request names none
DEFAULT_TIMEOUT = 60.0
#: seconds a host name's resolved addresses serve new connections before it is looked up again
DNS_TTL = 30.0
_READ_SIZE = 64 * 1024

_lock = threading.Lock()
_ssl_contexts: dict[bool, ssl.SSLContext] = {}


def shared_ssl_context(*, alpn_http1: bool = True) -> ssl.SSLContext:
    """The process's one verifying SSL context (built once: building one costs ~20 ms of CPU).

    Trusts ``$SSL_CERT_FILE`` / ``$SSL_CERT_DIR`` when set, else certifi's bundle (as httpx does).
    ``alpn_http1``: offer only HTTP/1.1 (the lean transport); False: the context handed to httpx itself.
    """
    with _lock:
        context = _ssl_contexts.get(alpn_http1)
        if context is None:
            cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
            if not cafile and not capath:
                try:
                    import certifi

                    cafile = certifi.where()
                except ImportError:  # pragma: no cover - httpx depends on certifi
                    cafile = None
            context = ssl.create_default_context(cafile=cafile or None, capath=capath or None)
            if alpn_http1:
                context.set_alpn_protocols(["http/1.1"])
            _ssl_contexts[alpn_http1] = context
        return context


def lean_ok(base_url: str | None) -> bool:
    """Whether :class:`LeanTransport` can serve ``base_url``: http(s), no proxy in the environment, and not
    turned off by ``RLM_HTTP_TRANSPORT=httpx``."""
    if os.environ.get("RLM_HTTP_TRANSPORT", "").strip().lower() == "httpx":
        return False
    if base_url and not base_url.lower().startswith(("http://", "https://")):
        return False
    return not urllib.request.getproxies()


class AddressCache:
    """Host name -> addresses for new connections, looked up once per :data:`DNS_TTL` and shared by every event
    loop of the process.

    asyncio resolves a name for every connection it opens, each lookup a ``getaddrinfo`` in the loop's default
    executor (a handful of threads): N concurrent calls to one provider (a batch of sub-calls) queued N
    lookups there before any request could go out.  Here concurrent connections of a loop wait for one lookup;
    an address that refuses a connection makes the next one look the name up again.  IP literals are not looked
    up at all; the address that connected is tried first from then on (``localhost`` is ``::1`` first, which a
    server listening on 127.0.0.1 refuses)."""

    def __init__(self, ttl: float = DNS_TTL) -> None:
        self.ttl = ttl
        self._found: dict[tuple[str, int], tuple[float, list[tuple[Any, ...]]]] = {}
        self._pending: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, int], asyncio.Future]] = (
            weakref.WeakKeyDictionary()
        )
        #: getaddrinfo calls made (for tests)
        self.lookups = 0

    async def addresses(self, host: str, port: int) -> list[tuple[Any, ...]]:
        """``getaddrinfo`` entries (family, type, proto, canonname, sockaddr) for a TCP connection to ``host``."""
        literal = _ip_literal(host)
        if literal is not None:
            family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]
        key = (host, port)
        loop = asyncio.get_running_loop()
        found = self._found.get(key)
        if found is not None and found[0] > loop.time():
            return found[1]
        pending = self._pending.setdefault(loop, {})
        future = pending.get(key)
        if future is None:
            future = pending[key] = loop.create_task(self._lookup(loop, key))

            def done(task: asyncio.Future) -> None:
                pending.pop(key, None)
                if not task.cancelled():
                    task.exception()  # retrieved: every waiter may have given up

            future.add_done_callback(done)
        return await asyncio.shield(future)

    async def _lookup(self, loop: asyncio.AbstractEventLoop, key: tuple[str, int]) -> list[tuple[Any, ...]]:
        self.lookups += 1
        infos = await loop.getaddrinfo(key[0], key[1], type=socket.SOCK_STREAM)
        if not infos:
            raise OSError(f"getaddrinfo returned no address for {key[0]}")
        self._found[key] = (loop.time() + self.ttl, infos)
        return infos

    def prefer(self, host: str, port: int, info: tuple[Any, ...]) -> None:
        """Try ``info`` first from now on (it connected where the addresses before it did not)."""
        found = self._found.get((host, port))
        if found is not None and info in found[1]:
            self._found[(host, port)] = (found[0], [info, *(i for i in found[1] if i != info)])

    def forget(self, host: str, port: int) -> None:
        """Look ``host`` up again for the next connection (an address of it refused one)."""
        self._found.pop((host, port), None)

    def clear(self) -> None:
        self._found.clear()


@functools.lru_cache(maxsize=256)
def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


#: the process's address cache (every LeanTransport's)
addresses = AddressCache()


async def open_stream(host: str, port: int, *, ssl_context: ssl.SSLContext | None,
                      limit: int = MAX_HEADER_BYTES) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP (TLS with ``ssl_context``) stream to ``host``:``port`` over :data:`addresses`, each address tried in
    turn as asyncio does; OSError (the last address's) when none connects."""
    loop = asyncio.get_running_loop()
    last: OSError | None = None
    for index, info in enumerate(await addresses.addresses(host, port)):
        family, type_, proto, _, sockaddr = info
        sock = socket.socket(family, type_, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, sockaddr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        except BaseException:
            sock.close()
            raise
        if index:
            addresses.prefer(host, port, info)
        try:
            return await asyncio.open_connection(sock=sock, ssl=ssl_context,
                                                 server_hostname=host if ssl_context else None, limit=limit)
        except BaseException:
            sock.close()
            raise
    addresses.forget(host, port)
    raise last if last is not None else OSError(f"no address to connect to for {host}")


class _Connection:
    __slots__ = ("reader", "writer", "reused")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.reused = reader, writer, False

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof() and self.reader.exception() is None

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001 - its loop may be gone
            pass


Origin = tuple[str, str, int]


async def _timed(awaitable: Any, timeout: float | None) -> Any:
    """``await awaitable``, TimeoutError after ``timeout`` seconds (None: no limit); no task made, unlike wait_for."""
    if timeout is None:
        return await awaitable
    async with asyncio.timeout(timeout):
        return await awaitable


_types: dict[str, type] = {}


def httpx_module() -> Any:
    """An installed httpx: ``httpx``, else its fork ``httpx2`` (what openai and anthropic now depend on)."""
    try:
        import httpx
    except ImportError:
        import httpx2 as httpx  # type: ignore[no-redef]
    return httpx


def lean_transport_type(hx: Any = None) -> type:
    """The ``LeanTransport`` class over the httpx module ``hx`` (default :func:`httpx_module`; an SDK may use its
    own fork, e.g. ``httpx2``: the transport must subclass that one's ``AsyncBaseTransport``)."""
    hx = hx or httpx_module()
    with _lock:
        found = _types.get(hx.__name__)
        if found is None:
            found = _types[hx.__name__] = _build(hx)
        return found


def _build(httpx: Any) -> type:  # noqa: C901 - the classes over one httpx module
    class _Body(httpx.AsyncByteStream):
        """A response body read from ``conn``: content-length, chunked or to EOF, capped and timed."""

        def __init__(self, transport: LeanTransport, origin: Origin, conn: _Connection, request: httpx.Request,
                     *, length: int | None, chunked: bool, keep_alive: bool, read_timeout: float | None) -> None:
            self.transport, self.origin, self.conn, self.request = transport, origin, conn, request
            self.length, self.chunked, self.keep_alive, self.read_timeout = length, chunked, keep_alive, read_timeout
            self.done = False
            self.closed = False

        async def _read(self, op: Any) -> Any:
            try:
                return await _timed(op, self.read_timeout)
            except (asyncio.TimeoutError, TimeoutError) as exc:
                raise httpx.ReadTimeout("the server sent nothing within the read timeout", request=self.request) from exc
            except asyncio.IncompleteReadError as exc:
                raise httpx.RemoteProtocolError("the server closed the connection before the response was complete",
                                                request=self.request) from exc
            except asyncio.LimitOverrunError as exc:
                raise httpx.RemoteProtocolError("the server sent a chunk-size line that is too long",
                                                request=self.request) from exc
            except (ConnectionError, OSError) as exc:
                raise httpx.ReadError(f"reading the response failed: {exc!r}", request=self.request) from exc

        def _too_big(self) -> httpx.RemoteProtocolError:
            return httpx.RemoteProtocolError(f"the response body is larger than {MAX_BODY_BYTES} bytes",
                                             request=self.request)

        async def __aiter__(self) -> AsyncIterator[bytes]:
            reader = self.conn.reader
            total = 0
            try:
                if self.chunked:
                    while True:
                        line = await self._read(reader.readuntil(b"\r\n"))
                        try:
                            size = int(line.split(b";", 1)[0].strip(), 16)
                        except ValueError as exc:
                            raise httpx.RemoteProtocolError("the server sent a malformed chunk size",
                                                            request=self.request) from exc
                        if size < 0:
                            raise httpx.RemoteProtocolError("the server sent a malformed chunk size", request=self.request)
                        if size == 0:
                            # trailers (usually none), up to the empty line
                            for _ in range(MAX_HEADERS + 1):
                                if await self._read(reader.readuntil(b"\r\n")) == b"\r\n":
                                    break
                            else:
                                raise httpx.RemoteProtocolError("too many trailers", request=self.request)
                            break
                        total += size
                        if total > MAX_BODY_BYTES:
                            raise self._too_big()
                        data = await self._read(reader.readexactly(size + 2))
                        if data[-2:] != b"\r\n":
                            raise httpx.RemoteProtocolError("the server sent a malformed chunk", request=self.request)
                        if size:
                            yield data[:-2]
                elif self.length is not None:
                    if self.length > MAX_BODY_BYTES:
                        raise self._too_big()
                    remaining = self.length
                    while remaining:
                        data = await self._read(reader.read(min(remaining, _READ_SIZE)))
                        if not data:
                            raise httpx.RemoteProtocolError("the server closed the connection before the response was "
                                                            "complete", request=self.request)
                        remaining -= len(data)
                        yield data
                else:  # delimited by the end of the connection
                    self.keep_alive = False
                    while True:
                        data = await self._read(reader.read(_READ_SIZE))
                        if not data:
                            break
                        total += len(data)
                        if total > MAX_BODY_BYTES:
                            raise self._too_big()
                        yield data
                self.done = True
            finally:
                if not self.done:
                    self._finish()

        def _finish(self) -> None:
            if self.closed:
                return
            self.closed = True
            if self.done and self.keep_alive:
                self.transport._release(self.origin, self.conn)
            else:
                self.conn.close()

        async def aclose(self) -> None:
            self._finish()


    class LeanTransport(httpx.AsyncBaseTransport):
        """Keep-alive HTTP/1.1 over asyncio streams, connections kept per event loop (see the module's text)."""

        def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
            self._ssl_context = ssl_context
            self._idle: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Origin, list[_Connection]]] = (
                weakref.WeakKeyDictionary()
            )
            #: connections opened (for tests and benchmarks)
            self.opened = 0

        # --- the pool ----------------------------------------------------------------------------

        def _pool(self) -> dict[Origin, list[_Connection]]:
            loop = asyncio.get_running_loop()
            pool = self._idle.get(loop)
            if pool is None:
                pool = self._idle[loop] = {}
            return pool

        def _release(self, origin: Origin, conn: _Connection) -> None:
            try:
                pool = self._pool()
            except RuntimeError:
                conn.close()
                return
            idle = pool.setdefault(origin, [])
            if len(idle) < MAX_IDLE and conn.usable():
                conn.reused = True
                idle.append(conn)
            else:
                conn.close()

        def close_loop(self) -> int:
            """Close the idle connections of the running event loop (the loop is about to end); how many."""
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return 0
            pool = self._idle.pop(loop, None) or {}
            count = 0
            for conns in pool.values():
                for conn in conns:
                    conn.close()
                    count += 1
            return count

        async def aclose(self) -> None:
            self.close_loop()

        async def _connect(self, request: httpx.Request, origin: Origin, timeout: float | None) -> _Connection:
            scheme, host, port = origin
            context = (self._ssl_context or shared_ssl_context()) if scheme == "https" else None
            try:
                reader, writer = await _timed(open_stream(host, port, ssl_context=context), timeout)
            except (asyncio.TimeoutError, TimeoutError) as exc:
                raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out", request=request) from exc
            except (OSError, ssl.SSLError) as exc:
                raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}", request=request) from exc
            self.opened += 1
            return _Connection(reader, writer)

        # --- a request ---------------------------------------------------------------------------

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            origin = self._origin(request)
            timeouts = request.extensions.get("timeout") or {}
            body = await request.aread()
            return await self._send(request, origin, self._head(request, body), body,
                                    timeouts.get("connect", DEFAULT_TIMEOUT), timeouts.get("read", DEFAULT_TIMEOUT))

        async def post_bytes(self, request: httpx.Request, head: bytes,
                             body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            """Send ``head`` + ``body`` and read the whole answer: (status, header lines, body as it came, not
            decoded).  ``head`` is a complete request head for ``request`` (its status line, headers and blank
            line, e.g. :meth:`head_prefix` + ``Content-Length``); ``request`` gives the origin and the timeouts and
            is the request the errors name.  The same pool, limits, timeouts and errors as a request through httpx,
            without building httpx's request and response objects (the OpenAI backend's non-streamed calls)."""
            timeouts = request.extensions.get("timeout") or {}
            status, _reason, headers, stream = await self._send(
                request, self._origin(request), head, body, timeouts.get("connect", DEFAULT_TIMEOUT),
                timeouts.get("read", DEFAULT_TIMEOUT), bare=True)
            parts = []
            chunks = stream.__aiter__()
            try:
                async for chunk in chunks:
                    parts.append(chunk)
            finally:
                await chunks.aclose()
                stream._finish()  # read whole: back to the pool; else closed
            return status, headers, parts[0] if len(parts) == 1 else b"".join(parts)

        @staticmethod
        def _origin(request: httpx.Request) -> Origin:
            url = request.url
            scheme = url.scheme
            if scheme not in ("http", "https"):
                raise httpx.UnsupportedProtocol(f"the lean transport speaks http and https, not {scheme!r}",
                                                request=request)
            return (scheme, url.host, url.port or (443 if scheme == "https" else 80))

        async def _send(self, request: httpx.Request, origin: Origin, head: bytes, body: bytes,
                        connect_timeout: float | None, read_timeout: float | None, *, bare: bool = False) -> Any:
            idle = self._pool().get(origin)
            while True:
                conn = None
                while idle:
                    candidate = idle.pop()
                    if candidate.usable():
                        conn = candidate
                        break
                    candidate.close()
                if conn is None:
                    conn = await self._connect(request, origin, connect_timeout)
                try:
                    return await self._exchange(request, origin, conn, head, body, read_timeout, bare=bare)
                except _Stale:
                    conn.close()  # a kept-alive connection the server had closed: once more on a fresh one
                    idle = None
                    continue
                except BaseException:
                    conn.close()
                    raise

        @staticmethod
        def head_prefix(request: httpx.Request) -> bytes:
            """``request``'s status line and headers as sent, each line ending in CRLF, without
            ``Content-Length``/``Transfer-Encoding`` and without the blank line that ends the head."""
            url = request.url
            target = url.raw_path or b"/"
            lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), target)]
            has_host = False
            for name, value in request.headers.raw:
                lower = name.lower()
                if lower in (b"content-length", b"transfer-encoding"):
                    continue
                if lower == b"host":
                    has_host = True
                if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name:
                    raise httpx.LocalProtocolError("a header holds a line break", request=request)
                lines.append(name + b": " + value)
            if not has_host:
                lines.append(b"Host: " + url.netloc)
            lines.append(b"")
            return b"\r\n".join(lines)

        @classmethod
        def _head(cls, request: httpx.Request, body: bytes) -> bytes:
            head = cls.head_prefix(request)
            if body or request.method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
                head += b"Content-Length: %d\r\n" % len(body)
            return head + b"\r\n"

        async def _exchange(self, request: httpx.Request, origin: Origin, conn: _Connection, head: bytes, body: bytes,
                            read_timeout: float | None, *, bare: bool = False) -> Any:
            reused = conn.reused
            try:
                conn.writer.write(head + body if len(body) < 65536 else head)
                if len(body) >= 65536:
                    conn.writer.write(body)
                await _timed(conn.writer.drain(), read_timeout)
            except (asyncio.TimeoutError, TimeoutError) as exc:
                raise httpx.WriteTimeout("sending the request timed out", request=request) from exc
            except (ConnectionError, OSError) as exc:
                if reused:
                    raise _Stale from exc
                raise httpx.WriteError(f"sending the request failed: {exc!r}", request=request) from exc
            informational = 0
            while True:
                try:
                    raw = await _timed(conn.reader.readuntil(b"\r\n\r\n"), read_timeout)
                except (asyncio.TimeoutError, TimeoutError) as exc:
                    raise httpx.ReadTimeout("the server sent no response within the read timeout",
                                            request=request) from exc
                except asyncio.LimitOverrunError as exc:
                    raise httpx.RemoteProtocolError(f"the server sent response headers larger than {MAX_HEADER_BYTES} "
                                                    "bytes", request=request) from exc
                except asyncio.IncompleteReadError as exc:
                    if reused and not exc.partial:
                        raise _Stale from exc
                    raise httpx.RemoteProtocolError("the server closed the connection without a complete response",
                                                    request=request) from exc
                except (ConnectionError, OSError) as exc:
                    if reused:
                        raise _Stale from exc
                    raise httpx.ReadError(f"reading the response failed: {exc!r}", request=request) from exc
                status, reason, headers = self._parse_head(raw, request)
                if 100 <= status < 200 and status != 101:
                    informational += 1
                    if informational > 8:
                        raise httpx.RemoteProtocolError("the server sent informational responses without end",
                                                        request=request)
                    continue  # 100 Continue and other informational responses
                break
            length: int | None = None
            chunked = False
            keep_alive = True
            for name, value in headers:
                lower = name.lower()
                if lower == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif lower == b"content-length":
                    try:
                        length = int(value)
                    except ValueError:
                        raise httpx.RemoteProtocolError("the server sent a malformed Content-Length",
                                                        request=request) from None
                    if length < 0:
                        raise httpx.RemoteProtocolError("the server sent a malformed Content-Length", request=request)
                elif lower == b"connection" and b"close" in value.lower():
                    keep_alive = False
            if chunked:
                length = None
            if request.method == "HEAD" or status in (204, 304) or status == 101:
                length, chunked = 0, False
            stream = _Body(self, origin, conn, request, length=length, chunked=chunked, keep_alive=keep_alive,
                           read_timeout=read_timeout)
            conn.reused = False
            if bare:  # post_bytes: no httpx.Response
                return status, reason, headers, stream
            return httpx.Response(status, headers=headers, stream=stream, request=request,
                                  extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason})

        @staticmethod
        def _parse_head(raw: bytes, request: httpx.Request) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
            lines = raw[:-4].split(b"\r\n")
            if len(lines) - 1 > MAX_HEADERS:
                raise httpx.RemoteProtocolError(f"the server sent more than {MAX_HEADERS} headers", request=request)
            parts = lines[0].split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
                raise httpx.RemoteProtocolError(f"the server did not answer in HTTP/1.1 ({lines[0][:40]!r})",
                                                request=request)
            headers = []
            for line in lines[1:]:
                name, sep, value = line.partition(b":")
                if not sep or not name or name != name.strip():
                    raise httpx.RemoteProtocolError("the server sent a malformed header line", request=request)
                headers.append((name, value.strip()))
            return int(parts[1]), parts[2] if len(parts) > 2 else b"", headers

    return LeanTransport



class _Stale(Exception):
    """A kept-alive connection turned out closed before any byte of the response came."""


# --- SDK clients shared across runs ----------------------------------------------------------------

_shared: dict[Hashable, tuple[Any, Any]] = {}
#: the most shared clients kept (the oldest is forgotten first; its connections close with their runs)
MAX_SHARED_CLIENTS = 64


def shared_client(key: Hashable, make: Callable[[Any], Any], default_http_client: Callable[..., Any] | None = None) -> Any:
    """The SDK client for ``key`` (everything the client is made of) over :class:`LeanTransport`, made by
    ``make(http_client)`` once per process, whatever the event loop.  ``default_http_client`` is the SDK's
    httpx client class (its defaults: redirects, limits)."""
    with _lock:
        found = _shared.get(key)
    if found is not None:
        return found[0]
    if default_http_client is None:
        default_http_client = httpx_module().AsyncClient
    base = next((c for c in getattr(default_http_client, "__mro__", ()) if c.__name__ == "AsyncClient"), None)
    hx = sys.modules.get(base.__module__.split(".")[0]) if base is not None else None
    transport = lean_transport_type(hx)()
    client = make(default_http_client(transport=transport, trust_env=False))
    with _lock:
        if key not in _shared:
            while len(_shared) >= MAX_SHARED_CLIENTS:
                del _shared[next(iter(_shared))]
            _shared[key] = (client, transport)
        return _shared[key][0]


def release_loop(key: Hashable) -> int:
    """The running event loop is done with ``key``'s shared client: close its idle connections of this loop."""
    with _lock:
        found = _shared.get(key)
    return found[1].close_loop() if found is not None else 0


def clear_shared_clients() -> None:
    """Forget every shared client (tests)."""
    with _lock:
        _shared.clear()
