"""The scripted server's fault steps over raw HTTP: truncated, stalled, hang, html, empty; the client address."""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any

import pytest
from rlm.sse import parse as sse_events
from rlm_testing.server import Reply, ScriptedLLMServer

OPENAI = "/v1/chat/completions"
ANTHROPIC = "/v1/messages"


@pytest.fixture
def server() -> Any:
    with ScriptedLLMServer() as s:
        yield s


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], **extra}


def msgs(**extra: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}], **extra}


def exchange(server: ScriptedLLMServer, path: str, body: Any, *, timeout: float = 5) -> tuple[int, str, bytes]:
    """(status, content-type, body) read to the end of the response; the connection is closed after."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        headers = {"content-type": "application/json"}
        if path == ANTHROPIC:
            headers["anthropic-version"] = "2023-06-01"
        conn.request("POST", path, body=json.dumps(body), headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("content-type") or "", resp.read()
    finally:
        conn.close()


def events(raw: bytes) -> list[tuple[str | None, Any]]:
    """(event name, parsed data) of each SSE event (read by :mod:`rlm.sse`); data ``[DONE]`` stays a string."""
    return [(e.event, e.data if e.data == "[DONE]" else json.loads(e.data)) for e in sse_events(raw)]


# --- truncated ----------------------------------------------------------------------


def test_openai_stream_truncated_before_the_finish(server: ScriptedLLMServer) -> None:
    server.script([Reply.truncated("Half of it", keep=None)])
    status, ctype, raw = exchange(server, OPENAI, chat(stream=True, stream_options={"include_usage": True}))
    assert status == 200 and ctype.startswith("text/event-stream")
    got = events(raw)  # the chunked response itself ended cleanly: http.client read it to the end
    assert (None, "[DONE]") not in got
    assert all(data["choices"] and data["choices"][0]["finish_reason"] is None for _, data in got)
    assert "".join(d["choices"][0]["delta"].get("content") or "" for _, d in got) == "Half of it"


def test_anthropic_stream_truncated_before_message_stop(server: ScriptedLLMServer) -> None:
    server.script([Reply.truncated("Half of it")])
    status, _, raw = exchange(server, ANTHROPIC, msgs(stream=True))
    names = [name for name, _ in events(raw)]
    assert status == 200 and names[0] == "message_start" and names[-1] == "content_block_stop"
    assert "message_delta" not in names and "message_stop" not in names


@pytest.mark.parametrize(("path", "body", "first"), [(OPENAI, chat(stream=True), None),
                                                      (ANTHROPIC, msgs(stream=True), "message_start")])
def test_truncated_keep_sends_that_many_events(server: ScriptedLLMServer, path: str, body: Any, first: Any) -> None:
    server.script([Reply.truncated("", keep=1)])
    _, _, raw = exchange(server, path, body)
    (only,) = events(raw)
    assert only[0] == first


@pytest.mark.parametrize(("path", "body"), [(OPENAI, chat()), (ANTHROPIC, msgs())])
def test_truncated_body_is_half_of_the_json(server: ScriptedLLMServer, path: str, body: Any) -> None:
    server.script([Reply.truncated("The answer is 42.")])
    status, ctype, raw = exchange(server, path, body)
    assert status == 200 and ctype == "application/json"
    with pytest.raises(ValueError):
        json.loads(raw)
    assert raw.startswith(b'{"id":')


# --- stalled and hang ---------------------------------------------------------------------


def test_stalled_stream_sends_its_start_then_nothing(server: ScriptedLLMServer) -> None:
    server.script([Reply.stalled("Half of it")])
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=0.5)
    try:
        conn.request("POST", OPENAI, body=json.dumps(chat(stream=True)), headers={"content-type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        first = resp.read1(1 << 16)
        assert b"Half" in first or b"assistant" in first
        with pytest.raises(TimeoutError):
            while True:
                if not resp.read1(1 << 16):
                    pytest.fail("the stalled stream ended")
    finally:
        conn.close()


def test_stalled_body_promises_more_than_it_sends(server: ScriptedLLMServer) -> None:
    server.script([Reply.stalled("The answer is 42.")])
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=0.5)
    try:
        conn.request("POST", OPENAI, body=json.dumps(chat()), headers={"content-type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200 and int(resp.getheader("content-length")) > 0
        with pytest.raises(TimeoutError):
            resp.read()
    finally:
        conn.close()


def test_hang_sends_nothing_until_the_client_gives_up(server: ScriptedLLMServer) -> None:
    server.script([Reply.hang(), Reply.text("after the hang")])
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        exchange(server, OPENAI, chat(), timeout=0.4)
    assert 0.35 < time.monotonic() - started < 3
    assert exchange(server, OPENAI, chat())[0] == 200  # the server goes on serving

    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and server.open_connections:
        time.sleep(0.05)
    assert not server.open_connections, "the hung request's connection was kept after the client left"


def test_stop_releases_a_hung_request() -> None:
    server = ScriptedLLMServer([Reply.hang()]).start()
    sock = socket.create_connection(("127.0.0.1", server.port))
    body = json.dumps(chat()).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                 b"content-length: %d\r\n\r\n%s" % (len(body), body))
    server.wait_for_requests(1)
    started = time.monotonic()
    server.stop()
    sock.settimeout(3)
    assert sock.recv(100) == b"", "the hung request is closed when the server stops"
    sock.close()
    assert time.monotonic() - started < 3


# --- html and empty -----------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_html_page_whatever_was_asked(server: ScriptedLLMServer, stream: bool) -> None:
    server.script([Reply.html(), Reply.html(502, "<html><title>Bad Gateway</title></html>")])
    status, ctype, raw = exchange(server, OPENAI, chat(stream=stream))
    assert status == 200 and ctype.startswith("text/html") and b"<title>Sign in</title>" in raw
    status, ctype, raw = exchange(server, ANTHROPIC, msgs(stream=stream))
    assert status == 502 and raw == b"<html><title>Bad Gateway</title></html>"


def test_empty_answers(server: ScriptedLLMServer) -> None:
    server.script([Reply.empty()] * 4)
    doc = json.loads(exchange(server, OPENAI, chat())[2])
    message = doc["choices"][0]["message"]
    assert message["content"] is None and "tool_calls" not in message
    assert doc["choices"][0]["finish_reason"] == "stop"
    assert json.loads(exchange(server, ANTHROPIC, msgs())[2])["content"] == []
    streamed = events(exchange(server, OPENAI, chat(stream=True))[2])
    assert not any((d.get("choices") or [{}])[0].get("delta", {}).get("content") for _, d in streamed[:-1])
    assert streamed[-1] == (None, "[DONE]")
    names = [name for name, _ in events(exchange(server, ANTHROPIC, msgs(stream=True))[2])]
    assert names == ["message_start", "message_delta", "message_stop"]


def test_fault_steps_from_their_json_form() -> None:
    assert Reply.from_obj({"truncated": "half", "keep": 2}) == Reply.truncated("half", keep=2)
    assert Reply.from_obj({"stalled": "half"}) == Reply.stalled("half")
    assert Reply.from_obj({"hang": True}) == Reply.hang()
    assert Reply.from_obj({"html": True}) == Reply.html()
    assert Reply.from_obj({"html": 502, "body": "<p>x</p>"}) == Reply.html(502, "<p>x</p>")
    assert Reply.from_obj({"empty": True}) == Reply.empty()
    with pytest.raises(ValueError):
        Reply.truncated("x", keep=-1)


def test_the_client_address_tells_connections_apart(server: ScriptedLLMServer) -> None:
    server.script([Reply.text("one"), Reply.text("two"), Reply.text("three")])
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        for _ in range(2):
            conn.request("POST", OPENAI, body=json.dumps(chat()), headers={"content-type": "application/json"})
            conn.getresponse().read()
    finally:
        conn.close()
    exchange(server, OPENAI, chat())
    first, second, third = (r.client for r in server.requests)
    assert first == second != third and first[0] == "127.0.0.1"
