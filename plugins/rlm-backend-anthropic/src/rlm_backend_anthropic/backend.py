"""The Anthropic backend: the Messages API through the official ``anthropic`` SDK.

Model strings may carry the ``anthropic/`` prefix rlm routes by; it is
stripped before sending.  ``base_url`` (``[rlm] api_base``) points the SDK
at an Anthropic-compatible server, which gets a placeholder key when none is
set.  The SDK's own retries are off: :mod:`rlm.retry` retries 429/5xx/529,
timeouts and connection failures with backoff, jitter and ``Retry-After``.
SDK exceptions are turned into :mod:`rlm.errors` by :mod:`.errors`.

Every attempt waits at most ``read_timeout`` for the server's next bytes
(:func:`rlm.retry.read_timeout`); a request's own ``timeout`` (the run's
remaining time) bounds the whole call, retries included.  What the SDK
accepts but is no answer is an error too: a stream without ``message_stop``
(retried while nothing was yielded), an event that is not JSON, a message
with no text and no tool call (``content: []``; retried), and an HTML page
or other non-JSON body with status 200 (not retried: ``api_base`` is wrong).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from rlm.backend import BackendCapabilities, BackendSettings, LLMRequest, LLMResponse, StreamEnd, StreamEvent
from rlm.errors import NoProvidersConfigured, PluginError, ProviderUnavailableError
from rlm.logging import get_logger

from rlm.provider_errors import empty_answer_of, malformed_stream, not_an_api_body, timed_out_failure, truncated_stream
from rlm_backend_anthropic import convert
from rlm_backend_anthropic.errors import classify
from rlm_backend_anthropic.options import AnthropicOptions
from rlm.retry import (
    Fault,
    RetryPolicy,
    by_deadline,
    call_with_retries,
    read_timeout,
    stream_by_deadline,
    stream_with_retries,
)

log = get_logger(__name__)

PREFIX = "anthropic/"
SECTION = "backend-anthropic"
PROVIDER = "Anthropic"
KEY_ENV = "ANTHROPIC_API_KEY"
BASE_URL_ENV = "ANTHROPIC_BASE_URL"
SDK_REQUIREMENT = "anthropic>=2,<3"
INSTALL_HINT = f"pip install '{SDK_REQUIREMENT}'  (or: pip install rlm-backend-anthropic)"
NO_KEY_MESSAGE = "No providers configured: set OPENAI_API_KEY or ANTHROPIC_API_KEY"
#: Sent as the key to a custom base_url when no key is set.
PLACEHOLDER_KEY = "sk-ant-no-key-required"


def require_sdk() -> None:
    """Raise a PluginError naming the pip command when the anthropic SDK is not installed."""
    try:
        found = importlib.util.find_spec("anthropic") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise PluginError("the anthropic backend needs the anthropic SDK, which is not installed", fix=INSTALL_HINT)


def import_sdk() -> Any:
    """The ``anthropic`` module (imported on first use: it takes a while)."""
    try:
        return importlib.import_module("anthropic")
    except ImportError as exc:
        raise PluginError(f"the anthropic SDK cannot be imported ({exc})", fix=INSTALL_HINT) from exc


def model_id(model: str) -> str:
    """The model as Anthropic names it: without rlm's ``anthropic/`` routing prefix."""
    return model.removeprefix(PREFIX)


class AnthropicBackend:
    """:class:`rlm.backend.Backend` for Anthropic's Messages API.

    Constructing it does no I/O and does not import the SDK; the client is
    made on the first call and closed by :meth:`aclose`.
    """

    name = "anthropic"

    def __init__(self, *, settings: BackendSettings | None = None) -> None:
        require_sdk()
        self.settings = settings or BackendSettings()
        options = self.settings.options
        self.options = options if isinstance(options, AnthropicOptions) else AnthropicOptions()
        self.policy = RetryPolicy(
            max_retries=max(0, self.settings.max_retries),
            base_delay=self.options.retry_base_delay,
            max_delay=self.options.retry_max_delay,
        )
        #: every attempt's timeout (one value for the backend's life)
        self.timeout, self.timeout_fix = read_timeout(self.settings, self.options.read_timeout, section=SECTION)
        self._client: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    # --- configuration -----------------------------------------------------------------------

    @property
    def base_url(self) -> str | None:
        return self.settings.base_url or os.environ.get(BASE_URL_ENV) or None

    def api_key(self) -> str:
        """The key to send: settings, then $ANTHROPIC_API_KEY, then a placeholder for a custom base_url."""
        key = self.settings.api_key or os.environ.get(KEY_ENV)
        if key:
            return key
        if self.base_url:
            return PLACEHOLDER_KEY
        raise NoProvidersConfigured(
            NO_KEY_MESSAGE,
            fix=f"export {KEY_ENV}=sk-ant-... for Anthropic models, or set api_base to an Anthropic-compatible "
            "server",
        )

    def client(self) -> Any:
        """The SDK client, made on first use with the SDK's retries off.

        A client made under another event loop (a second ``asyncio.run``) is
        replaced: its connections belong to that loop.
        """
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if self._client is not None and loop is not None and self._client_loop not in (None, loop):
            log.debug("client_replaced", reason="new event loop")
            self._client = None
        if self._client is None:
            self._client_loop = loop
            anthropic = import_sdk()
            self._client = anthropic.AsyncAnthropic(
                api_key=self.api_key(),
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=0,
            )
        return self._client

    # --- the Backend protocol ----------------------------------------------------------------

    def capabilities(self, model: str) -> BackendCapabilities:
        return BackendCapabilities(
            native_tools=True,
            json_schema=True,
            vision=True,
            audio=False,
            preferred_protocol="tools",
        )

    def _prepare(self, request: LLMRequest) -> tuple[convert.Prepared, float]:
        model = model_id(request.model)
        max_tokens = request.max_tokens or self.options.default_max_tokens or convert.default_max_tokens(model)
        prepared = convert.request_params(
            request, model=model, max_tokens=max_tokens, structured_output=self.options.structured_output
        )
        prepared.params["timeout"] = self.timeout
        return prepared, self.timeout

    def _too_late(self, request: LLMRequest) -> Any:
        """The error of a call still unanswered at its deadline (the request's own timeout)."""
        where = f" at {self.base_url}" if self.base_url else ""
        return lambda: timed_out_failure(PROVIDER, where, request.timeout, "the request's timeout").error

    @staticmethod
    def _deadline(request: LLMRequest) -> float | None:
        """When the caller stops waiting (``time.monotonic()``): no retry starts that would end after it."""
        return time.monotonic() + request.timeout if request.timeout is not None else None

    @staticmethod
    def _create_kwargs(params: dict[str, Any]) -> dict[str, Any]:
        """``messages.create`` arguments that skip the SDK's typed re-transform of the body.

        ``params`` is already the wire format; the SDK's recursive transform
        costs about a millisecond per message per call, so the body goes in
        ``extra_body``, which the SDK merges over its (tiny) transformed one.
        """
        direct = ("model", "max_tokens", "timeout", "stream")
        wire = {k: v for k, v in params.items() if k not in direct and k != "extra_body"}
        wire.update(params.get("extra_body") or {})
        kwargs = {k: params[k] for k in direct if k in params}
        kwargs["messages"] = []
        kwargs["extra_body"] = wire
        return kwargs

    def _classify(self, model: str, timeout: float) -> Any:
        def classify_exc(exc: BaseException) -> Any:
            return classify(exc, model=model, base_url=self.base_url, timeout=timeout, timeout_fix=self.timeout_fix)

        return classify_exc

    def _read(self, message: Any, prepared: convert.Prepared) -> LLMResponse:
        """The message as an LLMResponse; a Fault for a body that is no answer."""
        if isinstance(message, str):  # the SDK hands back the text of a non-JSON body
            raise Fault(not_an_api_body(PROVIDER, self.base_url, message))
        model = prepared.params["model"]
        try:
            response = convert.from_anthropic_message(message, model=model, output_tool=prepared.output_tool)
        except (AttributeError, TypeError, ValueError) as exc:
            raise ProviderUnavailableError(
                f"{PROVIDER} sent a message that could not be read: {exc}",
                fix="try again; if it persists, check that api_base points at an Anthropic-compatible server",
            ) from exc
        self._check_not_empty(response, detail=lambda: _content_detail(message))
        return response

    def _check_not_empty(self, response: LLMResponse, *, detail: Any) -> None:
        """A Fault for an answer with no text and no tool call (one cut by max_tokens is the caller's to judge)."""
        failure = empty_answer_of(response, PROVIDER, self.base_url, detail)
        if failure is not None:
            raise Fault(failure)

    async def complete(self, request: LLMRequest) -> LLMResponse:
        prepared, timeout = self._prepare(request)
        client = self.client()
        params = prepared.params

        kwargs = self._create_kwargs(params)

        async def attempt() -> LLMResponse:
            return self._read(await client.messages.create(**kwargs), prepared)

        deadline = self._deadline(request)
        return await by_deadline(
            call_with_retries(attempt, self._classify(params["model"], timeout), self.policy, provider=self.name,
                              deadline=deadline),
            deadline, self._too_late(request),
        )

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamEvent]:
        prepared, timeout = self._prepare(request)
        client = self.client()
        params = dict(prepared.params, stream=True)
        classify_exc = self._classify(params["model"], timeout)

        async def attempt() -> AsyncIterator[StreamEvent]:
            stream = await client.messages.create(**self._create_kwargs(params))
            assembler = convert.StreamAssembler(model=params["model"], output_tool=prepared.output_tool)
            try:
                content_type = stream.response.headers.get("content-type", "")
                if "html" in content_type.lower():
                    raw = await stream.response.aread()
                    raise Fault(not_an_api_body(PROVIDER, self.base_url, raw.decode("utf-8", "replace"),
                                                content_type))
                try:
                    async for event in stream:
                        for out in assembler.feed(event):
                            yield out
                except json.JSONDecodeError as exc:
                    raise Fault(malformed_stream(PROVIDER, self.base_url, exc)) from exc
            finally:
                await stream.close()
            if not assembler.stopped:
                raise Fault(truncated_stream(PROVIDER, self.base_url, "message_stop"))
            events = assembler.finish()
            final = events[-1]
            if isinstance(final, StreamEnd):
                self._check_not_empty(final.response, detail=lambda: "no content block")
            for out in events:
                yield out

        deadline = self._deadline(request)
        retried = stream_with_retries(attempt, classify_exc, self.policy, provider=self.name, deadline=deadline)
        async for event in stream_by_deadline(retried, deadline, self._too_late(request)):
            yield event

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.close()
            except RuntimeError:  # made under an event loop that is gone
                pass


def _content_detail(message: Any) -> str:
    """What the message held: ``content: []``, no content at all, or only empty text blocks."""
    content = convert._get(message, "content")
    if content is None:
        return "no content field"
    if not content:
        return "content: []"
    return "only empty text blocks"
