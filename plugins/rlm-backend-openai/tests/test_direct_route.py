"""The OpenAI backend's direct route (``rlm_backend_openai.backend._DirectRoute``): a non-streamed call after the
SDK's first one goes straight onto the lean transport with the head the SDK built.  What goes on the wire and what
an answer becomes must be what the SDK's own ``post`` gives: the first call of a fresh client still goes through the
SDK (it looks up its platform headers then), so each test compares that call with the direct ones after it."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
from rlm.backend import LLMRequest
from rlm.types import Message
from rlm_backend_openai import backend as openai_backend
from rlm_backend_openai.backend import OpenAIBackend
from rlm_testing.backend_plugin_suite import fast_backend

REQUEST = LLMRequest(model="gpt-4o-mini", messages=[Message.user("hi")])


def completion(text: str) -> bytes:
    return (b'{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
            b'"message":{"role":"assistant","content":"%s"},"finish_reason":"stop"}]}' % text.encode())


def response(body: bytes, *, status: bytes = b"200 OK", content_type: bytes = b"application/json",
             extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s\r\n"
            % (status, content_type, len(body), extra)) + body


pytestmark = pytest.mark.usefixtures("fresh_http_clients")


class Recorder:
    """A keep-alive HTTP/1.1 server on 127.0.0.1 answering the n-th request (over all connections) with
    ``answers[n]`` (bytes, or None: close the connection without answering); it keeps each request's raw head."""

    def __init__(self, answers: list[bytes | None]) -> None:
        self.answers = answers
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/v1"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), 0)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                body, buffer = buffer[:length], buffer[length:]
                with self.lock:
                    index = len(self.heads)
                    self.heads.append(head)
                    self.bodies.append(body)
                answer = self.answers[index] if index < len(self.answers) else None
                if answer is None:
                    return
                conn.sendall(answer)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def recorder() -> Iterator[Callable[[list[bytes | None]], Recorder]]:
    made: list[Recorder] = []

    def start(answers: list[bytes | None]) -> Recorder:
        made.append(Recorder(answers))
        return made[-1]

    yield start
    for server in made:
        server.close()


def _backend(server: Recorder, **settings) -> OpenAIBackend:
    class Server:
        def base_url(self, protocol: str) -> str:
            return server.base_url

    return fast_backend(OpenAIBackend, Server(), **settings)


def _calls(backend: OpenAIBackend, count: int) -> list[str]:
    """``count`` calls in one event loop: each answer's text, or the error's class name and message."""
    async def go():
        out = []
        for _ in range(count):
            try:
                out.append((await backend.complete(REQUEST)).message.text)
            except Exception as exc:  # noqa: BLE001
                out.append(f"{type(exc).__name__}: {exc}")
        await backend.aclose()
        return out

    return asyncio.run(go())


def test_a_direct_call_sends_the_very_bytes_the_sdk_sends(recorder):
    server = recorder([response(completion("one")), response(completion("two")), response(completion("three"))])
    backend = _backend(server)
    sent = []
    original = openai_backend._DirectRoute.post

    async def counted(self, body):
        sent.append(body)
        return await original(self, body)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(openai_backend._DirectRoute, "post", counted)
        assert _calls(backend, 3) == ["one", "two", "three"]
    assert len(sent) == 2  # the first call went through the SDK, the two after it directly
    assert server.heads[0] == server.heads[1] == server.heads[2]  # same head, byte for byte (auth, SDK headers)
    assert server.bodies[0] == server.bodies[1] == server.bodies[2] == sent[0]
    assert b"authorization: bearer" in server.heads[1].lower()
    assert server.heads[1].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")


def test_direct_answers_read_as_the_sdk_reads_them(recorder):
    html = b"<html><body>not an API</body></html>"
    server = recorder([
        response(completion("warm")),
        response(gzip.compress(completion("zipped")), extra=b"content-encoding: gzip\r\n"),
        response(completion("cookie"), extra=b"set-cookie: session=abc; Path=/\r\n"),
        response(completion("with cookie")),
        response(b"", status=b"307 Temporary Redirect",
                 extra=b"location: /v1/chat/completions\r\n"),
        response(completion("redirected")),
        response(html, content_type=b"text/html"),
        response(b'{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}',
                 status=b"429 Too Many Requests"),
    ])
    backend = _backend(server, max_retries=0)
    answers = _calls(backend, 7)
    assert answers[:5] == ["warm", "zipped", "cookie", "with cookie", "redirected"]
    assert b"cookie: session=abc" in server.heads[3].lower()  # the jar kept what the server set
    assert server.heads[5] == server.heads[4]  # a redirect: the SDK's own path sent the same request again
    assert answers[5].startswith("ProviderUnavailableError") and "HTML" in answers[5]
    assert answers[6].startswith("RateLimitError") and "slow down" in answers[6]


def test_a_dropped_connection_is_the_same_error_either_way(recorder):
    server = recorder([None, response(completion("ok")), None])
    backend = _backend(server, max_retries=0)
    first, ok, direct = _calls(backend, 3)
    assert ok == "ok"
    assert first.startswith("ProviderUnavailableError")
    assert direct == first  # the SDK's first call and a direct one fail with the same error and message


def test_the_sdk_sends_where_the_route_cannot(recorder):
    """A client with anything that changes a request per call (here: SDK retries on) never goes direct."""
    server = recorder([response(completion("one")), response(completion("two"))])
    backend = _backend(server)

    async def go():
        client = backend.client()
        client.max_retries = 1
        out = [(await backend.complete(REQUEST)).message.text for _ in range(2)]
        route = client._rlm_direct
        await backend.aclose()
        return out, route

    out, route = asyncio.run(go())
    assert out == ["one", "two"] and route is None


def test_rate_limits_and_errors_keep_their_kind_on_the_direct_route(recorder):
    server = recorder([
        response(completion("warm")),
        response(b'{"error":{"message":"bad key","type":"invalid_request_error","code":"invalid_api_key"}}',
                 status=b"401 Unauthorized"),
        response(b'{"error":{"message":"boom","type":"server_error"}}', status=b"500 Internal Server Error"),
    ])
    answers = _calls(_backend(server, max_retries=0), 3)
    assert answers[0] == "warm"
    assert answers[1].startswith("AuthenticationError") and "bad key" in answers[1]
    assert answers[2].startswith("ProviderUnavailableError")
