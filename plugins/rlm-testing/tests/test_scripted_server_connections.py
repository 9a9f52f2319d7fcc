"""The scripted server's HTTP layer (rlm_testing.serving): hundreds of connections at once, the listen backlog,
and the HTTP/1.1 details a hand-written client may use.  No timing is asserted; waits have generous
fail-safe limits only."""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

import pytest
from rlm_testing.server import Reply, ScriptedLLMServer
from rlm_testing.serving import LISTEN_BACKLOG

BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}).encode()


def request_bytes(body: bytes = BODY, *, extra: bytes = b"", method: bytes = b"POST",
                  version: bytes = b"HTTP/1.1") -> bytes:
    return (b"%s /v1/chat/completions %s\r\nHost: x\r\ncontent-type: application/json\r\n%scontent-length: %d\r\n\r\n"
            % (method, version, extra, len(body))) + body


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of one content-length response."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection; received {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk
        rest += chunk
    return int(lines[0].split()[1]), headers, rest[:length]


def read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.fixture
def server() -> Any:
    with ScriptedLLMServer() as s:
        yield s


def test_the_listen_backlog_queues_300_connections_while_the_server_is_busy() -> None:
    """While the serving loop is held (a script function blocks it, which real scripts must not do), 300 clients
    connect: the kernel queues them all (a backlog of 128 would drop the SYNs past it), and all are answered."""
    release = threading.Event()

    def script(request: Any) -> Reply:
        if request.index == 0:
            release.wait(60)
        return Reply.text(f"answer {request.index}")

    assert LISTEN_BACKLOG >= 300
    with ScriptedLLMServer(script) as server:
        first = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        first.sendall(request_bytes())
        server.wait_for_requests(1, timeout=30)  # the loop is now held in the script function
        clients = []
        try:
            for _ in range(300):  # a connect past a full backlog would hang until its timeout and fail the test
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
                clients.append(sock)
                sock.sendall(request_bytes())
            release.set()
            answers = [read_response(sock) for sock in [first, *clients]]
        finally:
            release.set()
            for sock in [first, *clients]:
                sock.close()
    assert [status for status, _, _ in answers] == [200] * 301
    texts = {json.loads(body)["choices"][0]["message"]["content"] for _, _, body in answers}
    assert texts == {f"answer {i}" for i in range(301)}


def test_250_slow_replies_wait_at_once_without_a_thread_each(server: ScriptedLLMServer) -> None:
    server.script(lambda request: Reply.slow(60, Reply.text("late")))
    threads_before = threading.active_count()
    clients = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(250)]
    try:
        for sock in clients:
            sock.sendall(request_bytes())
        server.wait_for_requests(250, timeout=60)  # every request arrived while the others still wait
        assert server.open_connections == 250
        assert threading.active_count() <= threads_before + 2  # one loop thread serves them all
        server.stop()  # the waiting replies are abandoned: each client sees its connection closed
        assert all(read_to_eof(sock) == b"" for sock in clients)
    finally:
        for sock in clients:
            sock.close()
    assert server.open_connections == 0


def test_keep_alive_close_and_http_1_0(server: ScriptedLLMServer) -> None:
    server.script([Reply.text("a"), Reply.text("b"), Reply.text("c")])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request_bytes())
        assert read_response(sock)[0] == 200  # kept alive: a second request on the same connection
        sock.sendall(request_bytes(extra=b"connection: close\r\n"))
        status, headers, _ = read_response(sock)
        assert status == 200 and headers["connection"] == "close"
        assert read_to_eof(sock) == b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request_bytes(version=b"HTTP/1.0"))
        assert read_response(sock)[0] == 200
        assert read_to_eof(sock) == b""  # HTTP/1.0 without keep-alive: closed after the reply


def test_expect_100_continue_and_a_chunked_request_body(server: ScriptedLLMServer) -> None:
    server.script([Reply.text("a"), Reply.text("b")])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request_bytes(b"", extra=b"expect: 100-continue\r\n").replace(b"content-length: 0",
                                                                                   b"content-length: %d" % len(BODY)))
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += sock.recv(1)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(BODY)
        assert read_response(sock)[0] == 200
        half = len(BODY) // 2
        chunked = b"%x\r\n%s\r\n%x;ext=1\r\n%s\r\n0\r\n\r\n" % (half, BODY[:half], len(BODY) - half, BODY[half:])
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n\r\n" + chunked)
        assert read_response(sock)[0] == 200
    assert [r.body for r in server.requests] == [json.loads(BODY)] * 2


@pytest.mark.parametrize(("raw", "status"), [
    (b"GARBAGE\r\n\r\n", 400),
    (b"PUT /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    (b"POST /v1/chat/completions HTTP/1.1\r\nbad header line\r\n\r\n", 400),
    (b"POST /v1/chat/completions HTTP/1.1\r\ncontent-length: nope\r\n\r\n", 400),
    (b"POST /v1/chat/completions HTTP/1.1\r\nx-big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
])
def test_a_bad_request_is_answered_with_its_status_and_closed(server: ScriptedLLMServer, raw: bytes,
                                                                status: int) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw)
        assert read_response(sock)[0] == status
        assert read_to_eof(sock) == b""
    assert server.requests == []


def test_server_and_date_headers(server: ScriptedLLMServer) -> None:
    server.script([Reply.text("a")])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request_bytes())
        _, headers, _ = read_response(sock)
    assert headers["server"].startswith("rlm-testing-scripted-llm/") and headers["date"].endswith("GMT")
