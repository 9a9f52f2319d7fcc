"""The script of the scripted LLM server: steps (:class:`Reply`) and recorded requests.

A :class:`Reply` is one protocol-neutral step (text, tool calls, JSON text,
an HTTP error, a malformed body, a dropped connection, a stream cut before
its end marker, a request that never answers, an HTML page, an answer with
no content; optionally delayed);
:mod:`rlm_testing.wire` renders it as OpenAI or Anthropic JSON/SSE.  A
:class:`RecordedRequest` is what the server saw of one request.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Literal

from attrs import define, evolve, field

Protocol = Literal["openai", "anthropic"]
ReplyKind = Literal["message", "error", "malformed", "drop", "hang", "html"]
Finish = Literal["stop", "tool_calls", "length"]

#: Default error codes by HTTP status (what :meth:`Reply.error` assumes).
_CODE_BY_STATUS: dict[int, str] = {
    400: "invalid_request",
    401: "invalid_api_key",
    403: "permission_denied",
    404: "model_not_found",
    413: "request_too_large",
    429: "rate_limit",
    500: "server_error",
    502: "server_error",
    503: "overloaded",
    529: "overloaded",
}


def _usage_field(value: int | None) -> int | None:
    if value is not None and value < 0:
        raise ValueError("token counts must be >= 0")
    return value


@define(frozen=True, kw_only=True)
class ScriptedToolCall:
    """A tool call the scripted model makes.  ``id`` is generated when None."""

    name: str
    arguments: Mapping[str, Any] = field(factory=dict)
    id: str | None = None

    @classmethod
    def coerce(cls, value: Any) -> ScriptedToolCall:
        """From a ScriptedToolCall, ``(name, args)``, ``(name, args, id)`` or ``{"name", "arguments", "id"}``."""
        if isinstance(value, ScriptedToolCall):
            return value
        if isinstance(value, Mapping):
            return cls(name=value["name"], arguments=dict(value.get("arguments") or {}), id=value.get("id"))
        if isinstance(value, (tuple, list)) and 1 <= len(value) <= 3:
            name, args, call_id = (list(value) + [None, None])[:3]
            return cls(name=name, arguments=dict(args or {}), id=call_id)
        raise TypeError(f"cannot make a tool call from {value!r}; give (name, arguments[, id])")


@define(frozen=True, kw_only=True)
class Reply:
    """One scripted step: what the server answers to one completion request.

    Build steps with the class methods (``Reply.text("hi")``...), not the
    constructor.  ``delay`` is slept before answering; ``input_tokens`` /
    ``output_tokens`` default to a deterministic estimate (4 characters a
    token, at least 1) of the request and of the reply.
    """

    kind: ReplyKind = "message"
    content: str = ""
    calls: tuple[ScriptedToolCall, ...] = field(default=(), converter=tuple)
    finish: Finish | None = None
    input_tokens: int | None = field(default=None, converter=_usage_field)
    output_tokens: int | None = field(default=None, converter=_usage_field)
    status: int = 200
    code: str | None = None
    message: str | None = None
    retry_after: float | None = None
    delay: float = 0.0
    headers: Mapping[str, str] = field(factory=dict)
    #: the answer ends (cleanly, at the HTTP level) before its end marker: no ``finish_reason``/``[DONE]``
    #: (OpenAI) or ``message_delta``/``message_stop`` (Anthropic) in a stream; a JSON body cut in half
    cut_short: bool = False
    #: with ``cut_short``: how many stream events are sent (None: every one before the end marker)
    keep: int | None = field(default=None)
    #: with ``cut_short``: instead of ending, the server then sends nothing more and keeps the connection open
    stall: bool = False
    #: an answer without content: OpenAI ``content: null`` and no tool calls, Anthropic ``content: []``
    no_content: bool = False
    #: the body of an ``html`` step
    html_body: str | None = None

    # --- constructors -----------------------------------------------------

    @classmethod
    def text(
        cls,
        text: str,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        finish: Finish = "stop",
    ) -> Reply:
        """The assistant answers ``text``.  ``finish="length"`` mimics a reply cut by max_tokens."""
        return cls(content=text, input_tokens=input_tokens, output_tokens=output_tokens, finish=finish)

    @classmethod
    def tool_calls(
        cls,
        *calls: Any,
        text: str = "",
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> Reply:
        """The assistant calls tools: each call is ``(name, arguments)``, ``(name, arguments, id)``,
        a dict or a :class:`ScriptedToolCall`.  ``text`` is optional prose before the calls."""
        if not calls:
            raise ValueError("Reply.tool_calls needs at least one call")
        return cls(
            content=text,
            calls=tuple(ScriptedToolCall.coerce(c) for c in calls),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            finish="tool_calls",
        )

    @classmethod
    def json(cls, value: Any, *, input_tokens: int | None = None, output_tokens: int | None = None) -> Reply:
        """The assistant answers with text that is ``value`` as JSON (structured output)."""
        return cls.text(json.dumps(value), input_tokens=input_tokens, output_tokens=output_tokens)

    @classmethod
    def error(
        cls,
        status: int,
        message: str | None = None,
        *,
        code: str | None = None,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """An HTTP error in the provider's error JSON shape.

        ``code`` picks the kind (``rate_limit``, ``server_error``,
        ``invalid_api_key``, ``model_not_found``, ``context_length_exceeded``,
        ``overloaded``, ``permission_denied``, ``invalid_request``...); by
        default it follows ``status``.  ``message`` replaces the provider's
        usual message.  ``retry_after`` (seconds, may be fractional) sets
        ``Retry-After`` and ``retry-after-ms``.
        """
        if status < 400:
            raise ValueError("Reply.error needs an HTTP error status (>= 400)")
        return cls(
            kind="error",
            status=status,
            code=code or _CODE_BY_STATUS.get(status, "server_error" if status >= 500 else "invalid_request"),
            message=message,
            retry_after=retry_after,
            headers=dict(headers or {}),
        )

    @classmethod
    def rate_limited(cls, retry_after: float | None = 1.0, message: str | None = None) -> Reply:
        """429 with ``Retry-After``."""
        return cls.error(429, message, code="rate_limit", retry_after=retry_after)

    @classmethod
    def server_error(cls, message: str | None = None, *, retry_after: float | None = None) -> Reply:
        """500 internal server error."""
        return cls.error(500, message, code="server_error", retry_after=retry_after)

    @classmethod
    def overloaded(cls, *, status: int = 529, retry_after: float | None = None) -> Reply:
        """The provider is overloaded (Anthropic 529 ``overloaded_error``; 503 for OpenAI-like)."""
        return cls.error(status, code="overloaded", retry_after=retry_after)

    @classmethod
    def invalid_api_key(cls, message: str | None = None) -> Reply:
        """401: the API key is wrong."""
        return cls.error(401, message, code="invalid_api_key")

    @classmethod
    def model_not_found(cls, message: str | None = None) -> Reply:
        """404: the requested model does not exist."""
        return cls.error(404, message, code="model_not_found")

    @classmethod
    def context_too_long(cls, message: str | None = None) -> Reply:
        """400: the prompt exceeds the context window (OpenAI ``context_length_exceeded``,
        Anthropic ``invalid_request_error`` "prompt is too long")."""
        return cls.error(400, message, code="context_length_exceeded")

    @classmethod
    def slow(cls, seconds: float, then: Reply | None = None) -> Reply:
        """Wait ``seconds`` before answering ``then`` (default: a short text), to test timeouts."""
        base = then if then is not None else cls.text("slow reply")
        return evolve(base, delay=base.delay + seconds)

    @classmethod
    def malformed(cls) -> Reply:
        """200 with a body that is not valid JSON (a broken SSE event when streaming)."""
        return cls(kind="malformed")

    @classmethod
    def drop(cls) -> Reply:
        """Close the connection without answering."""
        return cls(kind="drop")

    @classmethod
    def truncated(cls, text: str = "partial answer", *, keep: int | None = None) -> Reply:
        """A reply of ``text`` cut before its end marker, the connection then closed cleanly.

        Streamed: the events of ``Reply.text(text)`` without the end (OpenAI:
        no chunk with a ``finish_reason``, no usage chunk, no ``[DONE]``;
        Anthropic: no ``message_delta``, no ``message_stop``); ``keep`` sends
        only the first ``keep`` events instead (``keep=1``: the opening event,
        no text).  Not streamed: the JSON body cut in half (its
        ``content-length`` says so: the HTTP response itself is complete).
        """
        if keep is not None and keep < 0:
            raise ValueError("keep must be >= 0")
        return cls(content=text, finish="stop", cut_short=True, keep=keep)

    @classmethod
    def stalled(cls, text: str = "partial answer", *, keep: int | None = None) -> Reply:
        """Like :meth:`truncated`, but the server then sends nothing more and keeps the connection open
        (a server that hangs in the middle of an answer: the client's read timeout must fire).
        Not streamed: the headers and half of the body are sent, then nothing."""
        return evolve(cls.truncated(text, keep=keep), stall=True)

    @classmethod
    def hang(cls) -> Reply:
        """Never answer: the request is read, then nothing is sent until the server stops
        (a hung provider: the client's read timeout must fire)."""
        return cls(kind="hang")

    @classmethod
    def html(cls, status: int = 200, body: str | None = None) -> Reply:
        """An HTML page instead of the API's JSON or event stream (a proxy, a login page, a wrong
        ``api_base``), with ``content-type: text/html``, to streamed and plain requests alike."""
        return cls(kind="html", status=status, html_body=body)

    @classmethod
    def empty(cls, *, finish: Finish = "stop") -> Reply:
        """An answer without content: OpenAI ``message.content: null`` and no tool calls (streamed:
        no content delta), Anthropic ``content: []`` (streamed: no content block)."""
        return cls(content="", finish=finish, no_content=True)

    def after(self, seconds: float) -> Reply:
        """This step, answered ``seconds`` later."""
        return evolve(self, delay=self.delay + seconds)

    @classmethod
    def from_obj(cls, obj: Any) -> Reply:
        """A step from its JSON form (the ``--script`` file format).

        ``"hi"`` or ``{"text": "hi"}``; ``{"tool_calls": [{"name": .., "arguments": {..}, "id": ..}], "text": ..}``;
        ``{"json": {...}}``; ``{"error": 429, "message": .., "code": .., "retry_after": 1}``;
        ``{"malformed": true}``; ``{"drop": true}``; ``{"truncated": "partial", "keep": 1}``;
        ``{"stalled": "partial"}``; ``{"hang": true}``; ``{"html": 200}`` (or ``true``, with
        an optional ``"body"``); ``{"empty": true}``.  Any of them may carry
        ``input_tokens``, ``output_tokens`` and ``delay`` (or
        ``{"slow": 2.0, "then": {...}}``).
        """
        if isinstance(obj, Reply):
            return obj
        if isinstance(obj, str):
            return cls.text(obj)
        if not isinstance(obj, Mapping):
            raise TypeError(f"a script step is a string or an object, not {obj!r}")
        usage = {k: obj[k] for k in ("input_tokens", "output_tokens") if k in obj}
        if "slow" in obj:
            step = cls.slow(float(obj["slow"]), then=cls.from_obj(obj["then"]) if "then" in obj else None)
        elif "error" in obj:
            step = cls.error(
                int(obj["error"]),
                obj.get("message"),
                code=obj.get("code"),
                retry_after=obj.get("retry_after"),
                headers=obj.get("headers"),
            )
        elif obj.get("malformed"):
            step = cls.malformed()
        elif obj.get("drop"):
            step = cls.drop()
        elif "truncated" in obj:
            step = cls.truncated(str(obj["truncated"]), keep=obj.get("keep"))
        elif "stalled" in obj:
            step = cls.stalled(str(obj["stalled"]), keep=obj.get("keep"))
        elif obj.get("hang"):
            step = cls.hang()
        elif "html" in obj and obj["html"] is not False:
            status = 200 if obj["html"] is True else int(obj["html"])
            step = cls.html(status, obj.get("body"))
        elif obj.get("empty"):
            step = cls.empty(finish=obj.get("finish", "stop"))
        elif "tool_calls" in obj:
            step = cls.tool_calls(*obj["tool_calls"], text=obj.get("text", ""), **usage)
        elif "json" in obj:
            step = cls.json(obj["json"], **usage)
        elif "text" in obj:
            step = cls.text(obj["text"], finish=obj.get("finish", "stop"), **usage)
        else:
            raise ValueError(f"cannot tell what kind of step {obj!r} is")
        return step.after(float(obj["delay"])) if obj.get("delay") else step


@define(frozen=True, kw_only=True)
class RecordedRequest:
    """One request the server received.

    ``headers`` has lower-cased names; ``body`` is the parsed JSON (None when
    absent or invalid); ``protocol`` is ``"openai"``, ``"anthropic"`` or None
    (unknown route); ``time`` is :func:`time.monotonic` at arrival;
    ``client`` is the client's ``(host, port)``: requests with the same one
    came over the same TCP connection.
    """

    index: int
    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = field(factory=dict)
    body: Any = None
    raw_body: bytes = field(default=b"", repr=False)
    protocol: Protocol | None = None
    time: float = 0.0
    client: tuple[str, int] | None = None

    @property
    def json(self) -> Any:
        """The parsed JSON body (alias of ``body``)."""
        return self.body

    @property
    def stream(self) -> bool:
        return isinstance(self.body, Mapping) and bool(self.body.get("stream"))

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, Mapping) else None

    @property
    def messages(self) -> list[Any]:
        return list(self.body.get("messages") or []) if isinstance(self.body, Mapping) else []

    @property
    def tools(self) -> list[Any]:
        return list(self.body.get("tools") or []) if isinstance(self.body, Mapping) else []

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


def estimate_tokens(text: str) -> int:
    """The scripted provider's own usage count: 4 characters a token, rounded up, at least 1.

    Deliberately not :func:`rlm.tokens.estimate_tokens`: this is what the fake *provider* reports, and
    tests compare the kernel's accounting against it as an independent usage model (the kernel rounds
    down and counts 0 for empty text), so sharing the code would let a kernel bug agree with itself.
    """
    return max(1, math.ceil(len(text) / 4))
