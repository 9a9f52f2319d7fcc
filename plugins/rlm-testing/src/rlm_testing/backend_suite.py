"""``BackendConformance``: the tests every LLM-backend plugin runs against the scripted LLM server.

How to use it: in the plugin's tests, subclass it (the name must start with
``Test`` for pytest to collect it) and say how to build the backend::

    from rlm_testing.backend_suite import BackendConformance

    class TestOpenAIBackend(BackendConformance):
        protocol = "openai"            # or "anthropic": the wire protocol the backend speaks
        model = "gpt-4o-mini"          # the model string put in requests

        def make_backend(self, server, **settings):
            from rlm_openai.backend import OpenAIBackend
            return OpenAIBackend(settings=self.backend_settings(server, **settings))

The contract for subclasses:

- ``make_backend(server, **settings) -> Backend`` (required): a *new*
  backend talking to ``server`` (a started
  :class:`rlm_testing.server.ScriptedLLMServer`).  ``settings`` are
  :class:`rlm.backend.BackendSettings` fields the test wants (``timeout``,
  ``max_retries``); :meth:`BackendConformance.backend_settings` turns them
  into settings with ``base_url`` (``server.openai_base_url`` or
  ``server.anthropic_base_url``, by ``protocol``) and ``api_key`` filled in.
  Constructing a backend must not do I/O.
- ``protocol`` (``"openai"`` | ``"anthropic"``), ``model``, ``api_key``:
  class attributes.
- Optional hooks: ``json_reply(value)`` (the scripted step a structured
  output answer is; default: text that is the JSON) and
  ``assert_schema_sent(body, name, schema)`` for backends that carry JSON
  Schema in another provider form.

What the suite expects of a backend (each test asserts what the server
recorded, not only what came back):

- text, usage (``input_tokens``/``output_tokens`` as the provider said),
  ``max_tokens``/``temperature``/system prompt sent in the provider's form;
  the API key sent (``Authorization: Bearer`` / ``x-api-key``);
- tools sent in the provider's schema form; tool calls parsed (id, name,
  arguments as a dict), several per turn; tool results sent back in the
  provider's form (OpenAI ``role: tool`` messages; Anthropic ``tool_result``
  blocks, all in one user message);
- streaming: ``TextDelta`` events concatenating to the text, one
  ``ToolCallDelta`` per complete call, then exactly one ``StreamEnd``
  (last) carrying the whole response and usage; OpenAI requests ask for
  ``stream_options.include_usage``;
- ``response_format`` sent as JSON Schema (OpenAI ``json_schema``), images
  (``ImagePart``) sent inline; skipped when ``capabilities(model)`` says
  ``json_schema``/``vision``/``native_tools`` is False;
- 429 and 5xx retried up to ``settings.max_retries`` times, waiting at least
  ``Retry-After``; permanent errors (401, 404 model, context too long) not
  retried; failures raised as :class:`rlm.errors.BackendError` subclasses
  (``RateLimitError``, ``AuthenticationError``, ``ModelNotFoundError``,
  ``ContextTooLongError``; any non-permanent one for 5xx, timeouts,
  malformed bodies and dropped connections) with a readable message, never a
  raw SDK exception; a timeout's message says "timeout"/"timed out";
- faults are errors, never an answer: a stream cut before its end marker
  (no ``finish_reason``/``[DONE]``, no ``message_stop``) while the HTTP
  response itself ended cleanly, a JSON body cut in half, an answer with no
  content (OpenAI ``content: null``, Anthropic ``content: []``) and an HTML
  page with status 200 (the message says "HTML"); a stream cut before any
  text is retried;
- ``settings.read_timeout`` bounds each attempt's wait for the server: a
  hung server (:meth:`Reply.hang`) or one that stalls mid-stream is
  abandoned after it and the attempt retried like a connection failure (a
  stream only while nothing was yielded), with a message that says
  "timeout"/"timed out".

Async calls run through :func:`run_async` (``asyncio.run``), so no
pytest-asyncio is needed.  The ``scripted_llm`` fixture comes from
:mod:`rlm_testing.pytest_plugin` (loaded automatically when rlm-testing is
installed).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, ClassVar, Literal, TypeVar

import pytest
from rlm.backend import (
    Backend,
    BackendCapabilities,
    BackendSettings,
    LLMRequest,
    LLMResponse,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolSchema,
)
from rlm.errors import (
    AuthenticationError,
    BackendError,
    ContextTooLongError,
    ModelNotFoundError,
    RateLimitError,
)
from rlm.types import ImagePart, Message, TextPart, ToolCall

from rlm_testing.server import RecordedRequest, Reply, ScriptedLLMServer

T = TypeVar("T")

#: A 1x1 transparent PNG.
TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
)

WEATHER_TOOL = ToolSchema(
    name="get_weather",
    description="Current weather in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
TIME_TOOL = ToolSchema(
    name="get_time",
    description="Current local time in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from a sync test (a fresh event loop each time)."""
    return asyncio.run(coro)


# --- reading what a backend sent ----------------------------------------------


def text_of(content: Any) -> str:
    """The text of a message's content as sent: a string, or the text parts of a list joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return ""


def contains(haystack: Any, needle: Any) -> bool:
    """Whether ``needle`` equals ``haystack`` or any value nested in it."""
    if haystack == needle:
        return True
    if isinstance(haystack, Mapping):
        return any(contains(v, needle) for v in haystack.values())
    if isinstance(haystack, list):
        return any(contains(v, needle) for v in haystack)
    return False


def _parts(content: Any) -> list[Mapping[str, Any]]:
    return [p for p in content if isinstance(p, Mapping)] if isinstance(content, list) else []


class BackendConformance:
    """Base class of a backend plugin's conformance tests; see the module docstring."""

    protocol: ClassVar[Literal["openai", "anthropic"]] = "openai"
    model: ClassVar[str] = "scripted-model"
    api_key: ClassVar[str] = "test-key-0123456789"
    #: settings used unless a test gives its own (small waits keep the suite fast)
    default_settings: ClassVar[Mapping[str, Any]] = {"timeout": 5.0, "max_retries": 2}
    #: whether the calls of one backend on one event loop must share one kept-alive connection (True for the
    #: backends over the official SDKs and litellm; a client that opens a connection per call leaves it False)
    keeps_connections_alive: ClassVar[bool] = False

    # --- what subclasses provide ----------------------------------------------

    def make_backend(self, server: ScriptedLLMServer, **settings: Any) -> Backend:
        """A new backend talking to ``server``; see the module docstring."""
        raise NotImplementedError(f"{type(self).__name__} must define make_backend(self, server, **settings)")

    def backend_settings(self, server: ScriptedLLMServer, **overrides: Any) -> BackendSettings:
        """BackendSettings for ``server``: base_url by protocol, the test key, suite defaults, then ``overrides``."""
        values: dict[str, Any] = {"api_key": self.api_key, "base_url": server.base_url(self.protocol)}
        values.update(self.default_settings)
        values.update(overrides)
        return BackendSettings(**values)

    def json_reply(self, value: Any) -> Reply:
        """The scripted step answering a structured-output request with ``value``."""
        return Reply.json(value)

    def assert_schema_sent(self, body: Mapping[str, Any], name: str, schema: Mapping[str, Any]) -> None:
        """The request carries the JSON Schema of ``response_format`` in the provider's form."""
        if self.protocol == "openai":
            rf = body.get("response_format")
            assert isinstance(rf, Mapping), f"no response_format in the request: {sorted(body)}"
            assert rf.get("type") == "json_schema", f"response_format is not json_schema: {rf}"
            js = rf.get("json_schema") or {}
            assert js.get("name") == name, f"json_schema.name is {js.get('name')!r}, expected {name!r}"
            assert (js.get("schema") or {}).get("properties") == schema["properties"], f"schema not sent: {js}"
        else:
            rest = {k: v for k, v in body.items() if k != "messages"}
            assert contains(rest, dict(schema["properties"])), f"the JSON Schema is nowhere in the request: {rest}"

    # --- helpers for tests ----------------------------------------------------

    def request(self, *messages: Message, **fields: Any) -> LLMRequest:
        """An LLMRequest for ``self.model`` (default message: a short user prompt)."""
        return LLMRequest(model=self.model, messages=messages or (Message.user("Hello"),), **fields)

    def using_backend(self, server: ScriptedLLMServer, use: Callable[[Backend], Awaitable[T]], **settings: Any) -> T:
        """Make a backend, run ``await use(backend)``, close the backend; returns what ``use`` returned."""

        async def go() -> T:
            backend = self.make_backend(server, **settings)
            try:
                return await use(backend)
            finally:
                await backend.aclose()

        return run_async(go())

    def complete(self, server: ScriptedLLMServer, request: LLMRequest, **settings: Any) -> LLMResponse:
        """``backend.complete(request)`` on a fresh backend."""
        return self.using_backend(server, lambda b: b.complete(request), **settings)

    def stream(self, server: ScriptedLLMServer, request: LLMRequest, **settings: Any) -> list[StreamEvent]:
        """All events of ``backend.stream(request)`` on a fresh backend."""

        async def collect(backend: Backend) -> list[StreamEvent]:
            return [event async for event in backend.stream(request)]

        return self.using_backend(server, collect, **settings)

    def failure(
        self, server: ScriptedLLMServer, request: LLMRequest, *, stream: bool = False, **settings: Any
    ) -> BackendError:
        """The BackendError a call raises; the test fails if it succeeds or leaks another exception."""
        try:
            if stream:
                self.stream(server, request, **settings)
            else:
                self.complete(server, request, **settings)
        except BackendError as exc:
            assert_clear_message(exc)
            return exc
        except Exception as exc:  # noqa: BLE001 - the point is to report what leaked
            pytest.fail(
                f"the backend leaked {type(exc).__module__}.{type(exc).__qualname__} ({exc}) "
                "instead of raising an rlm.errors.BackendError subclass"
            )
        pytest.fail("the call succeeded; a BackendError was expected")

    def capabilities(self, server: ScriptedLLMServer) -> BackendCapabilities:
        backend = self.make_backend(server)
        try:
            return backend.capabilities(self.model)
        finally:
            run_async(backend.aclose())

    def sent_tool_calls(self, body: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        """(id, name, arguments) of the tool calls in the assistant messages a request carried."""
        found: list[tuple[str, str, dict[str, Any]]] = []
        for msg in body.get("messages") or []:
            if msg.get("role") != "assistant":
                continue
            if self.protocol == "openai":
                for call in msg.get("tool_calls") or []:
                    fn = call.get("function") or {}
                    args = fn.get("arguments")
                    found.append((call.get("id"), fn.get("name"), json.loads(args) if isinstance(args, str) else args))
            else:
                for part in _parts(msg.get("content")):
                    if part.get("type") == "tool_use":
                        found.append((part.get("id"), part.get("name"), dict(part.get("input") or {})))
        return found

    def sent_tool_results(self, body: Mapping[str, Any]) -> list[tuple[int, str, str]]:
        """(message index, call id, text) of the tool results a request carried."""
        found: list[tuple[int, str, str]] = []
        for index, msg in enumerate(body.get("messages") or []):
            if self.protocol == "openai":
                if msg.get("role") == "tool":
                    found.append((index, msg.get("tool_call_id"), text_of(msg.get("content"))))
            else:
                for part in _parts(msg.get("content")):
                    if part.get("type") == "tool_result":
                        assert msg.get("role") == "user", f"tool_result must be in a user message: {msg}"
                        found.append((index, part.get("tool_use_id"), text_of(part.get("content"))))
        return found

    def assert_tools_sent(self, body: Mapping[str, Any], tools: Iterable[ToolSchema]) -> None:
        """The request offers ``tools`` in the provider's schema form."""
        sent = body.get("tools")
        assert isinstance(sent, list), f"no tools in the request: {sorted(body)}"
        by_name: dict[str, Mapping[str, Any]] = {}
        for item in sent:
            if self.protocol == "openai":
                assert item.get("type") == "function", f"an OpenAI tool is {{'type': 'function', ...}}: {item}"
                fn = item.get("function") or {}
                by_name[fn.get("name")] = {"description": fn.get("description"), "schema": fn.get("parameters")}
            else:
                by_name[item.get("name")] = {"description": item.get("description"), "schema": item.get("input_schema")}
        for tool in tools:
            assert tool.name in by_name, f"tool {tool.name!r} not sent; sent: {sorted(by_name)}"
            assert by_name[tool.name]["description"] == tool.description
            schema = by_name[tool.name]["schema"] or {}
            assert schema.get("properties") == tool.parameters["properties"], f"schema of {tool.name!r}: {schema}"

    def assert_auth_sent(self, sent: RecordedRequest) -> None:
        if self.protocol == "openai":
            assert sent.header("authorization") == f"Bearer {self.api_key}", "API key not sent as Bearer token"
        else:
            keys = (sent.header("x-api-key"), sent.header("authorization"))
            assert keys[0] == self.api_key or keys[1] == f"Bearer {self.api_key}", (
                "API key not sent as x-api-key (or Authorization: Bearer)"
            )
            assert sent.header("anthropic-version"), "anthropic-version header missing"

    def _skip_unless(self, server: ScriptedLLMServer, capability: str) -> None:
        if not getattr(self.capabilities(server), capability):
            pytest.skip(f"the backend declares {capability}=False for {self.model}")

    # --- the tests --------------------------------------------------------------

    def test_is_a_backend(self, scripted_llm: ScriptedLLMServer) -> None:
        async def check() -> None:
            backend = self.make_backend(scripted_llm)
            assert isinstance(backend, Backend), "the object does not satisfy rlm.backend.Backend"
            assert isinstance(backend.name, str) and backend.name
            assert isinstance(backend.capabilities(self.model), BackendCapabilities)
            await backend.aclose()
            await backend.aclose()  # idempotent

        run_async(check())
        assert scripted_llm.requests == [], "creating or closing a backend must not call the provider"

    def test_calls_in_one_loop_reuse_one_connection_and_a_closed_backend_leaves_it_closed(
            self, scripted_llm: ScriptedLLMServer) -> None:
        """Keep-alive: a run's calls share one connection (a new one per call costs a TCP -- and TLS -- setup);
        and after ``aclose`` a new backend on a new event loop still answers (nothing of the old loop kept)."""
        scripted_llm.script([Reply.text("one"), Reply.text("two"), Reply.text("three"), Reply.text("four")])

        async def calls() -> list[str]:
            backend = self.make_backend(scripted_llm)
            try:
                texts = [(await backend.complete(self.request(Message.user("x")))).message.text for _ in range(2)]
                events = [e async for e in backend.stream(self.request(Message.user("x")))]
                texts.append("".join(getattr(e, "text", "") for e in events[:-1]))
                return texts
            finally:
                await backend.aclose()

        assert run_async(calls()) == ["one", "two", "three"]
        clients = [r.client for r in scripted_llm.requests]
        if self.keeps_connections_alive:
            assert len(set(clients)) == 1, f"each call opened a connection: {clients}"

        async def again() -> str:
            backend = self.make_backend(scripted_llm)
            try:
                return (await backend.complete(self.request(Message.user("x")))).message.text
            finally:
                await backend.aclose()

        assert run_async(again()) == "four"

    def test_plain_text(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.text("Hello from the scripted model.", input_tokens=12, output_tokens=7)])
        request = self.request(
            Message.system("You are terse."), Message.user("Say hello."), max_tokens=50, temperature=0.0
        )
        response = self.complete(scripted_llm, request)

        assert isinstance(response, LLMResponse)
        assert response.message.role == "assistant"
        assert response.message.text == "Hello from the scripted model."
        assert response.message.tool_calls == ()
        assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 7)

        sent = scripted_llm.last_request
        body = sent.body
        assert len(scripted_llm.requests) == 1
        assert sent.protocol == self.protocol, f"request went to {sent.path}"
        assert sent.model == self.model
        assert not sent.stream
        self.assert_auth_sent(sent)
        assert body.get("temperature") == 0.0
        if self.protocol == "openai":
            system = [m for m in body["messages"] if m.get("role") in ("system", "developer")]
            assert [text_of(m.get("content")) for m in system] == ["You are terse."]
            assert body.get("max_completion_tokens", body.get("max_tokens")) == 50
        else:
            assert text_of(body.get("system")) == "You are terse.", "Anthropic takes the system prompt top-level"
            assert all(m.get("role") != "system" for m in body["messages"])
            assert body.get("max_tokens") == 50
        users = [m for m in body["messages"] if m.get("role") == "user"]
        assert [text_of(m.get("content")) for m in users] == ["Say hello."]

    def test_tool_round_trip(self, scripted_llm: ScriptedLLMServer) -> None:
        self._skip_unless(scripted_llm, "native_tools")
        scripted_llm.script(
            [Reply.tool_calls(("get_weather", {"city": "Paris"})), Reply.text("It is 21 degrees in Paris.")]
        )
        question = Message.user("What is the weather in Paris?")

        async def conversation(backend: Backend) -> tuple[LLMResponse, LLMResponse]:
            first = await backend.complete(self.request(question, tools=(WEATHER_TOOL,)))
            (call,) = first.message.tool_calls
            result = Message.tool(call.id, '{"temperature_c": 21}', name=call.name)
            second = await backend.complete(self.request(question, first.message, result, tools=(WEATHER_TOOL,)))
            return first, second

        first, second = self.using_backend(scripted_llm, conversation)
        (call,) = first.message.tool_calls
        assert isinstance(call, ToolCall)
        assert call.name == "get_weather"
        assert dict(call.arguments) == {"city": "Paris"}
        assert call.id, "a tool call needs the provider's id to send the result back"
        assert second.message.text == "It is 21 degrees in Paris."

        one, two = scripted_llm.requests
        self.assert_tools_sent(one.body, [WEATHER_TOOL])
        if self.protocol == "anthropic":
            assert isinstance(one.body.get("max_tokens"), int) and one.body["max_tokens"] > 0, (
                "Anthropic requires max_tokens; send a default when the request has none"
            )
        assert self.sent_tool_calls(two.body) == [(call.id, "get_weather", {"city": "Paris"})]
        ((result_index, result_id, result_text),) = self.sent_tool_results(two.body)
        assert result_id == call.id
        assert json.loads(result_text) == {"temperature_c": 21}
        assert result_index == len(two.body["messages"]) - 1, "the tool result must be the last message"

    def test_parallel_tool_calls(self, scripted_llm: ScriptedLLMServer) -> None:
        self._skip_unless(scripted_llm, "native_tools")
        scripted_llm.script(
            [
                Reply.tool_calls(("get_weather", {"city": "Paris"}), ("get_time", {"city": "Tokyo"})),
                Reply.text("Sunny in Paris; it is 9pm in Tokyo."),
            ]
        )
        question = Message.user("Weather in Paris and time in Tokyo?")
        tools = (WEATHER_TOOL, TIME_TOOL)

        async def conversation(backend: Backend) -> tuple[LLMResponse, LLMResponse]:
            first = await backend.complete(self.request(question, tools=tools))
            results = [Message.tool(c.id, json.dumps({"for": c.name}), name=c.name) for c in first.message.tool_calls]
            second = await backend.complete(self.request(question, first.message, *results, tools=tools))
            return first, second

        first, second = self.using_backend(scripted_llm, conversation)
        calls = first.message.tool_calls
        assert [(c.name, dict(c.arguments)) for c in calls] == [
            ("get_weather", {"city": "Paris"}),
            ("get_time", {"city": "Tokyo"}),
        ]
        assert len({c.id for c in calls}) == 2, "each call keeps its own id"
        assert second.message.text == "Sunny in Paris; it is 9pm in Tokyo."

        two = scripted_llm.requests[1]
        assert [c[0] for c in self.sent_tool_calls(two.body)] == [c.id for c in calls]
        results = self.sent_tool_results(two.body)
        assert [(r[1], json.loads(r[2])) for r in results] == [(c.id, {"for": c.name}) for c in calls]
        if self.protocol == "anthropic":
            assert len({r[0] for r in results}) == 1, "Anthropic wants all tool results in one user message"

    def test_streaming_text(self, scripted_llm: ScriptedLLMServer) -> None:
        text = "Streaming works one word at a time."
        scripted_llm.script([Reply.text(text, input_tokens=9, output_tokens=8)])
        events = self.stream(scripted_llm, self.request(Message.user("Stream, please.")))

        deltas = [e for e in events if isinstance(e, TextDelta)]
        assert len(deltas) >= 2, "the server streams word by word; each piece should be its own TextDelta"
        assert "".join(d.text for d in deltas) == text
        assert sum(isinstance(e, StreamEnd) for e in events) == 1
        assert isinstance(events[-1], StreamEnd), "StreamEnd comes last"
        final = events[-1].response
        assert final.message.text == text
        assert (final.usage.input_tokens, final.usage.output_tokens) == (9, 8)

        sent = scripted_llm.last_request
        assert sent.stream, "a streamed call sends stream: true"
        if self.protocol == "openai":
            assert (sent.body.get("stream_options") or {}).get("include_usage") is True, (
                "OpenAI only reports streamed usage with stream_options.include_usage"
            )

    def test_streaming_tool_calls(self, scripted_llm: ScriptedLLMServer) -> None:
        self._skip_unless(scripted_llm, "native_tools")
        scripted_llm.script(
            [
                Reply.tool_calls(
                    ("get_weather", {"city": "Paris", "unit": "celsius"}),
                    ("get_time", {"city": "Tokyo"}),
                    text="Let me check.",
                    input_tokens=30,
                    output_tokens=20,
                )
            ]
        )
        events = self.stream(
            scripted_llm, self.request(Message.user("Weather and time?"), tools=(WEATHER_TOOL, TIME_TOOL))
        )

        assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Let me check."
        streamed = [e.call for e in events if isinstance(e, ToolCallDelta)]
        expected = [("get_weather", {"city": "Paris", "unit": "celsius"}), ("get_time", {"city": "Tokyo"})]
        assert [(c.name, dict(c.arguments)) for c in streamed] == expected, "arguments assembled from chunks"
        assert all(c.id for c in streamed) and len({c.id for c in streamed}) == 2
        assert isinstance(events[-1], StreamEnd)
        final = events[-1].response
        assert [(c.id, c.name, dict(c.arguments)) for c in final.message.tool_calls] == [
            (c.id, c.name, dict(c.arguments)) for c in streamed
        ]
        assert final.message.text == "Let me check."
        assert (final.usage.input_tokens, final.usage.output_tokens) == (30, 20)
        self.assert_tools_sent(scripted_llm.last_request.body, [WEATHER_TOOL, TIME_TOOL])

    def test_json_schema_output(self, scripted_llm: ScriptedLLMServer) -> None:
        self._skip_unless(scripted_llm, "json_schema")
        schema = {
            "type": "object",
            "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
            "required": ["city", "population"],
            "additionalProperties": False,
        }
        value = {"city": "Paris", "population": 2102650}
        scripted_llm.script([self.json_reply(value)])
        request = self.request(
            Message.user("Facts about Paris as JSON."), response_format={"name": "city_facts", "schema": schema}
        )
        response = self.complete(scripted_llm, request)

        assert json.loads(response.message.text) == value
        self.assert_schema_sent(scripted_llm.last_request.body, "city_facts", schema)

    def test_image_input(self, scripted_llm: ScriptedLLMServer) -> None:
        self._skip_unless(scripted_llm, "vision")
        scripted_llm.script([Reply.text("A transparent pixel.")])
        image = ImagePart(data=TINY_PNG, media_type="image/png")
        message = Message.user((TextPart(text="What is in this image?"), image))
        response = self.complete(scripted_llm, self.request(message))
        assert response.message.text == "A transparent pixel."

        (user,) = [m for m in scripted_llm.last_request.body["messages"] if m.get("role") == "user"]
        parts = _parts(user.get("content"))
        assert text_of(parts) == "What is in this image?"
        if self.protocol == "openai":
            images = [p for p in parts if p.get("type") == "image_url"]
            assert [(p.get("image_url") or {}).get("url") for p in images] == [image.as_data_url()]
        else:
            images = [p for p in parts if p.get("type") == "image"]
            assert [p.get("source") for p in images] == [
                {"type": "base64", "media_type": "image/png", "data": image.as_base64()}
            ]

    def test_rate_limit_retry_after_then_success(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.rate_limited(retry_after=0.2), Reply.text("after the wait")])
        response = self.complete(scripted_llm, self.request(), max_retries=2)
        assert response.message.text == "after the wait"
        first, second = scripted_llm.requests
        waited = second.time - first.time
        assert waited >= 0.2 - 0.005, f"retried after {waited:.3f}s, before Retry-After (0.2s)"

    def test_stream_rate_limit_then_success(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.rate_limited(retry_after=0.05), Reply.text("streamed after the wait")])
        events = self.stream(scripted_llm, self.request(), max_retries=2)
        assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "streamed after the wait"
        assert isinstance(events[-1], StreamEnd)
        assert len(scripted_llm.requests) == 2

    def test_rate_limit_exhausted(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.rate_limited(retry_after=0.05)] * 3)
        error = self.failure(scripted_llm, self.request(), max_retries=2)
        assert isinstance(error, RateLimitError), f"got {type(error).__name__}: {error}"
        assert len(scripted_llm.requests) == 3, "one call and max_retries=2 retries"

    def test_server_error_retried_then_clear_error(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.server_error(retry_after=0.05)] * 3)
        error = self.failure(scripted_llm, self.request(), max_retries=2)
        assert not error.permanent, "a 500 is transient"
        assert not isinstance(error, (AuthenticationError, ModelNotFoundError, ContextTooLongError))
        assert len(scripted_llm.requests) == 3, "one call and max_retries=2 retries"

    def test_timeout(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.slow(3.0, then=Reply.text("too late"))])
        started = time.monotonic()
        error = self.failure(scripted_llm, self.request(), timeout=0.3, max_retries=0)
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, f"settings.timeout=0.3 was not honoured (the call took {elapsed:.1f}s)"
        message = str(error).lower()
        assert "timeout" in message or "timed out" in message, f"the message does not say timeout: {error}"
        assert not error.permanent

    def test_malformed_body(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.malformed()])
        self.failure(scripted_llm, self.request(), max_retries=0)
        assert len(scripted_llm.requests) == 1

    def test_dropped_connection(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.drop()])
        error = self.failure(scripted_llm, self.request(), max_retries=0)
        assert not error.permanent, "a dropped connection is transient"

    def test_invalid_api_key(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.invalid_api_key(), Reply.text("must not be reached")])
        error = self.failure(scripted_llm, self.request(), max_retries=2)
        assert isinstance(error, AuthenticationError), f"got {type(error).__name__}: {error}"
        assert error.permanent
        assert len(scripted_llm.requests) == 1, "a bad key is not retried"

    def test_stream_invalid_api_key(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.invalid_api_key(), Reply.text("must not be reached")])
        error = self.failure(scripted_llm, self.request(), stream=True, max_retries=2)
        assert isinstance(error, AuthenticationError), f"got {type(error).__name__}: {error}"
        assert len(scripted_llm.requests) == 1

    def test_unknown_model(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.model_not_found(), Reply.text("must not be reached")])
        error = self.failure(scripted_llm, self.request(), max_retries=2)
        assert isinstance(error, ModelNotFoundError), f"got {type(error).__name__}: {error}"
        assert self.model in str(error), "the message names the model"
        assert len(scripted_llm.requests) == 1, "an unknown model is not retried"

    def test_context_too_long(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.context_too_long(), Reply.text("must not be reached")])
        error = self.failure(scripted_llm, self.request(), max_retries=2)
        assert isinstance(error, ContextTooLongError), f"got {type(error).__name__}: {error}"
        assert len(scripted_llm.requests) == 1, "a too-long prompt is not retried"

    # --- faults: what arrived is not an answer ------------------------------------

    def test_truncated_stream_is_an_error(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.truncated("Half of an answer that")] * 3)
        error = self.failure(scripted_llm, self.request(), stream=True, max_retries=2)
        assert not error.permanent, "a stream cut short is transient"

    def test_stream_cut_before_any_text_is_retried(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.truncated("", keep=1), Reply.text("The whole answer.")])
        events = self.stream(scripted_llm, self.request(), max_retries=2)
        assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "The whole answer."
        assert isinstance(events[-1], StreamEnd) and events[-1].response.message.text == "The whole answer."
        assert len(scripted_llm.requests) == 2, "nothing was yielded: the cut stream is retried"

    def test_truncated_body_is_an_error(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.truncated("Half of an answer that")] * 3)
        self.failure(scripted_llm, self.request(), max_retries=2)

    def test_empty_answer_is_an_error(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.empty()] * 3)
        error = self.failure(scripted_llm, self.request(), max_retries=2)
        assert not isinstance(error, (AuthenticationError, ModelNotFoundError, ContextTooLongError))

    def test_stream_empty_answer_is_an_error(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.empty()] * 3)
        self.failure(scripted_llm, self.request(), stream=True, max_retries=2)

    def test_html_page_is_an_error(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.html()] * 3)
        error = self.failure(scripted_llm, self.request(), max_retries=2)
        assert "html" in str(error).lower(), f"the message does not say what came instead: {error}"

    def test_stream_html_page_is_an_error(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.html()] * 3)
        error = self.failure(scripted_llm, self.request(), stream=True, max_retries=2)
        assert "html" in str(error).lower(), f"the message does not say what came instead: {error}"

    # --- faults: a server that stops answering --------------------------------------

    def test_hung_server_is_abandoned_after_the_read_timeout_and_retried(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.hang(), Reply.text("Answered on the second try.")])
        started = time.monotonic()
        response = self.complete(scripted_llm, self.request(), timeout=20.0, read_timeout=0.4, max_retries=1)
        elapsed = time.monotonic() - started
        assert response.message.text == "Answered on the second try."
        assert len(scripted_llm.requests) == 2
        assert elapsed < 5.0, f"settings.read_timeout=0.4 was not honoured (the call took {elapsed:.1f}s)"

    def test_stream_hung_server_is_retried(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.hang(), Reply.text("Streamed on the second try.")])
        events = self.stream(scripted_llm, self.request(), timeout=20.0, read_timeout=0.4, max_retries=1)
        assert isinstance(events[-1], StreamEnd)
        assert events[-1].response.message.text == "Streamed on the second try."
        assert len(scripted_llm.requests) == 2

    def test_hung_server_gives_up_with_a_timeout_error(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.hang()] * 2)
        started = time.monotonic()
        error = self.failure(scripted_llm, self.request(), timeout=20.0, read_timeout=0.3, max_retries=1)
        elapsed = time.monotonic() - started
        message = str(error).lower()
        assert "timeout" in message or "timed out" in message, f"the message does not say timeout: {error}"
        assert not error.permanent
        assert len(scripted_llm.requests) == 2, "a read timeout is retried like a connection failure"
        assert elapsed < 5.0, f"two attempts of 0.3 s took {elapsed:.1f}s"

    def test_stream_stalled_mid_answer_times_out(self, scripted_llm: ScriptedLLMServer) -> None:
        scripted_llm.script([Reply.stalled("Half of an answer that")] * 2)
        started = time.monotonic()
        error = self.failure(scripted_llm, self.request(), stream=True, timeout=20.0, read_timeout=0.3,
                             max_retries=1)
        elapsed = time.monotonic() - started
        message = str(error).lower()
        assert "timeout" in message or "timed out" in message, f"the message does not say timeout: {error}"
        assert elapsed < 5.0, f"settings.read_timeout=0.3 was not honoured mid-stream ({elapsed:.1f}s)"


def assert_clear_message(error: BaseException) -> None:
    """A user-facing error: some words, no traceback, not a bare repr."""
    message = str(error)
    assert message.strip(), f"{type(error).__name__} has an empty message"
    assert "Traceback (most recent call last)" not in message, f"a traceback leaked into the message: {message}"
    assert not message.startswith("<"), f"the message is a repr: {message}"
