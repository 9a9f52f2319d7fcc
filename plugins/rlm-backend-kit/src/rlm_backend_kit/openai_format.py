"""Between rlm's provider-neutral types and the OpenAI Chat Completions wire format.

Shared by every backend that speaks this format (the OpenAI SDK, litellm,
local OpenAI-compatible servers), so they convert messages, tools, images,
audio, structured output and streamed deltas the same way.

Requests: messages (system/user/assistant with tool calls/tool results;
text, ``image_url`` and ``input_audio`` parts), tools, ``tool_choice`` and
``response_format`` (JSON Schema).  Responses: a completion object (the SDK's
pydantic model, or anything with the same attributes) to an
:class:`rlm.backend.LLMResponse`; streamed chunks assembled by
:class:`StreamAssembler` into TextDelta/ToolCallDelta events and one
StreamEnd.  Pure functions: no I/O, no SDK import.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rlm.backend import LLMRequest, LLMResponse, StreamEnd, StreamEvent, TextDelta, ToolCallDelta, ToolSchema
from rlm.memo import memoize_by_identity
from rlm.types import AudioPart, ImagePart, Message, TextPart, ToolCall, Usage

#: Where arguments that are not a JSON object end up, so that the tool reports the problem to the model.
RAW_ARGUMENTS_KEY = "_raw_arguments"


# --- requests ---------------------------------------------------------------------------------


def content_part(part: Any) -> dict[str, Any]:
    """One content part in OpenAI form."""
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        return {"type": "image_url", "image_url": {"url": part.as_data_url()}}
    if isinstance(part, AudioPart):
        return {"type": "input_audio", "input_audio": {"data": part.as_base64(), "format": part.format}}
    raise TypeError(f"cannot send a {type(part).__name__} content part to an OpenAI-compatible API")


def message_content(message: Message) -> str | list[dict[str, Any]]:
    if isinstance(message.content, str):
        return message.content
    return [content_part(p) for p in message.content]


def to_openai_message(message: Message) -> dict[str, Any]:
    """One message in OpenAI form.  An assistant turn with tool calls carries ``content: ""``, never null."""
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id or "", "content": message.text}
    if message.role == "assistant":
        out: dict[str, Any] = {"role": "assistant", "content": message.text}
        if message.tool_calls:
            out["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(dict(call.arguments))},
                }
                for call in message.tool_calls
            ]
    elif message.role == "system":
        out = {"role": "system", "content": message.text}
    else:
        out = {"role": message.role, "content": message_content(message)}
    if message.name and message.role in ("user", "assistant"):
        out["name"] = message.name
    return out


#: :func:`to_openai_message` computed once per message object (:mod:`rlm.memo`): a conversation's old
#: messages are not converted again each turn.  The dicts are shared between requests: read them only.
wire_message = memoize_by_identity(to_openai_message)


def to_openai_messages(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """The messages in OpenAI form.  The list is new; its dicts are shared (:data:`wire_message`):
    a caller that changes one copies it first."""
    return wire_message.many(messages)


def json_bytes(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON, as the SDKs and httpx write a request body."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


#: the JSON of :data:`wire_message`, once per message object
wire_json = memoize_by_identity(lambda message: json_bytes(wire_message(message)))


def json_body(params: Mapping[str, Any], messages: Sequence[Message]) -> bytes:
    """The JSON bytes of ``params``, a request body whose ``messages`` are ``messages`` in OpenAI form
    (:func:`request_params`), with each message's JSON taken from :data:`wire_json`: a turn encodes its
    new messages, not the whole conversation.  Parses to ``params`` (``messages`` comes first)."""
    rest = json_bytes({k: v for k, v in params.items() if k != "messages"})
    head = b'{"messages":[' + b",".join(wire_json.many(messages)) + b"]"  # type: ignore[attr-defined]
    return head + (b"," + rest[1:] if rest != b"{}" else b"}")


def to_openai_tools(tools: Sequence[ToolSchema]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": dict(t.parameters)},
        }
        for t in tools
    ]


def to_openai_tool_choice(choice: str | None) -> Any:
    """``None``/"auto"/"none"/"required" pass through; any other string names the tool to call."""
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "function": {"name": choice}}


def is_strict_compatible(schema: Any) -> bool:
    """Whether OpenAI's strict mode accepts ``schema``: every object closed, every property required."""
    if not isinstance(schema, Mapping):
        return True
    props = schema.get("properties")
    if schema.get("type") == "object" or isinstance(props, Mapping):
        props = props if isinstance(props, Mapping) else {}
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required") or ()) != set(props):
            return False
    subschemas: list[Any] = []
    for key in ("properties", "$defs", "definitions"):
        if isinstance(schema.get(key), Mapping):
            subschemas.extend(schema[key].values())
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(schema.get(key), list):
            subschemas.extend(schema[key])
    if isinstance(schema.get("items"), Mapping):
        subschemas.append(schema["items"])
    return all(is_strict_compatible(s) for s in subschemas)


def to_openai_response_format(response_format: Mapping[str, Any]) -> dict[str, Any]:
    """``{"name", "schema"[, "strict"]}`` as ``{"type": "json_schema", "json_schema": {...}}``.

    ``strict`` defaults to whether the schema qualifies for OpenAI's strict
    mode (closed objects, all properties required).
    """
    schema = dict(response_format.get("schema") or {})
    strict = response_format.get("strict")
    if strict is None:
        strict = is_strict_compatible(schema)
    json_schema: dict[str, Any] = {
        "name": str(response_format.get("name") or "response"),
        "schema": schema,
        "strict": bool(strict),
    }
    if response_format.get("description"):
        json_schema["description"] = str(response_format["description"])
    return {"type": "json_schema", "json_schema": json_schema}


def request_params(request: LLMRequest, *, max_tokens_param: str = "max_completion_tokens") -> dict[str, Any]:
    """The body of a Chat Completions call for ``request`` (the model is set by the caller)."""
    params: dict[str, Any] = {"messages": to_openai_messages(request.messages)}
    if request.tools:
        params["tools"] = to_openai_tools(request.tools)
        choice = to_openai_tool_choice(request.tool_choice)
        if choice is not None:
            params["tool_choice"] = choice
    if request.response_format:
        params["response_format"] = to_openai_response_format(request.response_format)
    if request.max_tokens is not None:
        params[max_tokens_param] = request.max_tokens
    for option in ("temperature", "top_p", "seed"):  # the sampling options, when set
        value = getattr(request, option)
        if value is not None:
            params[option] = value
    return params


# --- responses --------------------------------------------------------------------------------


def value_of(obj: Any, name: str, default: Any = None) -> Any:
    """``obj.name`` or ``obj[name]``: SDKs hand back typed objects, tests and proxies plain dicts."""
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def parse_arguments(raw: Any) -> dict[str, Any]:
    """Tool-call arguments as a dict; text that is not a JSON object is kept under ``_raw_arguments``."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {RAW_ARGUMENTS_KEY: raw}
    return value if isinstance(value, dict) else {RAW_ARGUMENTS_KEY: raw}


def parse_usage(usage: Any) -> Usage:
    """Prompt/completion tokens; the cost is left unknown (the kernel prices tokens)."""
    return Usage(
        input_tokens=int(value_of(usage, "prompt_tokens", 0) or 0),
        output_tokens=int(value_of(usage, "completion_tokens", 0) or 0),
        cost_usd=None,
    )


def from_openai_completion(completion: Any, *, model: str = "") -> LLMResponse:
    """A non-streamed completion (SDK object or dict) as an LLMResponse."""
    choices = value_of(completion, "choices") or []
    if not choices:
        raise ValueError("the response has no choices")
    choice = choices[0]
    msg = value_of(choice, "message")
    text = value_of(msg, "content") or value_of(msg, "refusal") or ""
    calls = tuple(
        ToolCall(
            id=value_of(tc, "id") or f"call_{i}",
            name=value_of(value_of(tc, "function"), "name") or "",
            arguments=parse_arguments(value_of(value_of(tc, "function"), "arguments")),
        )
        for i, tc in enumerate(value_of(msg, "tool_calls") or [])
    )
    return LLMResponse(
        message=Message.assistant(text, tool_calls=calls),
        usage=parse_usage(value_of(completion, "usage")),
        finish_reason=value_of(choice, "finish_reason"),
        model=value_of(completion, "model") or model,
    )


def content_detail(completion: Any) -> str:
    """What the first choice's message held, for the error of an empty answer: ``content: null`` or
    ``content: ""``, and no tool call."""
    try:
        choices = value_of(completion, "choices")
        message = value_of(choices[0], "message")
        if message is None:
            return "no message"
        content = value_of(message, "content")
    except (AttributeError, IndexError, KeyError, TypeError):
        return "no message"
    return ("content: null" if content is None else f"content: {json.dumps(content)}") + ", no tool call"


class StreamAssembler:
    """Turns streamed chunks into events: text as it comes, each tool call once complete, then StreamEnd.

    A tool call is complete when the next one starts, when the choice
    finishes, or when the stream ends.
    """

    def __init__(self, *, model: str = "") -> None:
        self.model = model
        self.text: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.emitted: set[int] = set()
        self.usage = Usage(cost_usd=None)
        self.finish_reason: str | None = None

    def _complete_calls(self, below: int | None = None) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for index in sorted(self.calls):
            if index in self.emitted or (below is not None and index >= below):
                continue
            self.emitted.add(index)
            events.append(ToolCallDelta(call=self._call(index)))
        return events

    def _call(self, index: int) -> ToolCall:
        data = self.calls[index]
        return ToolCall(
            id=data["id"] or f"call_{index}", name=data["name"], arguments=parse_arguments("".join(data["args"]))
        )

    def feed(self, chunk: Any) -> list[StreamEvent]:
        """The events one chunk yields."""
        events: list[StreamEvent] = []
        if value_of(chunk, "model"):
            self.model = value_of(chunk, "model")
        usage = value_of(chunk, "usage")
        if usage is not None:
            self.usage = parse_usage(usage)
        for choice in value_of(chunk, "choices") or []:
            if (value_of(choice, "index", 0) or 0) != 0:
                continue
            delta = value_of(choice, "delta")
            piece = value_of(delta, "content")
            if piece:
                self.text.append(piece)
                events.append(TextDelta(text=piece))
            for tc in value_of(delta, "tool_calls") or []:
                index = value_of(tc, "index")
                if index is None:
                    index = max(self.calls, default=-1) + (0 if value_of(tc, "id") is None else 1)
                if index not in self.calls:
                    events.extend(self._complete_calls(below=index))
                    self.calls[index] = {"id": None, "name": "", "args": []}
                data = self.calls[index]
                if value_of(tc, "id"):
                    data["id"] = value_of(tc, "id")
                fn = value_of(tc, "function")
                if value_of(fn, "name"):
                    data["name"] = value_of(fn, "name")
                if value_of(fn, "arguments"):
                    data["args"].append(value_of(fn, "arguments"))
            if value_of(choice, "finish_reason"):
                self.finish_reason = value_of(choice, "finish_reason")
                events.extend(self._complete_calls())
        return events

    def finish(self) -> list[StreamEvent]:
        """The remaining tool calls and the one StreamEnd."""
        events = self._complete_calls()
        calls = tuple(self._call(i) for i in sorted(self.calls))
        response = LLMResponse(
            message=Message.assistant("".join(self.text), tool_calls=calls),
            usage=self.usage,
            finish_reason=self.finish_reason,
            model=self.model,
        )
        events.append(StreamEnd(response=response))
        return events
