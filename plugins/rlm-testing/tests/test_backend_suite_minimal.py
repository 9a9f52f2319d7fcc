"""BackendConformance validated by two tiny stdlib-only backends, and checks that the suite catches broken ones.

``MinimalOpenAIBackend`` / ``MinimalAnthropicBackend`` implement
:class:`rlm.backend.Backend` with ``urllib`` in worker threads: retries with
``Retry-After``, error mapping onto :mod:`rlm.errors`, SSE read by :mod:`rlm.sse`.  They are
test helpers (kept in this module: the suite runs with
``--import-mode=importlib``, where test modules cannot import siblings), not
production code.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import pytest
from rlm.backend import (
    BackendCapabilities,
    BackendSettings,
    LLMRequest,
    LLMResponse,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
)
from rlm.errors import (
    AuthenticationError,
    BackendError,
    ContextTooLongError,
    ModelNotFoundError,
    ProviderUnavailableError,
    RateLimitError,
)
from rlm.sse import SSEParser
from rlm.types import ImagePart, Message, TextPart, ToolCall, Usage
from rlm_testing.backend_suite import BackendConformance
from rlm_testing.server import Reply, ScriptedLLMServer


class _StreamCut(ProviderUnavailableError):
    """The stream ended before its end marker (retried while nothing was yielded)."""


def _check_answer(provider: str, response: LLMResponse) -> LLMResponse:
    if not response.message.text and not response.message.tool_calls:
        raise ProviderUnavailableError(f"{provider} sent an answer with no content", fix="try again")
    return response


class _MinimalBackend:
    name = "minimal"
    provider = "provider"
    path = ""

    def __init__(self, *, settings: BackendSettings) -> None:
        if not settings.base_url:
            raise ValueError("base_url is required")
        self.settings = settings
        self.closed = False

    def capabilities(self, model: str) -> BackendCapabilities:
        return BackendCapabilities(native_tools=True, json_schema=True, vision=True)

    async def aclose(self) -> None:
        self.closed = True

    # --- protocol-specific ------------------------------------------------------

    def headers(self) -> dict[str, str]:
        raise NotImplementedError

    def body(self, request: LLMRequest, *, stream: bool) -> dict[str, Any]:
        raise NotImplementedError

    def parse(self, doc: Mapping[str, Any]) -> LLMResponse:
        raise NotImplementedError

    def parse_stream(self, events: Iterator[tuple[str | None, Any]]) -> Iterator[StreamEvent]:
        raise NotImplementedError

    def error_code(self, doc: Any) -> tuple[str, str]:
        """(code or type, message) from an error body."""
        err = doc.get("error") if isinstance(doc, Mapping) else None
        if not isinstance(err, Mapping):
            return "", ""
        return str(err.get("code") or err.get("type") or ""), str(err.get("message") or "")

    # --- HTTP -----------------------------------------------------------------

    def _status_error(self, status: int, raw: bytes, model: str) -> BackendError:
        try:
            code, message = self.error_code(json.loads(raw))
        except ValueError:
            code, message = "", raw[:200].decode("utf-8", "replace")
        where = f"{self.provider} answered {status}"
        if status in (401, 403):
            return AuthenticationError(f"{where}: {message}", fix="check the API key")
        if status == 404:
            return ModelNotFoundError(f"{where}: model {model!r} not found ({message})", fix="check the model name")
        if status == 400 and (code == "context_length_exceeded" or "prompt is too long" in message):
            return ContextTooLongError(f"{where}: {message}", fix="shorten the prompt")
        if status == 429:
            return RateLimitError(f"{where}: rate limited ({message})", fix="wait, or lower the request rate")
        if status >= 500:
            return ProviderUnavailableError(f"{where}: {message or 'server error'}", fix="try again later")
        return BackendError(f"{where}: {message}")

    @property
    def timeout(self) -> float:
        """One read's timeout: settings.read_timeout, never more than settings.timeout."""
        read = self.settings.read_timeout
        return min(read, self.settings.timeout) if read is not None else self.settings.timeout

    def _open(self, body: dict[str, Any]) -> http.client.HTTPResponse:
        data = json.dumps(body).encode()
        url = self.settings.base_url.rstrip("/") + self.path
        attempt = 0
        while True:
            wait = 0.05 * 2**attempt
            req = urllib.request.Request(url, data=data, headers=self.headers(), method="POST")
            try:
                resp = urllib.request.urlopen(req, timeout=self.timeout)
                if "html" in (resp.headers.get("content-type") or "").lower():
                    resp.close()
                    raise BackendError(f"{self.provider} sent an HTML page instead of an API response",
                                       fix="check that base_url points at the API")
                return resp
            except urllib.error.HTTPError as exc:
                error: BackendError = self._status_error(exc.code, exc.read(), body.get("model", ""))
                retry = exc.code == 429 or exc.code >= 500
                if exc.headers.get("x-should-retry") == "false":
                    retry = False
                if exc.headers.get("retry-after"):
                    wait = max(wait, float(exc.headers["retry-after"]))
            except (TimeoutError, urllib.error.URLError) as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, TimeoutError):
                    error = ProviderUnavailableError(
                        f"{self.provider} did not answer within the {self.timeout}s timeout",
                        fix="raise the timeout or try again",
                    )
                else:
                    error = ProviderUnavailableError(f"cannot reach {self.provider} at {url}: {reason}")
                retry = True
            except (http.client.HTTPException, ConnectionError) as exc:
                error = ProviderUnavailableError(f"{self.provider} dropped the connection ({type(exc).__name__})")
                retry = True
            if not retry or attempt >= self.settings.max_retries:
                raise error
            attempt += 1
            time.sleep(wait)

    def _read_json(self, resp: http.client.HTTPResponse) -> Any:
        try:
            with resp:
                return json.loads(resp.read())
        except ValueError as exc:
            raise BackendError(f"{self.provider} returned a malformed JSON body ({exc})") from exc
        except TimeoutError as exc:
            raise ProviderUnavailableError(f"{self.provider} timed out while sending the body") from exc

    async def complete(self, request: LLMRequest) -> LLMResponse:
        def call() -> LLMResponse:
            doc = self._read_json(self._open(self.body(request, stream=False)))
            try:
                response = self.parse(doc)
            except (KeyError, TypeError, IndexError, ValueError) as exc:
                raise BackendError(f"{self.provider} returned an unexpected body ({exc!r})") from exc
            return _check_answer(self.provider, response)

        return await asyncio.to_thread(call)

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamEvent]:
        attempt = 0
        while True:
            yielded = False
            try:
                async for event in self._stream_once(request):
                    yielded = True
                    yield event
                return
            except _StreamCut:
                if yielded or attempt >= self.settings.max_retries:
                    raise
                attempt += 1

    async def _stream_once(self, request: LLMRequest) -> AsyncIterator[StreamEvent]:
        resp = await asyncio.to_thread(self._open, self.body(request, stream=True))

        def sse() -> Iterator[tuple[str | None, Any]]:
            parser = SSEParser()
            try:
                for chunk in iter(lambda: resp.read1(1 << 16), b""):
                    for event in parser.feed(chunk):
                        if event.data == "[DONE]":
                            yield event.event, "[DONE]"
                            return
                        yield event.event, json.loads(event.data)
                for event in parser.finish():
                    yield event.event, event.data if event.data == "[DONE]" else json.loads(event.data)
            except ValueError as exc:  # json.JSONDecodeError, rlm.sse.SSEError
                raise BackendError(f"{self.provider} sent a malformed stream event ({exc})") from exc

        parsed = self.parse_stream(sse())

        def next_event() -> StreamEvent | None:
            try:
                return next(parsed)
            except StopIteration:
                return None
            except TimeoutError as exc:
                raise ProviderUnavailableError(f"{self.provider} stream timed out (read timeout)") from exc

        try:
            while True:
                item = await asyncio.to_thread(next_event)
                if item is None:
                    break
                yield item
        finally:
            resp.close()


def _args(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except ValueError as exc:
        raise BackendError(f"tool-call arguments are not JSON: {raw!r}") from exc
    return value if isinstance(value, dict) else {"value": value}


class MinimalOpenAIBackend(_MinimalBackend):
    name = "minimal-openai"
    provider = "OpenAI"
    path = "/chat/completions"

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.settings.api_key}", "content-type": "application/json"}

    @staticmethod
    def _message(m: Message) -> dict[str, Any]:
        if m.role == "tool":
            return {"role": "tool", "tool_call_id": m.tool_call_id, "content": m.text}
        if m.role == "assistant":
            out: dict[str, Any] = {"role": "assistant", "content": m.text or None}
            if m.tool_calls:
                out["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": json.dumps(dict(c.arguments))},
                    }
                    for c in m.tool_calls
                ]
            return out
        if isinstance(m.content, str):
            return {"role": m.role, "content": m.content}
        parts: list[dict[str, Any]] = []
        for p in m.content:
            if isinstance(p, TextPart):
                parts.append({"type": "text", "text": p.text})
            elif isinstance(p, ImagePart):
                parts.append({"type": "image_url", "image_url": {"url": p.as_data_url()}})
        return {"role": m.role, "content": parts}

    def body(self, request: LLMRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": request.model, "messages": [self._message(m) for m in request.messages]}
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": dict(t.parameters)},
                }
                for t in request.tools
            ]
        if request.response_format:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": request.response_format["name"],
                    "schema": request.response_format["schema"],
                    "strict": True,
                },
            }
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def parse(self, doc: Mapping[str, Any]) -> LLMResponse:
        choice = doc["choices"][0]
        msg = choice["message"]
        calls = tuple(
            ToolCall(id=c["id"], name=c["function"]["name"], arguments=_args(c["function"]["arguments"]))
            for c in msg.get("tool_calls") or []
        )
        usage = doc.get("usage") or {}
        return LLMResponse(
            message=Message.assistant(msg.get("content") or "", calls),
            usage=Usage(input_tokens=usage.get("prompt_tokens", 0), output_tokens=usage.get("completion_tokens", 0)),
            finish_reason=choice.get("finish_reason"),
            model=doc.get("model", ""),
        )

    def parse_stream(self, events: Iterator[tuple[str | None, Any]]) -> Iterator[StreamEvent]:
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        usage = Usage()
        finish = None
        model = ""
        done = False
        for _, chunk in events:
            if chunk == "[DONE]":
                done = True
                break
            model = chunk.get("model", model)
            if chunk.get("usage"):
                u = chunk["usage"]
                usage = Usage(input_tokens=u.get("prompt_tokens", 0), output_tokens=u.get("completion_tokens", 0))
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    text.append(delta["content"])
                    yield TextDelta(text=delta["content"])
                for tc in delta.get("tool_calls") or []:
                    slot = calls.setdefault(tc["index"], {"id": "", "name": "", "arguments": ""})
                    slot["id"] = tc.get("id") or slot["id"]
                    fn = tc.get("function") or {}
                    slot["name"] = fn.get("name") or slot["name"]
                    slot["arguments"] += fn.get("arguments") or ""
                finish = choice.get("finish_reason") or finish
        if not done or finish is None:
            raise _StreamCut("OpenAI stream ended before its finish_reason and [DONE]")
        done_calls = tuple(
            ToolCall(id=c["id"], name=c["name"], arguments=_args(c["arguments"])) for _, c in sorted(calls.items())
        )
        message = Message.assistant("".join(text), done_calls)
        final = _check_answer("OpenAI", LLMResponse(message=message, usage=usage, finish_reason=finish, model=model))
        for call in done_calls:
            yield ToolCallDelta(call=call)
        yield StreamEnd(response=final)


class MinimalAnthropicBackend(_MinimalBackend):
    name = "minimal-anthropic"
    provider = "Anthropic"
    path = "/v1/messages"

    def headers(self) -> dict[str, str]:
        return {
            "x-api-key": self.settings.api_key or "",
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
        }

    def error_code(self, doc: Any) -> tuple[str, str]:
        err = doc.get("error") if isinstance(doc, Mapping) else None
        if not isinstance(err, Mapping):
            return "", ""
        return str(err.get("type") or ""), str(err.get("message") or "")

    @staticmethod
    def _content(m: Message) -> Any:
        if isinstance(m.content, str):
            return m.content
        parts: list[dict[str, Any]] = []
        for p in m.content:
            if isinstance(p, TextPart):
                parts.append({"type": "text", "text": p.text})
            elif isinstance(p, ImagePart):
                source = {"type": "base64", "media_type": p.media_type, "data": p.as_base64()}
                parts.append({"type": "image", "source": source})
        return parts

    def body(self, request: LLMRequest, *, stream: bool) -> dict[str, Any]:
        system = "\n\n".join(m.text for m in request.messages if m.role == "system")
        messages: list[dict[str, Any]] = []
        for m in request.messages:
            if m.role == "system":
                continue
            if m.role == "tool":
                block = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.text}
                last = messages[-1] if messages else None
                if (
                    last
                    and last["role"] == "user"
                    and isinstance(last["content"], list)
                    and all(b.get("type") == "tool_result" for b in last["content"])
                ):
                    last["content"].append(block)
                else:
                    messages.append({"role": "user", "content": [block]})
            elif m.role == "assistant":
                blocks: list[dict[str, Any]] = [{"type": "text", "text": m.text}] if m.text else []
                blocks += [
                    {"type": "tool_use", "id": c.id, "name": c.name, "input": dict(c.arguments)} for c in m.tool_calls
                ]
                messages.append({"role": "assistant", "content": blocks})
            else:
                messages.append({"role": "user", "content": self._content(m)})
        body: dict[str, Any] = {
            "model": request.model,
            "messages": messages,
            "max_tokens": request.max_tokens or 1024,
        }
        if system:
            body["system"] = system
        if request.tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
                for t in request.tools
            ]
        if request.response_format:
            body["output_format"] = {"type": "json_schema", "schema": request.response_format["schema"]}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if stream:
            body["stream"] = True
        return body

    def parse(self, doc: Mapping[str, Any]) -> LLMResponse:
        text = "".join(b["text"] for b in doc["content"] if b["type"] == "text")
        calls = tuple(
            ToolCall(id=b["id"], name=b["name"], arguments=dict(b["input"]))
            for b in doc["content"]
            if b["type"] == "tool_use"
        )
        usage = doc.get("usage") or {}
        return LLMResponse(
            message=Message.assistant(text, calls),
            usage=Usage(input_tokens=usage.get("input_tokens", 0), output_tokens=usage.get("output_tokens", 0)),
            finish_reason=doc.get("stop_reason"),
            model=doc.get("model", ""),
        )

    def parse_stream(self, events: Iterator[tuple[str | None, Any]]) -> Iterator[StreamEvent]:
        blocks: dict[int, dict[str, Any]] = {}
        text: list[str] = []
        calls: list[ToolCall] = []
        input_tokens = output_tokens = 0
        stop = None
        model = ""
        for _, ev in events:
            kind = ev.get("type")
            if kind == "message_start":
                msg = ev["message"]
                model = msg.get("model", "")
                input_tokens = (msg.get("usage") or {}).get("input_tokens", 0)
            elif kind == "content_block_start":
                blocks[ev["index"]] = dict(ev["content_block"], partial="")
            elif kind == "content_block_delta":
                delta = ev["delta"]
                if delta["type"] == "text_delta":
                    text.append(delta["text"])
                    yield TextDelta(text=delta["text"])
                elif delta["type"] == "input_json_delta":
                    blocks[ev["index"]]["partial"] += delta["partial_json"]
            elif kind == "content_block_stop":
                block = blocks[ev["index"]]
                if block["type"] == "tool_use":
                    call = ToolCall(id=block["id"], name=block["name"], arguments=_args(block["partial"]))
                    calls.append(call)
                    yield ToolCallDelta(call=call)
            elif kind == "message_delta":
                stop = (ev.get("delta") or {}).get("stop_reason", stop)
                usage = ev.get("usage") or {}
                output_tokens = usage.get("output_tokens", output_tokens)
                input_tokens = usage.get("input_tokens") or input_tokens
            elif kind == "error":
                raise ProviderUnavailableError(f"Anthropic stream error: {ev.get('error')}")
            elif kind == "message_stop":
                message = Message.assistant("".join(text), tuple(calls))
                usage_total = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
                final = LLMResponse(message=message, usage=usage_total, finish_reason=stop, model=model)
                yield StreamEnd(response=_check_answer("Anthropic", final))
                return
        raise _StreamCut("Anthropic stream ended before message_stop")


# --- the suite, run against them ---------------------------------------------------


class TestMinimalOpenAIBackend(BackendConformance):
    protocol = "openai"
    model = "gpt-4o-mini"

    def make_backend(self, server: ScriptedLLMServer, **settings: Any) -> MinimalOpenAIBackend:
        return MinimalOpenAIBackend(settings=self.backend_settings(server, **settings))


class TestMinimalAnthropicBackend(BackendConformance):
    protocol = "anthropic"
    model = "claude-sonnet-4-20250514"

    def make_backend(self, server: ScriptedLLMServer, **settings: Any) -> MinimalAnthropicBackend:
        return MinimalAnthropicBackend(settings=self.backend_settings(server, **settings))


class _LeakyBackend(MinimalOpenAIBackend):
    """Breaks the contract: raw exceptions escape and nothing is retried."""

    def _open(self, body: dict[str, Any]) -> Any:
        import urllib.request

        req = urllib.request.Request(
            self.settings.base_url + self.path, data=__import__("json").dumps(body).encode(), headers=self.headers()
        )
        return urllib.request.urlopen(req, timeout=self.settings.timeout)


class _LeakySuite(BackendConformance):
    protocol = "openai"
    model = "gpt-4o-mini"

    def make_backend(self, server: ScriptedLLMServer, **settings: Any) -> _LeakyBackend:
        return _LeakyBackend(settings=self.backend_settings(server, **settings))


class _WrongAnthropicSuite(BackendConformance):
    """An Anthropic suite pointed at an OpenAI backend: requests go to the wrong route."""

    protocol = "anthropic"
    model = "claude-sonnet-4-20250514"

    def make_backend(self, server: ScriptedLLMServer, **settings: Any) -> MinimalOpenAIBackend:
        return MinimalOpenAIBackend(settings=self.backend_settings(server, base_url=server.openai_base_url, **settings))


@pytest.mark.parametrize(
    "test_name",
    [
        "test_invalid_api_key",
        "test_rate_limit_retry_after_then_success",
        "test_server_error_retried_then_clear_error",
        "test_unknown_model",
    ],
)
def test_suite_catches_a_leaky_backend(scripted_llm: ScriptedLLMServer, test_name: str) -> None:
    with pytest.raises((Exception, pytest.fail.Exception)):  # the suite test fails, one way or another
        getattr(_LeakySuite(), test_name)(scripted_llm)


def test_suite_catches_wrong_protocol(scripted_llm: ScriptedLLMServer) -> None:
    with pytest.raises(AssertionError, match="request went to /v1/chat/completions"):
        _WrongAnthropicSuite().test_plain_text(scripted_llm)


def test_suite_reports_a_raw_exception_clearly(scripted_llm: ScriptedLLMServer) -> None:
    scripted_llm.script([Reply.invalid_api_key()])
    with pytest.raises(pytest.fail.Exception, match=r"leaked urllib\.error\.HTTPError"):
        _LeakySuite().failure(scripted_llm, LLMRequest(model="m", messages=()))


def test_base_class_demands_make_backend(scripted_llm: ScriptedLLMServer) -> None:
    with pytest.raises(NotImplementedError, match="make_backend"):
        BackendConformance().make_backend(scripted_llm)


def test_backend_settings_follow_the_protocol(scripted_llm: ScriptedLLMServer) -> None:
    openai = TestMinimalOpenAIBackend().backend_settings(scripted_llm, timeout=1.5)
    anthropic = TestMinimalAnthropicBackend().backend_settings(scripted_llm)
    assert openai.base_url == scripted_llm.openai_base_url and openai.timeout == 1.5 and openai.max_retries == 2
    assert anthropic.base_url == scripted_llm.anthropic_base_url and anthropic.api_key


def test_complete_helper_closes_the_backend(scripted_llm: ScriptedLLMServer) -> None:
    made: list[MinimalOpenAIBackend] = []

    class Suite(TestMinimalOpenAIBackend):
        def make_backend(self, server: ScriptedLLMServer, **settings: Any) -> MinimalOpenAIBackend:
            made.append(super().make_backend(server, **settings))
            return made[-1]

    scripted_llm.script([Reply.text("hi")])
    response = Suite().complete(scripted_llm, Suite().request())
    assert isinstance(response, LLMResponse) and response.message.text == "hi"
    assert [b.closed for b in made] == [True]
    assert issubclass(BackendError, Exception)
