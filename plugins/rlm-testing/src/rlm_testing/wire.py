"""Rendering scripted steps in each provider's wire format.

OpenAI Chat Completions (JSON and SSE chunks with ``[DONE]``), Anthropic
Messages (JSON and the ``message_start`` ... ``message_stop`` event
sequence), each provider's error JSON shape, the model lists, the broken
bodies of :meth:`Reply.malformed`, the cut ones of :meth:`Reply.truncated`
and the HTML pages of :meth:`Reply.html`.  Pure functions: no sockets here.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from typing import Any

from attrs import define, field

from rlm_testing.script import Protocol, RecordedRequest, Reply, estimate_tokens

#: error code -> (OpenAI error type, OpenAI code, OpenAI param, default OpenAI message)
_OPENAI_ERRORS: dict[str, tuple[str, str | None, str | None, str]] = {
    "invalid_request": ("invalid_request_error", None, None, "Invalid request (scripted error)."),
    "invalid_api_key": (
        "invalid_request_error",
        "invalid_api_key",
        None,
        "Incorrect API key provided: {key}. You can find your API key at https://platform.openai.com/account/api-keys.",
    ),
    "permission_denied": (
        "invalid_request_error",
        "permission_denied",
        None,
        "You are not allowed to sample from this model.",
    ),
    "model_not_found": (
        "invalid_request_error",
        "model_not_found",
        None,
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    "request_too_large": ("invalid_request_error", "request_too_large", None, "Request too large."),
    "rate_limit": (
        "requests",
        "rate_limit_exceeded",
        None,
        "Rate limit reached for {model} in organization org-rlmtesting on requests per min (RPM): "
        "Limit 3, Used 3, Requested 1. Please try again in {retry_after}s.",
    ),
    "context_length_exceeded": (
        "invalid_request_error",
        "context_length_exceeded",
        "messages",
        "This model's maximum context length is 128000 tokens. However, your messages resulted in "
        "131072 tokens. Please reduce the length of the messages.",
    ),
    "server_error": (
        "server_error",
        None,
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    "overloaded": ("server_error", None, None, "The engine is currently overloaded, please try again later."),
}

#: error code -> (Anthropic error type, default Anthropic message)
_ANTHROPIC_ERRORS: dict[str, tuple[str, str]] = {
    "invalid_request": ("invalid_request_error", "Invalid request (scripted error)."),
    "invalid_api_key": ("authentication_error", "invalid x-api-key"),
    "permission_denied": ("permission_error", "Your API key does not have permission to use the specified resource."),
    "model_not_found": ("not_found_error", "model: {model}"),
    "request_too_large": ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    "rate_limit": (
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit "
        "(https://docs.anthropic.com/en/api/rate-limits); see the response headers for current usage. "
        "Please reduce the prompt length or the maximum tokens requested, or try again later.",
    ),
    "context_length_exceeded": ("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
    "server_error": ("api_error", "Internal server error"),
    "overloaded": ("overloaded_error", "Overloaded"),
}


def _request_tokens(body: Any) -> int:
    if not isinstance(body, Mapping):
        return 1
    keys = ("system", "messages", "tools")
    return estimate_tokens(json.dumps([body.get(k) for k in keys], sort_keys=True, default=str))


def _split_text(text: str) -> list[str]:
    """Text as several stream deltas (word by word, spaces kept)."""
    return re.findall(r"\s*\S+|\s+$", text) or ([text] if text else [])


def _split_args(args: str) -> list[str]:
    """Tool-call argument JSON in several chunks, as providers stream it."""
    if len(args) < 2:
        return [args]
    size = min(8, math.ceil(len(args) / 2))
    return [args[i : i + size] for i in range(0, len(args), size)]


def _format_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@define(frozen=True, kw_only=True)
class Rendered:
    """A fully decided answer: what the handler writes."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(factory=dict)
    events: tuple[bytes, ...] | None = None  # SSE events (chunked response) when not None
    drop: bool = False
    #: after the events (or, not streamed, half of the body), send nothing more and keep the connection open
    stall: bool = False
    #: send nothing at all (not even a status line) and keep the connection open
    hang: bool = False


# --- rendering --------------------------------------------------------------


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _sse(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def _call_ids(step: Reply, protocol: Protocol, n: int) -> list[str]:
    prefix = "toolu_rlm" if protocol == "anthropic" else "call_rlm"
    return [c.id or f"{prefix}{n:03d}{i}" for i, c in enumerate(step.calls)]


def _usage_of(step: Reply, body: Any) -> tuple[int, int]:
    inp = step.input_tokens if step.input_tokens is not None else _request_tokens(body)
    if step.output_tokens is not None:
        return inp, step.output_tokens
    produced = step.content + "".join(c.name + json.dumps(dict(c.arguments)) for c in step.calls)
    return inp, estimate_tokens(produced)


def render_error(step: Reply, protocol: Protocol | None, req: RecordedRequest, request_id: str) -> Rendered:
    code = step.code or "server_error"
    model = req.model or "unknown-model"
    key = (req.header("authorization") or "").removeprefix("Bearer ").strip() or req.header("x-api-key") or ""
    masked = (key[:3] + "*" * 4 + key[-4:]) if len(key) > 8 else "sk-****"
    fill = {"model": model, "key": masked, "retry_after": _format_seconds(step.retry_after or 1)}
    headers: dict[str, str] = {}
    if step.retry_after is not None:
        headers["retry-after"] = _format_seconds(step.retry_after)
        headers["retry-after-ms"] = str(int(round(step.retry_after * 1000)))
    headers.update(step.headers)
    if protocol == "anthropic":
        etype, default = _ANTHROPIC_ERRORS.get(code, ("api_error", "Internal server error"))
        message = step.message if step.message is not None else default.format(**fill)
        body = {"type": "error", "error": {"type": etype, "message": message}, "request_id": request_id}
        headers["request-id"] = request_id
    else:
        etype, ecode, param, default = _OPENAI_ERRORS.get(code, ("server_error", None, None, "Internal error."))
        message = step.message if step.message is not None else default.format(**fill)
        body = {"error": {"message": message, "type": etype, "param": param, "code": ecode}}
        headers["x-request-id"] = request_id
    return Rendered(status=step.status, body=_json_bytes(body), headers=headers)


def render_openai(step: Reply, req: RecordedRequest, n: int, request_id: str) -> Rendered:
    body = req.body if isinstance(req.body, Mapping) else {}
    model = req.model or "scripted-model"
    created = int(time.time())
    cid = f"chatcmpl-rlmtest-{n}"
    ids = _call_ids(step, "openai", n)
    inp, out = _usage_of(step, body)
    usage = {"prompt_tokens": inp, "completion_tokens": out, "total_tokens": inp + out}
    finish = step.finish or ("tool_calls" if step.calls else "stop")
    headers = {"x-request-id": request_id, "openai-processing-ms": "1"}
    calls = [
        {
            "id": call_id,
            "type": "function",
            "function": {"name": c.name, "arguments": json.dumps(dict(c.arguments))},
        }
        for c, call_id in zip(step.calls, ids, strict=True)
    ]
    if not req.stream:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if step.no_content else step.content if (step.content or not calls) else None,
            "refusal": None,
        }
        if calls:
            message["tool_calls"] = calls
        doc = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": usage,
            "system_fingerprint": "fp_rlm_testing",
        }
        return _plain(step, _json_bytes(doc), headers)

    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: Mapping[str, Any], finish_reason: str | None = None) -> bytes:
        doc: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_rlm_testing",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if include_usage:
            doc["usage"] = None
        return _sse(doc)

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [chunk({"content": piece}) for piece in _split_text(step.content)]
    for i, call in enumerate(calls):
        head = {
            "index": i,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        events.append(chunk({"tool_calls": [head]}))
        for piece in _split_args(call["function"]["arguments"]):
            events.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
    body_events = len(events)
    events.append(chunk({}, finish))
    if include_usage:
        events.append(
            _sse(
                {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "fp_rlm_testing",
                    "choices": [],
                    "usage": usage,
                }
            )
        )
    events.append(_sse("[DONE]"))
    return _streamed(step, events, body_events, headers)


_ANTHROPIC_STOP = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}


def render_anthropic(step: Reply, req: RecordedRequest, n: int, request_id: str) -> Rendered:
    body = req.body if isinstance(req.body, Mapping) else {}
    model = req.model or "scripted-model"
    mid = f"msg_rlmtest_{n:04d}"
    ids = _call_ids(step, "anthropic", n)
    inp, out = _usage_of(step, body)
    stop = _ANTHROPIC_STOP[step.finish or ("tool_calls" if step.calls else "stop")]
    headers = {"request-id": request_id}
    blocks: list[dict[str, Any]] = []
    if step.content:
        blocks.append({"type": "text", "text": step.content})
    for c, call_id in zip(step.calls, ids, strict=True):
        blocks.append({"type": "tool_use", "id": call_id, "name": c.name, "input": dict(c.arguments)})
    if not blocks and not step.no_content:
        blocks.append({"type": "text", "text": ""})
    message = {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": inp, "output_tokens": out},
    }
    if not req.stream:
        return _plain(step, _json_bytes(message), headers)

    start = dict(message, content=[], stop_reason=None, usage={"input_tokens": inp, "output_tokens": 1})
    events = [_sse({"type": "message_start", "message": start}, "message_start")]
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            events.append(
                _sse(
                    {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
                    "content_block_start",
                )
            )
            for piece in _split_text(block["text"]):
                delta = {"type": "text_delta", "text": piece}
                events.append(
                    _sse({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta")
                )
        else:
            empty = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            events.append(
                _sse({"type": "content_block_start", "index": index, "content_block": empty}, "content_block_start")
            )
            for piece in _split_args(json.dumps(block["input"])):
                delta = {"type": "input_json_delta", "partial_json": piece}
                events.append(
                    _sse({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta")
                )
        events.append(_sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
        if index == 0:
            events.insert(2, _sse({"type": "ping"}, "ping"))
    body_events = len(events)
    events.append(
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"input_tokens": inp, "output_tokens": out},
            },
            "message_delta",
        )
    )
    events.append(_sse({"type": "message_stop"}, "message_stop"))
    return _streamed(step, events, body_events, headers)


def _streamed(step: Reply, events: list[bytes], body_events: int, headers: Mapping[str, str]) -> Rendered:
    """The SSE answer; a truncated step keeps ``step.keep`` events, or those before the end (``body_events``)."""
    if step.cut_short:
        events = events[: step.keep if step.keep is not None else body_events]
    return Rendered(events=tuple(events), content_type="text/event-stream; charset=utf-8", headers=headers,
                    stall=step.stall)


def _plain(step: Reply, body: bytes, headers: Mapping[str, str]) -> Rendered:
    """The JSON answer; a truncated step sends its first half (a stalled one then waits, promising the rest)."""
    if step.cut_short and not step.stall:
        return Rendered(body=body[: len(body) // 2], headers=headers)
    return Rendered(body=body, headers=headers, stall=step.stall)


def render_models(protocol: Protocol, models: tuple[str, ...]) -> Rendered:
    """``GET /v1/models`` in the provider's list shape."""
    if protocol == "anthropic":
        data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in models]
        doc: dict[str, Any] = {
            "data": data,
            "has_more": False,
            "first_id": models[0] if models else None,
            "last_id": models[-1] if models else None,
        }
    else:
        data = [{"id": m, "object": "model", "created": 1735689600, "owned_by": "rlm-testing"} for m in models]
        doc = {"object": "list", "data": data}
    return Rendered(body=_json_bytes(doc))


HTML_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n"
    "<body><h1>Sign in to continue</h1><p>This network requires you to sign in.</p></body></html>\n"
)


def render_html(step: Reply) -> Rendered:
    """An HTML page (a proxy's or a portal's), whatever the request asked for."""
    body = (step.html_body if step.html_body is not None else HTML_PAGE).encode()
    return Rendered(status=step.status, body=body, content_type="text/html; charset=utf-8", headers=dict(step.headers))


def render_malformed(req: RecordedRequest) -> Rendered:
    if req.stream:
        if req.protocol == "anthropic":
            broken = b'event: message_start\ndata: {"type": "message_start", "message": {"id": "msg_\n\n'
        else:
            broken = b'data: {"id": "chatcmpl-broken", "choices": [{"delta": {"content": "bro\n\n'
        return Rendered(events=(broken,), content_type="text/event-stream; charset=utf-8")
    return Rendered(
        body=b'{"id": "broken", "choices": [{"message": {"content": "unterminat', content_type="application/json"
    )
