"""The lean HTTP/1.1 transport (rlm_backend_kit.http_transport) under the real openai SDK: against the scripted
server, against a raw socket server that misbehaves, and the SDK client and SSL context shared across runs."""

from __future__ import annotations

import asyncio
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterator

import pytest
from rlm.backend import LLMRequest
from rlm.errors import ProviderUnavailableError
from rlm.types import Message
from rlm_backend_kit import http_transport
from rlm_backend_openai.backend import OpenAIBackend
from rlm_testing.backend_plugin_suite import fast_backend
from rlm_testing.server import Reply

REQUEST = LLMRequest(model="gpt-4o-mini", messages=[Message.user("hi")])


pytestmark = pytest.mark.usefixtures("fresh_http_clients")


def _transport(backend: OpenAIBackend):
    return backend.client()._client._transport


def test_the_sdk_goes_through_the_lean_transport_and_keeps_the_connection_alive(scripted_llm):
    scripted_llm.script([Reply.text("one"), Reply.text("two"), Reply.text("three")])
    backend = fast_backend(OpenAIBackend, scripted_llm)

    async def go():
        answers = [(await backend.complete(REQUEST)).message.text for _ in range(3)]
        transport = _transport(backend)
        await backend.aclose()
        return answers, transport

    answers, transport = asyncio.run(go())
    assert answers == ["one", "two", "three"]
    assert type(transport).__name__ == "LeanTransport" and transport.opened == 1
    assert len({r.client for r in scripted_llm.requests}) == 1  # one kept-alive connection


def test_streaming_through_the_lean_transport(scripted_llm):
    scripted_llm.script([Reply.text("hello world"), Reply.text("again")])
    backend = fast_backend(OpenAIBackend, scripted_llm)

    async def go():
        texts = []
        for _ in range(2):
            events = [e async for e in backend.stream(REQUEST)]
            texts.append("".join(getattr(e, "text", "") for e in events[:-1]))
        transport = _transport(backend)
        await backend.aclose()
        return texts, transport

    texts, transport = asyncio.run(go())
    assert texts == ["hello world", "again"] and transport.opened == 1


def test_error_statuses_map_as_before(scripted_llm):
    scripted_llm.script([Reply.rate_limited(0.01), Reply.server_error(), Reply.invalid_api_key()])
    backend = fast_backend(OpenAIBackend, scripted_llm, max_retries=0)

    async def go():
        errors = []
        for _ in range(3):
            try:
                await backend.complete(REQUEST)
            except Exception as exc:  # noqa: BLE001
                errors.append(type(exc).__name__)
        await backend.aclose()
        return errors

    assert asyncio.run(go()) == ["RateLimitError", "ProviderUnavailableError", "AuthenticationError"]


def test_a_dropped_connection_is_retried_on_a_fresh_one(scripted_llm):
    scripted_llm.script([Reply.drop(), Reply.drop(), Reply.text("ok")])
    backend = fast_backend(OpenAIBackend, scripted_llm, max_retries=3)

    async def go():
        try:
            return (await backend.complete(REQUEST)).message.text
        finally:
            await backend.aclose()

    assert asyncio.run(go()) == "ok"


# --- a raw server that misbehaves ------------------------------------------------------------------

BODY = (b'{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
        b'"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}')


def ok_response(extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n"
            % (len(BODY), extra)) + BODY


def _read_request(conn: socket.socket) -> bool:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0)
    while len(rest) < length:
        rest += conn.recv(65536)
    return True


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket, int], None]], str]]:
    """``start(handler)``: a server on 127.0.0.1 calling ``handler(conn, index)`` per connection; its base_url."""
    listeners: list[socket.socket] = []

    def start(handler: Callable[[socket.socket, int], None]) -> str:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listeners.append(listener)

        def serve() -> None:
            index = 0
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                threading.Thread(target=_handle, args=(handler, conn, index), daemon=True).start()
                index += 1

        threading.Thread(target=serve, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}/v1"

    yield start
    for listener in listeners:
        listener.close()


def _handle(handler: Callable[[socket.socket, int], None], conn: socket.socket, index: int) -> None:
    try:
        handler(conn, index)
    except OSError:
        pass
    finally:
        conn.close()


def _complete(base_url: str, **settings) -> str:
    class Server:
        def base_url(self, protocol: str) -> str:
            return base_url

    backend = fast_backend(OpenAIBackend, Server(), **settings)

    async def go():
        try:
            return (await backend.complete(REQUEST)).message.text
        finally:
            await backend.aclose()

    return asyncio.run(go())


def test_oversized_headers_are_a_clear_error_not_a_hang(raw_server):
    def handler(conn: socket.socket, index: int) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\n" + b"x-junk: " + b"a" * (http_transport.MAX_HEADER_BYTES + 10) + b"\r\n\r\n")

    with pytest.raises(ProviderUnavailableError) as info:
        _complete(raw_server(handler), max_retries=0)
    assert "header" in str(info.value).lower()


def test_too_many_headers_are_a_clear_error(raw_server):
    def handler(conn: socket.socket, index: int) -> None:
        _read_request(conn)
        conn.sendall(ok_response(b"".join(b"x-h%d: v\r\n" % i for i in range(http_transport.MAX_HEADERS + 5))))

    with pytest.raises(ProviderUnavailableError) as info:
        _complete(raw_server(handler), max_retries=0)
    assert "headers" in str(info.value)


def test_an_oversized_body_is_a_clear_error(raw_server, monkeypatch):
    monkeypatch.setattr(http_transport, "MAX_BODY_BYTES", 1000)

    def handler(conn: socket.socket, index: int) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 5000\r\n\r\n"
                     + b" " * 5000)

    with pytest.raises(ProviderUnavailableError) as info:
        _complete(raw_server(handler), max_retries=0)
    assert "larger than 1000 bytes" in str(info.value)


def test_a_body_cut_short_is_an_error_then_retried(raw_server):
    def handler(conn: socket.socket, index: int) -> None:
        _read_request(conn)
        response = ok_response()
        conn.sendall(response[: len(response) - 20] if index == 0 else response)

    assert _complete(raw_server(handler), max_retries=2) == "ok"


def test_a_kept_alive_connection_closed_by_the_server_is_replaced(raw_server):
    def handler(conn: socket.socket, index: int) -> None:
        # answers one request with keep-alive, then closes without saying so
        if _read_request(conn):
            conn.sendall(ok_response())

    base_url = raw_server(handler)

    class Server:
        def base_url(self, protocol: str) -> str:
            return base_url

    backend = fast_backend(OpenAIBackend, Server(), max_retries=0)

    async def go():
        texts = []
        for _ in range(3):
            texts.append((await backend.complete(REQUEST)).message.text)
            await asyncio.sleep(0.05)  # the server's close arrives
        await backend.aclose()
        return texts

    assert asyncio.run(go()) == ["ok", "ok", "ok"]


def test_a_silent_server_times_out(raw_server):
    stop = threading.Event()

    def handler(conn: socket.socket, index: int) -> None:
        _read_request(conn)
        stop.wait(10)

    try:
        with pytest.raises(ProviderUnavailableError) as info:
            _complete(raw_server(handler), max_retries=0, timeout=0.3)
    finally:
        stop.set()
    assert "did not answer" in str(info.value)


# --- shared across runs --------------------------------------------------------------------------


def _with_unused_environment():
    from rlm.hookspecs import hookimpl
    from rlm.plugins import create_plugin_manager

    def never_started(**_kwargs):
        raise AssertionError("the direct path started an environment")

    class UnusedEnvironment:
        @hookimpl
        def rlm_register_environments(self, register):
            register("unused", never_started, description="never started (tests only)")

    pm = create_plugin_manager()
    pm.register(UnusedEnvironment())
    return pm


def test_completion_sync_three_times_builds_one_ssl_context_and_one_client(scripted_llm, monkeypatch):
    import openai
    from rlm import RLM

    http_transport._ssl_contexts.clear()
    counts = {"ssl": 0, "clients": 0}
    real_new, real_init = ssl.SSLContext.__new__, openai.AsyncOpenAI.__init__

    def counting_new(cls, *args, **kwargs):
        counts["ssl"] += 1
        return real_new(cls, *args, **kwargs)

    def counting_init(self, *args, **kwargs):
        counts["clients"] += 1
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "__new__", counting_new)
    monkeypatch.setattr(openai.AsyncOpenAI, "__init__", counting_init)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(3):
            scripted_llm.script([Reply.text(f"answer {index}")])
            # The direct path: one model call, so the test needs only the kernel and this plugin (the stub
            # environment satisfies the run's set-up and is never started).
            rlm = RLM(model="openai/gpt-4o-mini", api_base=scripted_llm.openai_base_url, log_dir=tmp,
                      environment="unused", direct_below_tokens=10_000, plugin_manager=_with_unused_environment())
            result = rlm.completion_sync("go")
            assert result.success, result.error
            assert (result.response, result.path) == (f"answer {index}", "direct")
    assert counts["clients"] == 1
    assert counts["ssl"] <= 1  # http:// needs none; at most the one shared context


def test_the_shared_context_is_one_per_process():
    assert http_transport.shared_ssl_context() is http_transport.shared_ssl_context()


def test_a_proxy_in_the_environment_falls_back_to_httpx(scripted_llm, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    assert not http_transport.lean_ok("https://api.openai.com/v1")
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setenv("RLM_HTTP_TRANSPORT", "httpx")
    scripted_llm.script([Reply.text("via httpx")])
    backend = fast_backend(OpenAIBackend, scripted_llm)

    async def go():
        try:
            text = (await backend.complete(REQUEST)).message.text
            return text, type(_transport(backend)).__name__
        finally:
            await backend.aclose()

    text, transport = asyncio.run(go())
    assert text == "via httpx" and transport != "LeanTransport"



def test_informational_responses_are_skipped_but_bounded(raw_server):
    def one_continue(conn: socket.socket, index: int) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" + ok_response())

    assert _complete(raw_server(one_continue), max_retries=0) == "ok"

    def endless(conn: socket.socket, index: int) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" * 50)

    with pytest.raises(ProviderUnavailableError) as info:
        _complete(raw_server(endless), max_retries=0)
    assert "informational" in str(info.value)


def test_a_chunked_body_with_a_bad_chunk_size_is_an_error(raw_server):
    def handler(conn: socket.socket, index: int) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
                     b"zz\r\n{}\r\n0\r\n\r\n")

    with pytest.raises(ProviderUnavailableError) as info:
        _complete(raw_server(handler), max_retries=0)
    assert "chunk" in str(info.value)
