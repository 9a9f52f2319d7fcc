"""The contract between the kernel and LLM-backend plugins.

A backend plugin registers a factory through ``rlm_register_backends``; the
kernel calls ``factory(settings=BackendSettings(...))`` and gets an object
satisfying :class:`Backend`.  Requests and responses are provider-neutral.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol, Union, runtime_checkable

from attrs import define, field

from rlm.types import Message, ToolCall, Usage


@define(frozen=True, kw_only=True)
class ToolSchema:
    """A tool as the model sees it: name, description and JSON Schema of the arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any] = field(factory=lambda: {"type": "object", "properties": {}})


@define(frozen=True, kw_only=True)
class LLMRequest:
    """One call to a model.

    ``response_format`` is ``{"name": str, "schema": <JSON Schema>}`` for
    structured output (backends map it to what the provider offers), or None.
    ``tool_choice`` is None/"auto", "none", "required" or a tool name.
    ``temperature``, ``top_p`` and ``seed`` are None unless the user set them
    (``[rlm]``, ``RLM(...)``, per completion) or the kernel asks for other
    sampling (it raises the temperature of a call whose model keeps repeating
    failing code); a backend passes on those its capabilities list in
    ``sampling`` (the kernel refuses, before any call, a user's setting the
    backend does not list, and leaves out its own).
    """

    model: str
    messages: tuple[Message, ...] = field(converter=tuple)
    tools: tuple[ToolSchema, ...] = field(default=(), converter=tuple)
    tool_choice: str | None = None
    response_format: Mapping[str, Any] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    timeout: float | None = None


@define(frozen=True, kw_only=True)
class LLMResponse:
    """What the model answered: an assistant message (text and/or tool calls) and usage."""

    message: Message
    usage: Usage = field(factory=Usage)
    finish_reason: str | None = None
    model: str = ""


@define(frozen=True, kw_only=True)
class TextDelta:
    """A piece of streamed text."""

    text: str


@define(frozen=True, kw_only=True)
class ToolCallDelta:
    """A tool call assembled from the stream (emitted once complete)."""

    call: ToolCall


@define(frozen=True, kw_only=True)
class StreamEnd:
    """The last stream event: the whole response, as ``complete`` would return it."""

    response: LLMResponse


StreamEvent = Union[TextDelta, ToolCallDelta, StreamEnd]


#: Seconds a backend waits for the provider's next bytes (for an answer that is not streamed: the whole
#: answer) before it abandons the attempt and retries, unless its settings say otherwise.
DEFAULT_READ_TIMEOUT = 120.0


@define(frozen=True, kw_only=True)
class BackendSettings:
    """How to reach a provider.  ``options`` is the plugin's own config section.

    ``timeout`` bounds a request (the run's timeout); ``read_timeout`` is how
    long one attempt waits for the provider's next bytes before it is
    abandoned and retried like a connection failure (a plugin's own
    ``read_timeout`` option wins over it; when neither is set:
    :data:`DEFAULT_READ_TIMEOUT`; never more than ``timeout``).
    """

    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    timeout: float = 120.0
    max_retries: int = 3
    options: Any = None
    read_timeout: float | None = None


@define(frozen=True, kw_only=True)
class BackendCapabilities:
    """What a backend (for a given model) can do; the orchestrator adapts to it."""

    native_tools: bool = True
    json_schema: bool = True
    vision: bool = False
    audio: bool = False
    preferred_protocol: str = "tools"
    #: USD per million (input, output) tokens when the backend knows them (a local model: (0, 0)).
    pricing_per_mtok: tuple[float, float] | None = None
    #: The model's context window in tokens, when known.
    context_window: int | None = None
    #: Turns a top-level call gets when the user set no ``max_turns`` (a slow CPU model that has not
    #: answered in a few turns will not in twenty); None: the config's ``max_turns``.
    suggested_max_turns: int | None = None
    #: False: sub-calls are off unless the user turned them on (a small model that asks a sub-LLM
    #: about files it cannot see); None: the config's ``sub_calls``.
    suggested_sub_calls: bool | None = None
    #: The model that actually answers requests for the model string asked for, when the backend
    #: serves it with another (the embedded local model standing in when no key is set); it is
    #: what the trajectory's ``run_start`` names as ``model``.
    served_model: str | None = None
    #: The sampling options of :class:`LLMRequest` the backend sends to its provider
    #: (``temperature``, ``top_p``, ``seed``).
    sampling: frozenset[str] = frozenset({"temperature", "top_p", "seed"})


#: The sampling options a request may carry (:attr:`BackendCapabilities.sampling` lists those a backend sends).
SAMPLING_OPTIONS = ("temperature", "top_p", "seed")


@runtime_checkable
class Backend(Protocol):
    """A connection to an LLM provider.

    Errors are raised as :class:`rlm.errors.BackendError` subclasses with a
    message naming the cause and the fix; never a raw SDK exception.
    """

    name: str

    def capabilities(self, model: str) -> BackendCapabilities:
        """What this backend can do for ``model``."""
        ...

    async def complete(self, request: LLMRequest) -> LLMResponse:
        """One call; returns the whole response."""
        ...

    def stream(self, request: LLMRequest) -> AsyncIterator[StreamEvent]:
        """One streamed call: TextDelta/ToolCallDelta events, then exactly one StreamEnd."""
        ...

    async def aclose(self) -> None:
        """Release connections.  Idempotent."""
        ...
