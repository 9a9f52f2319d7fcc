"""Between rlm's provider-neutral types and the Anthropic Messages wire format.

Requests: system messages are lifted into the top-level ``system``; tool
results become ``tool_result`` blocks in a user turn; consecutive turns of
one role are merged (Anthropic wants user and assistant to alternate);
images become ``image`` blocks (base64 or URL source); audio is refused.
Structured output (``response_format``) is sent either natively
(``output_config.format``) or as a forced tool whose input is the answer
(see :func:`structured_output_mode`); in the second case the tool call
comes back as the JSON text of the reply, not as a tool call.

Responses: a ``Message`` (SDK object or dict) to an LLMResponse, and the
stream events assembled by :class:`StreamAssembler`.  Stop reasons are
given in OpenAI's words (``stop``, ``tool_calls``, ``length``...).  Pure
functions: no I/O, no SDK import.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from attrs import define
from rlm.backend import LLMRequest, LLMResponse, StreamEnd, StreamEvent, TextDelta, ToolCallDelta, ToolSchema
from rlm.errors import BackendError
from rlm.memo import memoize_by_identity
from rlm_backend_kit.openai_format import value_of as _get
from rlm.types import AudioPart, ImagePart, Message, TextPart, ToolCall, Usage

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
}

OUTPUT_TOOL_DESCRIPTION = (
    "Give your final answer by calling this tool: its input is the answer, a JSON value matching the schema."
)

_VERSIONED = re.compile(
    r"claude-(?:(?P<family>[a-z]+)-(?P<major>\d+)(?:-(?P<minor>\d{1,2}))?(?=$|[-@.:])"
    r"|(?P<major2>\d+)(?:-(?P<minor2>\d{1,2}))?-(?P<family2>[a-z]+))"
)


# --- models -----------------------------------------------------------------------------------


def model_version(model: str) -> tuple[str, int, int] | None:
    """(family, major, minor) of a Claude model id, or None when the name is not recognised."""
    found = _VERSIONED.search(model.lower())
    if not found:
        return None
    if found.group("family"):
        return found.group("family"), int(found.group("major")), int(found.group("minor") or 0)
    return found.group("family2"), int(found.group("major2")), int(found.group("minor2") or 0)


def supports_native_json(model: str) -> bool:
    """Whether the model takes ``output_config.format`` (Claude 4.5 and later, Opus 4.1).

    Unrecognised names (a proxy's aliases, previews) get False: the forced
    tool works with every model that has tools.
    """
    version = model_version(model)
    if version is None:
        return False
    family, major, minor = version
    return (major, minor) >= (4, 5) or (family == "opus" and (major, minor) >= (4, 1))


def default_max_tokens(model: str) -> int:
    """A max_tokens every model of the family accepts: 4096 for Claude 3, 8192 otherwise."""
    version = model_version(model)
    if version is not None and (version[1], version[2]) == (3, 0):
        return 4096
    return 8192


def structured_output_mode(setting: str, model: str) -> str:
    """``native`` or ``tool``, from the ``structured_output`` option and the model."""
    if setting in ("native", "tool"):
        return setting
    return "native" if supports_native_json(model) else "tool"


# --- requests ---------------------------------------------------------------------------------


def _image_block(part: ImagePart) -> dict[str, Any]:
    if part.data is not None or (part.url or "").startswith("data:"):
        media_type = part.media_type
        url = part.url or ""
        if url.startswith("data:") and ";" in url:
            media_type = url[5:].split(";", 1)[0] or media_type
        source = {"type": "base64", "media_type": media_type, "data": part.as_base64()}
    else:
        source = {"type": "url", "url": part.url}
    return {"type": "image", "source": source}


def content_blocks(message: Message) -> list[dict[str, Any]]:
    """The blocks of a user or assistant message (empty text is left out: Anthropic refuses it)."""
    if isinstance(message.content, str):
        return [{"type": "text", "text": message.content}] if message.content else []
    blocks: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            blocks.append(_image_block(part))
        elif isinstance(part, AudioPart):
            raise BackendError(
                "Anthropic models do not accept audio input",
                fix="transcribe the audio first, or use an audio-capable OpenAI model (openai/gpt-4o-audio-preview)",
            )
        else:
            raise TypeError(f"cannot send a {type(part).__name__} content part to Anthropic")
    return blocks


def to_anthropic_messages(messages: Iterable[Message]) -> tuple[str, list[dict[str, Any]]]:
    """(system prompt, messages): system lifted out, tool results in user turns, same roles merged."""
    system: list[str] = []
    out: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": list(blocks)})

    for message in messages:
        if message.role == "system":
            if message.text:
                system.append(message.text)
        else:
            add(*wire_blocks(message))
    return "\n\n".join(system), out


def message_blocks(message: Message) -> tuple[str, list[dict[str, Any]]]:
    """(role, content blocks) of one message that is not a system message (tool results go in user turns)."""
    if message.role == "tool":
        return "user", [{"type": "tool_result", "tool_use_id": message.tool_call_id or "", "content": message.text}]
    if message.role == "assistant":
        blocks = content_blocks(message)
        blocks += [
            {"type": "tool_use", "id": call.id, "name": call.name, "input": dict(call.arguments)}
            for call in message.tool_calls
        ]
        return "assistant", blocks
    return "user", content_blocks(message)


#: :func:`message_blocks` computed once per message object (:mod:`rlm.memo`): a conversation's old messages
#: are not converted again each turn.  The blocks are shared between requests: read them only
#: (:func:`to_anthropic_messages` builds new lists around them).
wire_blocks = memoize_by_identity(message_blocks)


def to_anthropic_tools(tools: Sequence[ToolSchema]) -> list[dict[str, Any]]:
    return [{"name": t.name, "description": t.description, "input_schema": dict(t.parameters)} for t in tools]


def to_anthropic_tool_choice(choice: str | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice == "auto":
        return {"type": "auto"}
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    return {"type": "tool", "name": choice}


def output_tool_name(response_format: Mapping[str, Any], taken: Iterable[str] = ()) -> str:
    """A tool name for the structured answer: the format's name made valid, unique among ``taken``."""
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", str(response_format.get("name") or "response"))[:64] or "response"
    taken = set(taken)
    while name in taken:
        name = ("answer_" + name)[:64]
    return name


@define(frozen=True, kw_only=True)
class Prepared:
    """The keyword arguments of ``messages.create`` and, in tool mode, the name of the answer tool."""

    params: dict[str, Any]
    output_tool: str | None = None


def request_params(
    request: LLMRequest, *, model: str, max_tokens: int, structured_output: str = "auto"
) -> Prepared:
    """The body of a Messages call for ``request``."""
    system, messages = to_anthropic_messages(request.messages)
    params: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens}
    if system:
        params["system"] = system
    sampling = {k: v for k, v in (("temperature", request.temperature), ("top_p", request.top_p)) if v is not None}
    if sampling:
        # The anthropic SDK (2.x) has no ``temperature``/``top_p`` arguments; the API still takes the fields.
        # A seed it does not take: the backend does not list it (BackendCapabilities.sampling).
        params["extra_body"] = sampling
    tools = to_anthropic_tools(request.tools)
    choice = to_anthropic_tool_choice(request.tool_choice) if request.tools else None
    output_tool: str | None = None
    if request.response_format:
        schema = dict(request.response_format.get("schema") or {})
        if structured_output_mode(structured_output, model) == "native":
            params["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        else:
            output_tool = output_tool_name(request.response_format, (t["name"] for t in tools))
            description = str(request.response_format.get("description") or OUTPUT_TOOL_DESCRIPTION)
            tools.append({"name": output_tool, "description": description, "input_schema": schema})
            if not request.tools or (choice is not None and choice["type"] == "none"):
                choice = {"type": "tool", "name": output_tool}
            elif choice is None or choice["type"] == "auto":
                choice = {"type": "any"}
    if tools:
        params["tools"] = tools
    if choice is not None:
        params["tool_choice"] = choice
    return Prepared(params=params, output_tool=output_tool)


# --- responses --------------------------------------------------------------------------------


def parse_usage(usage: Any, previous: Usage | None = None) -> Usage:
    """Input tokens (cache writes and reads included) and output tokens; cost left unknown."""
    before = previous or Usage(cost_usd=None)
    parts = [_get(usage, k) for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")]
    input_tokens = sum(int(p) for p in parts if p) if any(p is not None for p in parts) else before.input_tokens
    output = _get(usage, "output_tokens")
    return Usage(
        input_tokens=input_tokens,
        output_tokens=int(output) if output is not None else before.output_tokens,
        cost_usd=None,
    )


def _input_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    return {"_raw_arguments": value} if value not in (None, "") else {}


def from_anthropic_message(message: Any, *, model: str = "", output_tool: str | None = None) -> LLMResponse:
    """A non-streamed Message (SDK object or dict) as an LLMResponse."""
    text: list[str] = []
    calls: list[ToolCall] = []
    for block in _get(message, "content") or []:
        kind = _get(block, "type")
        if kind == "text":
            text.append(_get(block, "text") or "")
        elif kind == "tool_use":
            arguments = _input_dict(_get(block, "input"))
            if output_tool is not None and _get(block, "name") == output_tool:
                text.append(json.dumps(arguments))
            else:
                calls.append(ToolCall(id=_get(block, "id") or f"toolu_{len(calls)}", name=_get(block, "name") or "",
                                      arguments=arguments))
    stop = _get(message, "stop_reason")
    return LLMResponse(
        message=Message.assistant("".join(text), tool_calls=tuple(calls)),
        usage=parse_usage(_get(message, "usage")),
        finish_reason=STOP_REASONS.get(stop, stop) if stop else None,
        model=_get(message, "model") or model,
    )


class StreamAssembler:
    """Turns Messages stream events into TextDelta/ToolCallDelta events and one StreamEnd.

    A tool call is emitted at its ``content_block_stop``.  In tool mode the
    answer tool's JSON is streamed as text.  ``stopped`` tells whether the
    end marker (``message_stop``) came: a stream without it was cut short.
    """

    def __init__(self, *, model: str = "", output_tool: str | None = None) -> None:
        self.model = model
        self.output_tool = output_tool
        self.text: list[str] = []
        self.blocks: dict[int, dict[str, Any]] = {}
        self.calls: list[ToolCall] = []
        self.usage = Usage(cost_usd=None)
        self.finish_reason: str | None = None
        self.stopped = False

    def feed(self, event: Any) -> list[StreamEvent]:
        kind = _get(event, "type")
        events: list[StreamEvent] = []
        if kind == "message_start":
            message = _get(event, "message")
            self.model = _get(message, "model") or self.model
            self.usage = parse_usage(_get(message, "usage"), self.usage)
        elif kind == "content_block_start":
            block = _get(event, "content_block")
            index = _get(event, "index", len(self.blocks))
            btype = _get(block, "type")
            self.blocks[index] = {"type": btype, "id": _get(block, "id"), "name": _get(block, "name"), "json": []}
            if btype == "text" and _get(block, "text"):
                events.append(self._text(_get(block, "text")))
        elif kind == "content_block_delta":
            delta = _get(event, "delta")
            block = self.blocks.get(_get(event, "index"), {})
            dtype = _get(delta, "type")
            if dtype == "text_delta" and _get(delta, "text"):
                events.append(self._text(_get(delta, "text")))
            elif dtype == "input_json_delta" and block:
                piece = _get(delta, "partial_json") or ""
                block["json"].append(piece)
                if piece and self._is_answer(block):
                    events.append(self._text(piece))
        elif kind == "content_block_stop":
            block = self.blocks.get(_get(event, "index"), {})
            if block.get("type") == "tool_use" and not self._is_answer(block):
                raw = "".join(block["json"])
                call = ToolCall(id=block["id"] or f"toolu_{len(self.calls)}", name=block["name"] or "",
                                arguments=_parse_json_object(raw))
                self.calls.append(call)
                events.append(ToolCallDelta(call=call))
        elif kind == "message_delta":
            stop = _get(_get(event, "delta"), "stop_reason")
            if stop:
                self.finish_reason = STOP_REASONS.get(stop, stop)
            if _get(event, "usage") is not None:
                self.usage = parse_usage(_get(event, "usage"), self.usage)
        elif kind == "message_stop":
            self.stopped = True
        return events

    def _is_answer(self, block: Mapping[str, Any]) -> bool:
        return self.output_tool is not None and block.get("type") == "tool_use" and block.get("name") == self.output_tool

    def _text(self, piece: str) -> TextDelta:
        self.text.append(piece)
        return TextDelta(text=piece)

    def finish(self) -> list[StreamEvent]:
        response = LLMResponse(
            message=Message.assistant("".join(self.text), tool_calls=tuple(self.calls)),
            usage=self.usage,
            finish_reason=self.finish_reason,
            model=self.model,
        )
        return [StreamEnd(response=response)]


def _parse_json_object(raw: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {"_raw_arguments": raw}
    return value if isinstance(value, dict) else {"_raw_arguments": raw}
