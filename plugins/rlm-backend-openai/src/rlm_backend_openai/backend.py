"""The OpenAI backend: Chat Completions through the official ``openai`` SDK.

Model strings may carry the ``openai/`` prefix rlm routes by; it is stripped
before sending.  ``base_url`` (``[rlm] api_base``) points the SDK at any
OpenAI-compatible server; such a server needs no key, so a placeholder is
sent when none is set.  The SDK's own retries are off: :mod:`rlm.retry`
retries 429/5xx/connection failures with backoff, jitter and
``Retry-After``.  SDK exceptions are turned into :mod:`rlm.errors` by
:mod:`.errors`.

Every attempt waits at most ``read_timeout`` for the server's next bytes
(:func:`rlm.retry.read_timeout`: one value for the backend's life); a
request's own ``timeout`` (the run's remaining time) bounds the whole call,
retries included, and no retry starts whose wait would end after it.  What the SDK accepts but is no answer is an error
too: a stream that ends without a ``finish_reason`` (the SDK drops
``[DONE]``, so the finish is the end marker seen here; retried while nothing
was yielded), an event that is not JSON, an answer with no text and no tool
call (``content: null``; retried), and an HTML page or other non-JSON body
with status 200 (not retried: ``api_base`` is wrong).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import os
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from rlm.backend import BackendCapabilities, BackendSettings, LLMRequest, LLMResponse, StreamEnd, StreamEvent
from rlm.errors import NoProvidersConfigured, PluginError, ProviderUnavailableError
from rlm.logging import get_logger

from rlm import openai_format as convert
from rlm.provider_errors import empty_answer_of, malformed_stream, not_an_api_body, timed_out_failure, truncated_stream
from rlm_backend_openai.errors import classify
from rlm_backend_openai.options import OpenAIOptions
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

PREFIX = "openai/"
SECTION = "backend-openai"
PROVIDER = "OpenAI"
KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"
SDK_REQUIREMENT = "openai>=2,<4"
INSTALL_HINT = f"pip install '{SDK_REQUIREMENT}'  (or: pip install rlm-backend-openai)"
NO_KEY_MESSAGE = "No providers configured: set OPENAI_API_KEY or ANTHROPIC_API_KEY"
#: Sent as the key to a custom base_url when no key is set (local servers ignore it).
PLACEHOLDER_KEY = "sk-no-key-required"

_TEXT_ONLY = re.compile(r"^(gpt-3\.5|gpt-4(-\d{4})?$|gpt-4-32k|o1-mini|o1-preview|o3-mini|text-|davinci|babbage)")
_NO_JSON_SCHEMA = re.compile(r"^(gpt-3\.5|gpt-4(-\d{4})?$|gpt-4-32k|gpt-4-turbo|o1-mini|o1-preview)")


def require_sdk() -> None:
    """Raise a PluginError naming the pip command when the openai SDK is not installed."""
    try:
        found = importlib.util.find_spec("openai") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise PluginError("the openai backend needs the openai SDK, which is not installed", fix=INSTALL_HINT)


def import_sdk() -> Any:
    """The ``openai`` module (imported on first use: it takes a while)."""
    try:
        return importlib.import_module("openai")
    except ImportError as exc:
        raise PluginError(f"the openai SDK cannot be imported ({exc})", fix=INSTALL_HINT) from exc


def model_id(model: str) -> str:
    """The model as OpenAI names it: without rlm's ``openai/`` routing prefix."""
    return model.removeprefix(PREFIX)


class OpenAIBackend:
    """:class:`rlm.backend.Backend` for OpenAI and OpenAI-compatible servers.

    Constructing it does no I/O and does not import the SDK; the client is
    made on the first call and closed by :meth:`aclose`.
    """

    name = "openai"

    def __init__(self, *, settings: BackendSettings | None = None) -> None:
        require_sdk()
        self.settings = settings or BackendSettings()
        options = self.settings.options
        self.options = options if isinstance(options, OpenAIOptions) else OpenAIOptions()
        self.policy = RetryPolicy(
            max_retries=max(0, self.settings.max_retries),
            base_delay=self.options.retry_base_delay,
            max_delay=self.options.retry_max_delay,
        )
        #: every attempt's timeout (one value, so that nothing keyed by it changes between requests)
        self.timeout, self.timeout_fix = read_timeout(self.settings, self.options.read_timeout, section=SECTION)
        self._client: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    # --- configuration -----------------------------------------------------------------------

    @property
    def base_url(self) -> str | None:
        return self.settings.base_url or os.environ.get(BASE_URL_ENV) or None

    def api_key(self) -> str:
        """The key to send: settings, then $OPENAI_API_KEY, then a placeholder for a custom base_url."""
        key = self.settings.api_key or os.environ.get(KEY_ENV)
        if key:
            return key
        if self.base_url:
            return PLACEHOLDER_KEY
        raise NoProvidersConfigured(
            NO_KEY_MESSAGE,
            fix=f"export {KEY_ENV}=sk-... for OpenAI models, or set api_base to a local OpenAI-compatible "
            "server (which needs no key)",
        )

    def max_tokens_param(self) -> str:
        choice = self.options.max_tokens_param
        if choice != "auto":
            return choice
        return "max_tokens" if self.base_url else "max_completion_tokens"

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
            openai = import_sdk()
            self._client = openai.AsyncOpenAI(
                api_key=self.api_key(),
                base_url=self.base_url,
                organization=self.options.organization,
                project=self.options.project,
                timeout=self.timeout,
                max_retries=0,
            )
        return self._client

    # --- the Backend protocol ----------------------------------------------------------------

    def capabilities(self, model: str) -> BackendCapabilities:
        name = model_id(model).lower()
        return BackendCapabilities(
            native_tools=True,
            json_schema=not _NO_JSON_SCHEMA.match(name),
            vision=not _TEXT_ONLY.match(name) and "audio" not in name,
            audio="audio" in name,
            preferred_protocol="tools",
        )

    def _params(self, request: LLMRequest) -> dict[str, Any]:
        params = convert.request_params(request, max_tokens_param=self.max_tokens_param())
        if request.max_tokens is None and self.options.default_max_tokens is not None:
            params[self.max_tokens_param()] = self.options.default_max_tokens
        params["model"] = model_id(request.model)
        params["timeout"] = self.timeout
        return params

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
        """``chat.completions.create`` arguments that skip the SDK's typed re-transform of the body.

        ``params`` is already the wire format (rlm.openai_format built it); the
        SDK's recursive transform of ``messages`` costs ~1 ms per message per
        call, so a long conversation paid tens of ms a turn.  The body goes in
        ``extra_body``, which the SDK merges over its (empty) transformed one.
        """
        wire = {k: v for k, v in params.items() if k not in ("model", "timeout", "stream")}
        kwargs: dict[str, Any] = {"model": params["model"], "messages": [], "timeout": params["timeout"],
                                  "extra_body": wire}
        if params.get("stream"):
            kwargs["stream"] = True
        return kwargs

    def _classify(self, params: dict[str, Any]) -> Any:
        def classify_exc(exc: BaseException) -> Any:
            return classify(exc, model=params["model"], base_url=self.base_url, timeout=params["timeout"],
                            timeout_fix=self.timeout_fix)

        return classify_exc

    def _read(self, completion: Any, model: str) -> LLMResponse:
        """The completion as an LLMResponse; a Fault for a body that is no answer."""
        if isinstance(completion, str):  # the SDK hands back the text of a non-JSON body
            raise Fault(not_an_api_body(PROVIDER, self.base_url, completion))
        try:
            response = convert.from_openai_completion(completion, model=model)
        except (AttributeError, TypeError, ValueError) as exc:
            raise ProviderUnavailableError(
                f"{PROVIDER} sent a completion that could not be read: {exc}",
                fix="try again; if it persists, check that api_base points at an OpenAI-compatible server",
            ) from exc
        self._check_not_empty(response, detail=lambda: _content_detail(completion))
        return response

    def _check_not_empty(self, response: LLMResponse, *, detail: Any) -> None:
        """A Fault for an answer with no text and no tool call (one cut by max_tokens is the caller's to judge)."""
        failure = empty_answer_of(response, PROVIDER, self.base_url, detail)
        if failure is not None:
            raise Fault(failure)

    async def complete(self, request: LLMRequest) -> LLMResponse:
        client = self.client()
        params = self._params(request)

        kwargs = self._create_kwargs(params)

        async def attempt() -> LLMResponse:
            return self._read(await client.chat.completions.create(**kwargs), params["model"])

        deadline = self._deadline(request)
        return await by_deadline(
            call_with_retries(attempt, self._classify(params), self.policy, provider=self.name, deadline=deadline),
            deadline, self._too_late(request),
        )

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamEvent]:
        client = self.client()
        params = self._params(request)
        params["stream"] = True
        params["stream_options"] = {"include_usage": True}
        classify_exc = self._classify(params)

        async def attempt() -> AsyncIterator[StreamEvent]:
            stream = await client.chat.completions.create(**self._create_kwargs(params))
            assembler = convert.StreamAssembler(model=params["model"])
            try:
                content_type = stream.response.headers.get("content-type", "")
                if "html" in content_type.lower():
                    raw = await stream.response.aread()
                    raise Fault(not_an_api_body(PROVIDER, self.base_url, raw.decode("utf-8", "replace"),
                                                content_type))
                try:
                    async for chunk in stream:
                        for event in assembler.feed(chunk):
                            yield event
                except json.JSONDecodeError as exc:
                    raise Fault(malformed_stream(PROVIDER, self.base_url, exc)) from exc
            finally:
                await stream.close()
            if assembler.finish_reason is None:
                raise Fault(truncated_stream(PROVIDER, self.base_url, "finish_reason"))
            events = assembler.finish()
            final = events[-1]
            if isinstance(final, StreamEnd):
                self._check_not_empty(final.response, detail=lambda: "no content delta, no tool call")
            for event in events:
                yield event

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


def _content_detail(completion: Any) -> str:
    """What the first choice's message held: ``content: null`` or ``content: ""``, and no tool call."""
    try:
        content = completion.choices[0].message.content
    except (AttributeError, IndexError, TypeError):
        return "no message"
    return ("content: null" if content is None else f"content: {json.dumps(content)}") + ", no tool call"
