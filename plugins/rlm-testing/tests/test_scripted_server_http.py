"""The scripted LLM server over raw HTTP (urllib / http.client): both protocols, SSE, errors, recording."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from rlm.sse import parse as sse_events
from rlm_testing.server import RecordedRequest, Reply, ScriptedLLMServer, ScriptedToolCall, estimate_tokens

OPENAI = "/v1/chat/completions"
ANTHROPIC = "/v1/messages"


def post(
    server: ScriptedLLMServer, path: str, body: Any, *, headers: dict[str, str] | None = None, timeout: float = 5
) -> tuple[int, dict[str, str], bytes]:
    """POST JSON; (status, lower-cased headers, body bytes), errors included."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(
        server.url + path, data=data, headers={"content-type": "application/json", **(headers or {})}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], **extra}


def msgs(**extra: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}], **extra}


def sse(raw: bytes) -> list[tuple[str | None, Any]]:
    """(event name, parsed data) of each SSE event (read by :mod:`rlm.sse`); data ``[DONE]`` stays a string."""
    return [(e.event, e.data if e.data == "[DONE]" else json.loads(e.data)) for e in sse_events(raw)]


@pytest.fixture
def server() -> Any:
    with ScriptedLLMServer() as s:
        yield s


# --- OpenAI -----------------------------------------------------------------------


def test_openai_text(server: ScriptedLLMServer) -> None:
    server.script([Reply.text("Hello!", input_tokens=11, output_tokens=3)])
    status, headers, raw = post(server, OPENAI, chat())
    assert status == 200 and headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(raw)
    doc = json.loads(raw)
    assert doc["object"] == "chat.completion" and doc["model"] == "gpt-4o-mini"
    (choice,) = doc["choices"]
    assert choice["message"] == {"role": "assistant", "content": "Hello!", "refusal": None}
    assert choice["finish_reason"] == "stop"
    assert doc["usage"] == {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}


def test_default_usage_is_a_deterministic_estimate(server: ScriptedLLMServer) -> None:
    server.script([Reply.text("twelve chars"), Reply.text("twelve chars")])
    usages = [json.loads(post(server, OPENAI, chat())[2])["usage"] for _ in range(2)]
    assert usages[0] == usages[1]
    assert usages[0]["completion_tokens"] == estimate_tokens("twelve chars") == 3
    assert usages[0]["prompt_tokens"] >= 1


def test_openai_tool_calls(server: ScriptedLLMServer) -> None:
    server.script([Reply.tool_calls(("get_weather", {"city": "Paris"}), ("get_time", {"tz": "UTC"}, "call_fixed"))])
    doc = json.loads(post(server, OPENAI, chat(tools=[{"type": "function", "function": {"name": "get_weather"}}]))[2])
    (choice,) = doc["choices"]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None
    first, second = message["tool_calls"]
    assert first["type"] == "function" and first["function"]["name"] == "get_weather"
    assert json.loads(first["function"]["arguments"]) == {"city": "Paris"}
    assert second["id"] == "call_fixed" and json.loads(second["function"]["arguments"]) == {"tz": "UTC"}
    assert first["id"] != second["id"] and first["id"].startswith("call_")


def test_openai_stream_text_with_usage(server: ScriptedLLMServer) -> None:
    server.script([Reply.text("one two three", input_tokens=5, output_tokens=3)])
    status, headers, raw = post(server, OPENAI, chat(stream=True, stream_options={"include_usage": True}))
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = sse(raw)
    assert events[-1] == (None, "[DONE]")
    chunks = [data for _, data in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    pieces = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert [p for p in pieces if p] == ["one", " two", " three"]
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish == ["stop"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 3,
        "total_tokens": 8,
    }
    assert all(c["usage"] is None for c in chunks[:-1])


def test_openai_stream_without_include_usage_has_no_usage_chunk(server: ScriptedLLMServer) -> None:
    server.script([Reply.text("hi there")])
    chunks = [d for _, d in sse(post(server, OPENAI, chat(stream=True))[2])[:-1]]
    assert all("usage" not in c for c in chunks)
    assert all(c["choices"] for c in chunks)


def test_openai_stream_tool_calls_arrive_in_chunks(server: ScriptedLLMServer) -> None:
    args = {"city": "Paris", "unit": "celsius", "days": 3}
    server.script([Reply.tool_calls(("forecast", args), ("get_time", {"city": "Tokyo"}))])
    chunks = [d for _, d in sse(post(server, OPENAI, chat(stream=True))[2])[:-1]]
    calls: dict[int, dict[str, Any]] = {}
    pieces: dict[int, int] = {}
    for c in chunks:
        for tc in c["choices"][0]["delta"].get("tool_calls") or []:
            slot = calls.setdefault(tc["index"], {"id": None, "name": None, "arguments": ""})
            if "id" in tc:
                assert slot["id"] is None, "id only in the first delta of a call"
                slot["id"], slot["name"] = tc["id"], tc["function"]["name"]
            if tc["function"].get("arguments"):
                pieces[tc["index"]] = pieces.get(tc["index"], 0) + 1
                slot["arguments"] += tc["function"]["arguments"]
    assert [calls[i]["name"] for i in sorted(calls)] == ["forecast", "get_time"]
    assert json.loads(calls[0]["arguments"]) == args and json.loads(calls[1]["arguments"]) == {"city": "Tokyo"}
    assert pieces[0] >= 3 and pieces[1] >= 2, "arguments are split into several chunks"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_response_format_is_recorded_and_json_reply_is_text(server: ScriptedLLMServer) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    server.script([Reply.json({"a": 1})])
    rf = {"type": "json_schema", "json_schema": {"name": "thing", "schema": schema, "strict": True}}
    doc = json.loads(post(server, OPENAI, chat(response_format=rf))[2])
    assert json.loads(doc["choices"][0]["message"]["content"]) == {"a": 1}
    assert server.last_request.body["response_format"] == rf


def test_finish_length(server: ScriptedLLMServer) -> None:
    server.script([Reply.text("cut sho", finish="length"), Reply.text("cut sho", finish="length")])
    assert json.loads(post(server, OPENAI, chat())[2])["choices"][0]["finish_reason"] == "length"
    assert json.loads(post(server, ANTHROPIC, msgs())[2])["stop_reason"] == "max_tokens"


# --- Anthropic ----------------------------------------------------------------------


def test_anthropic_text(server: ScriptedLLMServer) -> None:
    server.script([Reply.text("Bonjour", input_tokens=7, output_tokens=2)])
    status, headers, raw = post(
        server, ANTHROPIC, msgs(), headers={"x-api-key": "k", "anthropic-version": "2023-06-01"}
    )
    assert status == 200 and headers["request-id"].startswith("req_")
    doc = json.loads(raw)
    assert doc["type"] == "message" and doc["role"] == "assistant" and doc["model"] == "claude-x"
    assert doc["content"] == [{"type": "text", "text": "Bonjour"}]
    assert doc["stop_reason"] == "end_turn" and doc["stop_sequence"] is None
    assert doc["usage"] == {"input_tokens": 7, "output_tokens": 2}
    assert server.last_request.protocol == "anthropic"


def test_anthropic_tool_use(server: ScriptedLLMServer) -> None:
    server.script([Reply.tool_calls(("get_weather", {"city": "Paris"}), ("get_time", {}), text="Checking.")])
    doc = json.loads(post(server, ANTHROPIC, msgs())[2])
    text, first, second = doc["content"]
    assert text == {"type": "text", "text": "Checking."}
    assert first["type"] == "tool_use" and first["name"] == "get_weather" and first["input"] == {"city": "Paris"}
    assert second["name"] == "get_time" and second["input"] == {}
    assert first["id"].startswith("toolu_") and first["id"] != second["id"]
    assert doc["stop_reason"] == "tool_use"


def test_anthropic_stream_event_sequence(server: ScriptedLLMServer) -> None:
    server.script(
        [Reply.tool_calls(("lookup", {"query": "rlm runtime"}), text="Let me look.", input_tokens=20, output_tokens=9)]
    )
    status, headers, raw = post(server, ANTHROPIC, msgs(stream=True))
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert headers.get("transfer-encoding") == "chunked"
    events = sse(raw)
    assert all(name == data["type"] for name, data in events), "event: names match data.type"
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["usage"]["input_tokens"] == 20 and start["stop_reason"] is None
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta" and d["index"] == 0)
    assert text == "Let me look."
    (tool_start,) = [d for n, d in events if n == "content_block_start" and d["index"] == 1]
    assert tool_start["content_block"]["type"] == "tool_use" and tool_start["content_block"]["name"] == "lookup"
    partial = [d["delta"]["partial_json"] for n, d in events if n == "content_block_delta" and d["index"] == 1]
    assert len(partial) >= 2 and json.loads("".join(partial)) == {"query": "rlm runtime"}
    assert [d["index"] for n, d in events if n == "content_block_stop"] == [0, 1]
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "tool_use" and delta["usage"]["output_tokens"] == 9


# --- errors ---------------------------------------------------------------------------

ERRORS = [
    # (step, status, OpenAI (type, code), Anthropic type, words in the message)
    (Reply.rate_limited(retry_after=1), 429, ("requests", "rate_limit_exceeded"), "rate_limit_error", "rate limit"),
    (Reply.server_error(), 500, ("server_error", None), "api_error", "error"),
    (Reply.invalid_api_key(), 401, ("invalid_request_error", "invalid_api_key"), "authentication_error", "key"),
    (Reply.model_not_found(), 404, ("invalid_request_error", "model_not_found"), "not_found_error", "model"),
    (
        Reply.context_too_long(),
        400,
        ("invalid_request_error", "context_length_exceeded"),
        "invalid_request_error",
        None,
    ),
    (Reply.overloaded(), 529, ("server_error", None), "overloaded_error", "overloaded"),
    (Reply.error(403), 403, ("invalid_request_error", "permission_denied"), "permission_error", None),
]


@pytest.mark.parametrize(("step", "status", "openai", "anthropic", "words"), ERRORS)
def test_errors_in_openai_shape(
    server: ScriptedLLMServer,
    step: Reply,
    status: int,
    openai: tuple[str, str | None],
    anthropic: str,
    words: str | None,
) -> None:
    server.script([step])
    got, headers, raw = post(server, OPENAI, chat(), headers={"authorization": "Bearer sk-test-1234567890"})
    assert got == status
    err = json.loads(raw)["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert (err["type"], err["code"]) == openai
    if words:
        assert words in err["message"].lower()
    if status == 400:
        assert "maximum context length" in err["message"] and err["param"] == "messages"
    if status == 404:
        assert "`gpt-4o-mini` does not exist" in err["message"]
    if status == 401:
        assert "sk-test-1234567890" not in err["message"], "the key is masked"
    assert headers["x-request-id"].startswith("req_")


@pytest.mark.parametrize(("step", "status", "openai", "anthropic", "words"), ERRORS)
def test_errors_in_anthropic_shape(
    server: ScriptedLLMServer,
    step: Reply,
    status: int,
    openai: tuple[str, str | None],
    anthropic: str,
    words: str | None,
) -> None:
    server.script([step])
    got, headers, raw = post(server, ANTHROPIC, msgs())
    assert got == status
    doc = json.loads(raw)
    assert doc["type"] == "error" and doc["error"]["type"] == anthropic
    if words:
        assert words in doc["error"]["message"].lower()
    if status == 400:
        assert doc["error"]["message"].startswith("prompt is too long")
    if status == 404:
        assert doc["error"]["message"] == "model: claude-x"
    assert headers["request-id"] == doc["request_id"]


def test_retry_after_headers(server: ScriptedLLMServer) -> None:
    server.script([Reply.rate_limited(retry_after=1), Reply.rate_limited(retry_after=0.25), Reply.rate_limited(None)])
    first = post(server, OPENAI, chat())[1]
    assert (first["retry-after"], first["retry-after-ms"]) == ("1", "1000")
    second = post(server, ANTHROPIC, msgs())[1]
    assert (second["retry-after"], second["retry-after-ms"]) == ("0.25", "250")
    assert "retry-after" not in post(server, OPENAI, chat())[1]


def test_custom_error_message_and_headers(server: ScriptedLLMServer) -> None:
    server.script([Reply.error(418, "I am a teapot", code="invalid_request", headers={"x-custom": "yes"})])
    status, headers, raw = post(server, OPENAI, chat())
    assert status == 418 and headers["x-custom"] == "yes"
    assert json.loads(raw)["error"]["message"] == "I am a teapot"


def test_slow_reply_and_client_timeout(server: ScriptedLLMServer) -> None:
    server.script([Reply.slow(0.3, then=Reply.text("late")), Reply.slow(2.0)])
    started = time.monotonic()
    assert json.loads(post(server, OPENAI, chat())[2])["choices"][0]["message"]["content"] == "late"
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        post(server, OPENAI, chat(), timeout=0.2)
    assert time.monotonic() - started < 1.5


def test_stop_releases_a_slow_reply_quickly() -> None:
    server = ScriptedLLMServer([Reply.slow(30)]).start()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            post(server, OPENAI, chat(), timeout=10)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    server.wait_for_requests(1)
    started = time.monotonic()
    server.stop()
    worker.join(5)
    assert time.monotonic() - started < 2 and not worker.is_alive()
    assert errors, "the abandoned request ends without an answer"


def test_latency_is_added_to_every_reply() -> None:
    with ScriptedLLMServer([Reply.text("a"), Reply.error(500)], latency=0.15) as server:
        for _ in range(2):
            started = time.monotonic()
            post(server, OPENAI, chat())
            assert time.monotonic() - started >= 0.15


def test_malformed_body(server: ScriptedLLMServer) -> None:
    server.script([Reply.malformed(), Reply.malformed(), Reply.malformed()])
    status, headers, raw = post(server, OPENAI, chat())
    assert status == 200 and headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)
    for path, body in ((OPENAI, chat(stream=True)), (ANTHROPIC, msgs(stream=True))):
        status, _, raw = post(server, path, body)
        assert status == 200
        with pytest.raises(json.JSONDecodeError):
            sse(raw)


def test_dropped_connection(server: ScriptedLLMServer) -> None:
    server.script([Reply.drop(), Reply.text("still alive")])
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError, urllib.error.URLError)):
        post(server, OPENAI, chat())
    assert json.loads(post(server, OPENAI, chat())[2])["choices"][0]["message"]["content"] == "still alive"


def test_script_exhausted(server: ScriptedLLMServer) -> None:
    server.script([Reply.text("only one")])
    post(server, OPENAI, chat())
    status, headers, raw = post(server, OPENAI, chat())
    assert status == 500 and headers["x-should-retry"] == "false"
    assert json.loads(raw)["error"]["message"] == "scripted LLM server: script exhausted after 1 requests"
    status, _, raw = post(server, ANTHROPIC, msgs())
    assert status == 500
    assert json.loads(raw)["error"]["message"] == "scripted LLM server: script exhausted after 1 requests"


def test_empty_script_is_exhausted_at_once(server: ScriptedLLMServer) -> None:
    status, _, raw = post(server, OPENAI, chat())
    assert status == 500 and "script exhausted after 0 requests" in raw.decode()


def test_default_reply_after_the_script() -> None:
    with ScriptedLLMServer([Reply.text("first")], default=Reply.text("again")) as server:
        texts = [json.loads(post(server, OPENAI, chat())[2])["choices"][0]["message"]["content"] for _ in range(3)]
    assert texts == ["first", "again", "again"]


# --- scripting ----------------------------------------------------------------------


def test_function_script_sees_the_request(server: ScriptedLLMServer) -> None:
    def answer(req: RecordedRequest) -> Any:
        last = req.messages[-1]["content"]
        if last == "stop":
            return None
        if last == "boom":
            raise RuntimeError("script bug")
        return Reply.text(f"echo {last} via {req.protocol}") if last != "plain" else "plain string step"

    server.script(answer)
    body = chat(messages=[{"role": "user", "content": "ping"}])
    assert json.loads(post(server, OPENAI, body)[2])["choices"][0]["message"]["content"] == "echo ping via openai"
    doc = json.loads(post(server, ANTHROPIC, msgs(messages=[{"role": "user", "content": "plain"}]))[2])
    assert doc["content"][0]["text"] == "plain string step"
    status, _, raw = post(server, OPENAI, chat(messages=[{"role": "user", "content": "boom"}]))
    assert status == 500 and "script function raised RuntimeError: script bug" in raw.decode()
    assert [str(e) for e in server.errors] == ["script bug"]
    status, _, raw = post(server, OPENAI, chat(messages=[{"role": "user", "content": "stop"}]))
    assert status == 500 and "script exhausted" in raw.decode()


def test_steps_may_be_functions_and_json_forms(server: ScriptedLLMServer) -> None:
    server.script([lambda req: Reply.text(req.model or ""), {"text": "from a dict"}, "from a string"])
    server.add({"tool_calls": [{"name": "f", "arguments": {"x": 1}, "id": "call_x"}]})
    assert server.remaining == 4
    contents = [json.loads(post(server, OPENAI, chat())[2])["choices"][0]["message"] for _ in range(4)]
    assert [c["content"] for c in contents[:3]] == ["gpt-4o-mini", "from a dict", "from a string"]
    assert contents[3]["tool_calls"][0]["id"] == "call_x"
    assert server.remaining == 0 and server.served == 4


def test_reset_forgets_script_and_requests(server: ScriptedLLMServer) -> None:
    server.script([Reply.text("a"), Reply.text("b")])
    post(server, OPENAI, chat())
    server.reset()
    assert server.requests == [] and server.remaining == 0 and server.served == 0
    assert post(server, OPENAI, chat())[0] == 500


def test_concurrent_requests_each_consume_one_step(server: ScriptedLLMServer) -> None:
    server.script([Reply.text(f"answer {i}") for i in range(24)])
    results: list[str] = []
    lock = threading.Lock()

    def call() -> None:
        text = json.loads(post(server, OPENAI, chat())[2])["choices"][0]["message"]["content"]
        with lock:
            results.append(text)

    threads = [threading.Thread(target=call) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == sorted(f"answer {i}" for i in range(24))
    assert [r.index for r in server.requests] == list(range(24))


def test_reply_from_obj_forms() -> None:
    assert Reply.from_obj("hi") == Reply.text("hi")
    assert Reply.from_obj({"json": {"a": 1}}).content == '{"a": 1}'
    assert Reply.from_obj({"error": 429, "retry_after": 0.5}) == Reply.rate_limited(retry_after=0.5)
    slow = Reply.from_obj({"slow": 1.5, "then": {"text": "x", "output_tokens": 2}})
    assert (slow.delay, slow.content, slow.output_tokens) == (1.5, "x", 2)
    assert Reply.from_obj({"text": "y", "delay": 0.5}).delay == 0.5
    assert Reply.from_obj({"malformed": True}).kind == "malformed"
    assert Reply.from_obj({"drop": True}).kind == "drop"
    calls = Reply.from_obj({"tool_calls": [["f", {"a": 1}]], "text": "t"})
    assert calls.calls == (ScriptedToolCall(name="f", arguments={"a": 1}),) and calls.finish == "tool_calls"
    with pytest.raises(ValueError):
        Reply.from_obj({"what": 1})
    with pytest.raises(ValueError):
        Reply.text("x", output_tokens=-1)
    with pytest.raises(ValueError):
        Reply.error(200)
    with pytest.raises(ValueError):
        Reply.tool_calls()


# --- recording, routes, lifecycle ---------------------------------------------------------


def test_requests_are_recorded(server: ScriptedLLMServer) -> None:
    with pytest.raises(AssertionError, match="no request"):
        _ = server.last_request
    server.script([Reply.text("a"), Reply.text("b")])
    before = time.monotonic()
    post(server, OPENAI + "?api-version=1", chat(), headers={"Authorization": "Bearer sk-abc", "X-Trace": "t1"})
    post(server, ANTHROPIC, msgs(stream=True), headers={"x-api-key": "ak"})
    one, two = server.requests
    assert (one.index, one.method, one.path, one.query, one.protocol) == (0, "POST", OPENAI, "api-version=1", "openai")
    assert one.header("authorization") == "Bearer sk-abc" and one.headers["x-trace"] == "t1"
    assert one.body == chat() and json.loads(one.raw_body) == chat() and one.json == one.body
    assert one.model == "gpt-4o-mini" and one.messages == [{"role": "user", "content": "Hi"}] and not one.stream
    assert two.protocol == "anthropic" and two.stream and two.header("X-API-KEY") == "ak"
    assert before <= one.time <= two.time <= time.monotonic()
    assert server.last_request == two


def test_models_lists(server: ScriptedLLMServer) -> None:
    with urllib.request.urlopen(server.openai_base_url + "/models") as resp:
        openai = json.loads(resp.read())
    assert openai["object"] == "list" and "gpt-4o-mini" in [m["id"] for m in openai["data"]]
    req = urllib.request.Request(server.url + "/v1/models", headers={"anthropic-version": "2023-06-01"})
    with urllib.request.urlopen(req) as resp:
        anthropic = json.loads(resp.read())
    assert anthropic["has_more"] is False and all(m["type"] == "model" for m in anthropic["data"])
    assert server.served == 0, "listing models consumes no step"
    assert [r.protocol for r in server.requests] == ["openai", "anthropic"]


def test_unknown_route_and_bad_body(server: ScriptedLLMServer) -> None:
    server.script([Reply.text("unused")])
    status, _, raw = post(server, "/v1/embeddings", {"input": "x"})
    assert status == 404 and "no route for POST /v1/embeddings" in raw.decode()
    status, _, raw = post(server, OPENAI, b"not json")
    assert status == 400 and "not a JSON object" in raw.decode()
    assert server.remaining == 1


def test_keep_alive_connection_serves_several_replies(server: ScriptedLLMServer) -> None:
    server.script([Reply.text("one"), Reply.text("two words"), Reply.error(429, retry_after=1), Reply.text("four")])
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        seen = []
        for body in (chat(), chat(stream=True), chat(), msgs()):
            path = ANTHROPIC if "max_tokens" in body else OPENAI
            conn.request("POST", path, body=json.dumps(body), headers={"content-type": "application/json"})
            resp = conn.getresponse()
            seen.append((resp.status, resp.read()))
    finally:
        conn.close()
    assert [s for s, _ in seen] == [200, 200, 429, 200]
    assert sse(seen[1][1])[-1] == (None, "[DONE]")
    assert json.loads(seen[3][1])["content"][0]["text"] == "four"


def test_lifecycle_and_urls() -> None:
    server = ScriptedLLMServer()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url
    server.start()
    assert server.start() is server and server.running
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert server.openai_base_url == server.url + "/v1" and server.anthropic_base_url == server.url
    assert server.base_url("anthropic") == server.url and server.base_url("openai").endswith("/v1")
    port = server.port
    server.stop()
    server.stop()
    assert not server.running
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)


def test_wait_for_requests_times_out(server: ScriptedLLMServer) -> None:
    with pytest.raises(TimeoutError, match="0 requests arrived, expected 1"):
        server.wait_for_requests(1, timeout=0.05)


def test_command_line_mode(tmp_path: Any) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps(["first", {"tool_calls": [{"name": "f", "arguments": {}}]}]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlm_testing.server", "--script", str(script), "--cycle", "--latency", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("scripted LLM server listening on http://127.0.0.1:"), line
        url = line.rsplit(" ", 1)[1].strip()
        answers = []
        for _ in range(3):
            req = urllib.request.Request(url + OPENAI, data=json.dumps(chat()).encode(), method="POST")
            with urllib.request.urlopen(req, timeout=5) as resp:
                answers.append(json.loads(resp.read())["choices"][0]["message"])
        assert [a["content"] for a in answers] == ["first", None, "first"], "--cycle replays the script"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "served 3 scripted requests" in out


def test_command_line_rejects_a_bad_script(tmp_path: Any) -> None:
    script = tmp_path / "bad.json"
    script.write_text(json.dumps({"not": "a list"}))
    proc = subprocess.run(
        [sys.executable, "-m", "rlm_testing.server", "--script", str(script)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "JSON list of steps" in proc.stderr
