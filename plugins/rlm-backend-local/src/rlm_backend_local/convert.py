"""Between rlm's types and what an OpenAI-compatible llama.cpp server accepts and returns.

The conversions are conservative, kept because small models and their
chat templates handle them best, and safe on any OpenAI-compatible
llama.cpp server (llama.cpp's own, as started by this plugin, or one given
as ``api_base``):

* tool results are sent as user text naming the tool and the call, not as
  ``role: "tool"`` messages (some servers' function-calling formats drop
  those from the prompt, and the model then invents the result);
* content is always a string, never ``null`` (tool calls the model made are
  kept as text too);
* ``response_format`` is ``{"type": "json_object", "schema": ...}``: the
  schema becomes a grammar that constrains generation;
* streams ask for usage (``stream_options.include_usage``; llama.cpp's
  server sends it in a last chunk); a server that sends none is counted one
  token per content chunk, with the prompt estimated.

Pure functions: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from rlm.backend import LLMRequest, LLMResponse, ToolSchema
from rlm.tokens import estimate_tokens
from rlm.types import Message, TextPart, ToolCall, Usage

#: Where arguments that are not a JSON object end up, so that the tool reports the problem.
RAW_ARGUMENTS_KEY = "_raw_arguments"


def _text(message: Message) -> str:
    if isinstance(message.content, str):
        return message.content
    pieces = []
    for part in message.content:
        if isinstance(part, TextPart):
            pieces.append(part.text)
        else:
            pieces.append(f"[{getattr(part, 'type', 'attachment')} omitted: the local model reads text only]")
    return "\n".join(pieces) if len(pieces) > 1 else "".join(pieces)


def _calls_as_text(calls: Iterable[ToolCall]) -> str:
    return "\n".join(
        f"[called tool {c.name} (call {c.id}) with {json.dumps(dict(c.arguments), ensure_ascii=False)}]"
        for c in calls
    )


def to_llama_message(message: Message) -> dict[str, str]:
    """One message as the llama.cpp server takes it: system/user/assistant, string content."""
    if message.role == "tool":
        label = f"{message.name} (call {message.tool_call_id})" if message.name else f"call {message.tool_call_id}"
        return {"role": "user", "content": f"Result of tool {label}:\n{_text(message)}"}
    text = _text(message)
    if message.role == "assistant":
        if message.tool_calls:
            text = f"{text}\n{_calls_as_text(message.tool_calls)}" if text else _calls_as_text(message.tool_calls)
        return {"role": "assistant", "content": text}
    return {"role": message.role, "content": text}


def to_llama_messages(messages: Iterable[Message]) -> list[dict[str, str]]:
    """The conversation for the server; consecutive user messages are merged (chat templates expect turns)."""
    out: list[dict[str, str]] = []
    for message in messages:
        converted = to_llama_message(message)
        if out and converted["role"] == "user" and out[-1]["role"] == "user":
            out[-1] = {"role": "user", "content": f"{out[-1]['content']}\n\n{converted['content']}"}
        else:
            out.append(converted)
    return out


def to_response_format(response_format: Mapping[str, Any]) -> dict[str, Any]:
    """rlm's ``{"name", "schema"}`` as llama.cpp's grammar-constrained JSON mode."""
    schema = response_format.get("schema")
    out: dict[str, Any] = {"type": "json_object"}
    if isinstance(schema, Mapping) and schema:
        out["schema"] = dict(schema)
    return out


def _tools(tools: Iterable[ToolSchema]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": dict(t.parameters)}} for t in tools]


#: The temperature used when the model's last two turns were identical (greedy decoding loops otherwise).
UNSTICK_TEMPERATURE = 0.7


def repeating(messages: Iterable[Message]) -> bool:
    """Whether the model's last two turns were the same text (it is stuck, e.g. rerunning failing code)."""
    turns = [m.text.strip() for m in messages if m.role == "assistant"]
    return len(turns) >= 2 and bool(turns[-1]) and turns[-1] == turns[-2]


def request_body(request: LLMRequest, *, model: str, max_tokens: int, temperature: float,
                 stream: bool = False) -> dict[str, Any]:
    """The Chat Completions body for ``request``.

    ``max_tokens`` caps the request's own limit; ``temperature`` applies
    when the request gives none, raised to :data:`UNSTICK_TEMPERATURE` when
    the model just repeated itself (at temperature 0 it would repeat the same
    failing code until the turn limit).  Tools are passed through (only a
    forced ``tool_choice`` is reliable at this model size; the REPL protocol,
    which this backend asks for, sends none).
    """
    if request.temperature is not None:
        chosen = request.temperature
    elif repeating(request.messages):
        chosen = max(temperature, UNSTICK_TEMPERATURE)
    else:
        chosen = temperature
    body: dict[str, Any] = {
        "model": model,
        "messages": to_llama_messages(request.messages),
        "max_tokens": min(request.max_tokens, max_tokens) if request.max_tokens else max_tokens,
        "temperature": chosen,
    }
    if request.seed is not None:
        body["seed"] = request.seed  # a new seed per retry of repeated code (llama.cpp samples with it)
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.response_format:
        body["response_format"] = to_response_format(request.response_format)
    if request.tools and request.tool_choice != "none":
        body["tools"] = _tools(request.tools)
        choice = request.tool_choice
        if choice in (None, "auto"):
            body["tool_choice"] = "auto"
        elif choice == "required" and len(request.tools) == 1:
            body["tool_choice"] = {"type": "function", "function": {"name": request.tools[0].name}}
        elif choice == "required":
            body["tool_choice"] = "auto"
        else:
            body["tool_choice"] = {"type": "function", "function": {"name": choice}}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}  # the usage comes in a last chunk, without choices
    return body


# --- responses --------------------------------------------------------------------------------


def parse_arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        return dict(raw)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {RAW_ARGUMENTS_KEY: str(raw)}
    return value if isinstance(value, dict) else {RAW_ARGUMENTS_KEY: str(raw)}


def _tool_calls(raw: Any) -> tuple[ToolCall, ...]:
    calls = []
    for index, item in enumerate(raw or ()):
        fn = item.get("function") or {}
        calls.append(ToolCall(id=str(item.get("id") or f"call_{index}"), name=str(fn.get("name") or ""),
                              arguments=parse_arguments(fn.get("arguments"))))
    return tuple(calls)


def usage_of(raw: Any) -> Usage:
    raw = raw if isinstance(raw, Mapping) else {}
    return Usage(input_tokens=int(raw.get("prompt_tokens") or 0),
                 output_tokens=int(raw.get("completion_tokens") or 0), cost_usd=0.0)


def parse_completion(data: Any, *, model: str) -> LLMResponse:
    """A Chat Completions response body as an LLMResponse; ValueError when it is not one."""
    if not isinstance(data, Mapping) or not isinstance(data.get("choices"), list) or not data["choices"]:
        raise ValueError("the response has no choices")
    choice = data["choices"][0]
    message = choice.get("message") if isinstance(choice, Mapping) else None
    if not isinstance(message, Mapping):
        raise ValueError("the response's choice has no message")
    content = message.get("content")
    text = content if isinstance(content, str) else ""
    return LLMResponse(
        message=Message.assistant(text, tool_calls=_tool_calls(message.get("tool_calls"))),
        usage=usage_of(data.get("usage")),
        finish_reason=choice.get("finish_reason"),
        model=str(data.get("model") or model),
    )


def estimate_prompt_tokens(body: Mapping[str, Any]) -> int:
    """The kernel's estimate (:func:`rlm.tokens.estimate_tokens`), plus a few per message for the chat template."""
    return estimate_tokens(body.get("messages") or [], per_message=4)


class StreamState:
    """Assembles streamed Chat Completions chunks into text pieces, tool calls and a final response."""

    def __init__(self, *, model: str, prompt_estimate: int) -> None:
        self.model = model
        self.text: list[str] = []
        self.chunks = 0
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self._calls: dict[int, dict[str, Any]] = {}
        self._prompt_estimate = prompt_estimate

    def feed(self, data: Mapping[str, Any]) -> str:
        """Take one chunk; returns its new text ("" when none)."""
        if data.get("usage"):
            self.usage = usage_of(data["usage"])
        if data.get("model"):
            self.model = str(data["model"])
        piece = ""
        for choice in data.get("choices") or ():
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if isinstance(content, str) and content:
                piece += content
                self.chunks += 1
            for call in delta.get("tool_calls") or ():
                slot = self._calls.setdefault(int(call.get("index", len(self._calls))),
                                              {"id": None, "name": "", "arguments": ""})
                fn = call.get("function") or {}
                slot["id"] = call.get("id") or slot["id"]
                slot["name"] += fn.get("name") or ""
                slot["arguments"] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        self.text.append(piece)
        return piece

    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(id=slot["id"] or f"call_{index}", name=slot["name"], arguments=parse_arguments(slot["arguments"]))
            for index, slot in sorted(self._calls.items())
        )

    def response(self) -> LLMResponse:
        usage = self.usage or Usage(input_tokens=self._prompt_estimate, output_tokens=self.chunks, cost_usd=0.0)
        return LLMResponse(message=Message.assistant("".join(self.text), tool_calls=self.tool_calls()),
                           usage=usage, finish_reason=self.finish_reason, model=self.model)
