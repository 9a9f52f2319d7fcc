"""Frozen attrs value types shared by the kernel and every plugin.

Messages and their content parts, tool calls and results, tool specs, token
usage, REPL results and the result of a completion.  Nothing here does I/O.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Union

from attrs import define, field

Role = Literal["system", "user", "assistant", "tool"]


@define(frozen=True, kw_only=True)
class TextPart:
    """A piece of text inside a multimodal message."""

    text: str
    type: Literal["text"] = "text"


@define(frozen=True, kw_only=True)
class ImagePart:
    """An image given either by URL (``https:``/``data:``) or by raw bytes."""

    url: str | None = None
    data: bytes | None = field(default=None, repr=False)
    media_type: str = "image/png"
    type: Literal["image"] = "image"

    def __attrs_post_init__(self) -> None:
        if (self.url is None) == (self.data is None):
            raise ValueError("ImagePart needs exactly one of url= or data=")

    def as_data_url(self) -> str:
        """The image as a URL: the given URL, or a ``data:`` URL built from the bytes."""
        if self.url is not None:
            return self.url
        assert self.data is not None
        return f"data:{self.media_type};base64,{base64.b64encode(self.data).decode('ascii')}"

    def as_base64(self) -> str:
        """Base64 of the bytes (or of the payload of a ``data:`` URL)."""
        if self.data is not None:
            return base64.b64encode(self.data).decode("ascii")
        assert self.url is not None
        if self.url.startswith("data:") and "," in self.url:
            return self.url.split(",", 1)[1]
        raise ValueError("this image is a remote URL; it has no inline bytes")


@define(frozen=True, kw_only=True)
class AudioPart:
    """Audio bytes with their format (``wav`` or ``mp3``)."""

    data: bytes = field(repr=False)
    format: str = "wav"
    type: Literal["audio"] = "audio"

    def as_base64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")


ContentPart = Union[TextPart, ImagePart, AudioPart]
Content = Union[str, tuple[ContentPart, ...]]


@define(frozen=True, kw_only=True)
class ToolCall:
    """One call of a tool requested by the model.  ``arguments`` is parsed JSON."""

    id: str
    name: str
    arguments: Mapping[str, Any] = field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The call as JSON-ready data: ``id``, ``name``, ``arguments``."""
        from rlm.trajectory import jsonable

        return {"id": jsonable(self.id), "name": jsonable(self.name), "arguments": jsonable(dict(self.arguments))}


def _content(value: Any) -> Content:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(value)
    raise TypeError(f"message content must be str or a list of parts, not {type(value).__name__}")


@define(frozen=True, kw_only=True)
class Message:
    """A chat message.  ``content`` is text, or a tuple of parts for multimodal input."""

    role: Role
    content: Content = field(default="", converter=_content)
    tool_calls: tuple[ToolCall, ...] = field(default=(), converter=tuple)
    tool_call_id: str | None = None
    name: str | None = None

    @property
    def text(self) -> str:
        """The text of the message, parts joined; images and audio are left out."""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    def to_dict(self) -> dict[str, Any]:
        """The message as JSON-ready data (``role``, ``content``, and ``tool_calls``, ``tool_call_id``,
        ``name`` when set); image and audio bytes are summarised, not copied."""
        from rlm.trajectory import escape_surrogates, message_json

        out = message_json(self)
        if self.name:
            out["name"] = escape_surrogates(self.name)
        return out

    @classmethod
    def system(cls, text: str) -> Message:
        return cls(role="system", content=text)

    @classmethod
    def user(cls, content: Content | list[ContentPart]) -> Message:
        return cls(role="user", content=content)

    @classmethod
    def assistant(cls, text: str = "", tool_calls: tuple[ToolCall, ...] = ()) -> Message:
        return cls(role="assistant", content=text, tool_calls=tool_calls)

    @classmethod
    def tool(cls, call_id: str, content: str, name: str | None = None) -> Message:
        return cls(role="tool", content=content, tool_call_id=call_id, name=name)


@define(frozen=True, kw_only=True)
class ToolResult:
    """What a tool returned.  ``content`` is JSON text (what goes back to the model)."""

    call_id: str
    name: str
    content: str
    is_error: bool = False
    duration_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data (every field)."""
        from rlm.trajectory import jsonable

        out: dict[str, Any] = jsonable(self)
        return out


ToolHandler = Callable[..., Awaitable[Any]]


@define(frozen=True, kw_only=True)
class ToolSpec:
    """A tool the model may call.

    ``parameters`` is a JSON Schema object.  ``handler`` is an async callable
    taking the arguments as keyword arguments (and ``ctx`` when it declares
    it); it returns anything JSON-serialisable.
    """

    name: str
    description: str
    parameters: Mapping[str, Any] = field(factory=lambda: {"type": "object", "properties": {}})
    handler: ToolHandler = field(repr=False)
    takes_context: bool = False

    def schema(self) -> dict[str, Any]:
        """The OpenAI-style function schema of this tool."""
        return {"name": self.name, "description": self.description, "parameters": dict(self.parameters)}


@define(frozen=True, kw_only=True)
class Usage:
    """Tokens and cost of one or more LLM calls.  ``cost_usd`` is None when unknown."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        cost = None if self.cost_usd is None or other.cost_usd is None else self.cost_usd + other.cost_usd
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cost_usd=cost,
        )


@define(frozen=True, kw_only=True)
class FinalSignal:
    """Raised inside a REPL by ``FINAL(answer)`` or ``FINAL_VAR(name)``.

    ``kind`` is ``"final"`` or ``"final_var"``; ``value`` is the answer as text
    (for ``final_var`` the variable's value rendered by the environment);
    ``variable`` names the variable for ``final_var``.
    """

    kind: Literal["final", "final_var"]
    value: str
    variable: str | None = None


@define(frozen=True, kw_only=True)
class REPLResult:
    """The outcome of one execution in an environment.

    ``output`` is what the code printed (stdout and stderr, in order);
    ``value`` the repr of a trailing expression, as a notebook shows it;
    ``error`` a traceback limited to the user's code, or a clear message for
    timeouts and limits; ``truncated`` says a cap cut ``output`` (or the value,
    error or final answer, which environments cap at the same limit);
    ``final`` is set when the code called FINAL/FINAL_VAR.  ``notice`` tells the
    caller what happened to the session before this execution, e.g. that it was
    restarted since the last call and its variables are gone (None: nothing).
    """

    output: str = ""
    error: str | None = None
    value: str | None = None
    execution_time_ms: float = 0.0
    truncated: bool = False
    memory_peak_bytes: int | None = None
    cpu_time_ms: float | None = None
    final: FinalSignal | None = None
    notice: str | None = None

    @property
    def success(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data (every field; ``final`` as a dict or None)."""
        from rlm.trajectory import jsonable

        out: dict[str, Any] = jsonable(self)
        return out


@define(frozen=True, kw_only=True)
class CompletionResult:
    """The result of ``RLM.completion``: the answer and what it cost.

    ``limit_hit`` names the limit that forced the answer (``max_turns``,
    ``token_budget``, ``cost_limit``, ``timeout``...), or is None.
    ``error_type`` is the class name of the :mod:`rlm.errors` error behind ``error``.
    ``answer_source`` says where the answer came from: ``text`` (the model's
    reply), ``final``/``final_var`` (the FINAL protocol), ``forced`` (the
    last turn after a limit) or ``error``.
    ``parsed`` holds the validated JSON value when ``response_format`` was given.
    ``path`` is ``rlm`` (the recursive loop: REPL or tools) or ``direct`` (one plain model call,
    for an input under ``direct_below_tokens``).
    """

    response: str
    trajectory_id: str
    total_calls: int = 0
    total_tokens: int = 0
    total_input_tokens: int = 0
    total_output_tokens: int = 0
    total_tool_calls: int = 0
    total_cost_usd: float | None = 0.0
    duration_ms: float = 0.0
    tool_calls: tuple[ToolCall, ...] = ()
    error: str | None = None
    error_type: str | None = None
    limit_hit: str | None = None
    answer_source: str = "text"
    parsed: Any = None
    path: str = "rlm"
    events: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)

    @property
    def success(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data: every field (``tool_calls`` and ``events`` as lists of dicts,
        ``parsed`` as it is) plus ``success``; ``json.dumps`` takes it as it is."""
        from rlm.trajectory import jsonable

        out: dict[str, Any] = jsonable(self)
        out["success"] = self.success
        return out
