"""The part of a backend over a provider's official HTTP SDK that is the same for every such SDK.

:class:`RetryingBackend` is what any backend that retries with :mod:`rlm_backend_kit.retry` shares: the settings and
the plugin's options, the retry policy, the one read timeout of the backend (:func:`rlm_backend_kit.retry.read_timeout`)
and a request's deadline (its own ``timeout`` bounds the whole call, retries included).

:class:`SDKBackend` adds what the backends over the ``openai`` and ``anthropic`` SDKs (and SDKs generated
like them) share: the key (settings, then ``$<KEY_ENV>``, then a placeholder for a custom ``base_url``),
the SDK client (made on first use with the SDK's retries off, replaced under a new event loop, closed by
:meth:`SDKBackend.aclose`), and ``complete``/``stream`` retried by :mod:`rlm_backend_kit.retry`, with what the SDK
accepts but is no answer turned into :mod:`rlm_backend_kit.provider_errors` failures: a non-JSON body or an HTML page
with status 200 (not retried), a body that cannot be read, an answer with no text and no tool call, a
stream event that is not JSON, and a stream that ends before its end marker.

A subclass says only what is its provider's: its names (class attributes), how the SDK client is made
(:meth:`SDKBackend.make_client`), how a request goes out (:meth:`SDKBackend.prepare`,
:meth:`SDKBackend.create`) and how an answer or a stream comes back (:meth:`SDKBackend.to_response`,
:meth:`SDKBackend.assembler`, :meth:`SDKBackend.stream_ended`).  No SDK is imported here: the subclass's
SDK is imported on the first call, by name.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

from attrs import define

from rlm.backend import BackendSettings, LLMRequest, LLMResponse, StreamEnd, StreamEvent
from rlm.errors import (
    BackendError,
    NoProvidersConfigured,
    PluginError,
    ProviderUnavailableError,
)
from rlm.logging import get_logger
from rlm_backend_kit.provider_errors import (
    classify,
    empty_answer_of,
    malformed_stream,
    not_an_api_body,
    timed_out_failure,
    truncated_stream,
)
from rlm_backend_kit.retry import (
    Failure,
    Fault,
    RetryPolicy,
    by_deadline,
    call_with_retries,
    read_timeout,
    stream_by_deadline,
    stream_with_retries,
)

log = get_logger(__name__)

NO_KEY_MESSAGE = "No providers configured: set OPENAI_API_KEY or ANTHROPIC_API_KEY"


def require_module(module: str, message: str, fix: str) -> None:
    """Raise PluginError(``message``, ``fix``) when ``module`` is not installed (found without importing it)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise PluginError(message, fix=fix)


def import_sdk(module: str, fix: str) -> Any:
    """The SDK module ``module``, imported on first use (SDKs take a while); PluginError(``fix``) if it fails."""
    first = module not in sys.modules
    try:
        sdk = importlib.import_module(module)
    except ImportError as exc:
        raise PluginError(f"the {module} SDK cannot be imported ({exc})", fix=fix) from exc
    if first:
        after_sdk_import()
    return sdk


def after_sdk_import() -> None:
    """An SDK was just imported: in an ``rlm`` CLI process, its objects leave the cyclic collector's reach
    (:func:`rlm.cli.freeze_gc`; nothing when rlm is used as a library).  ``rlm.cli`` is not imported here."""
    freeze = getattr(sys.modules.get("rlm.cli"), "freeze_gc", None)
    if freeze is not None:
        freeze()


@define
class SDKCall:
    """One request as the SDK gets it: ``params`` (the wire body, with ``model`` and ``timeout``) and what
    the provider's conversion needs to read the answer (``context``)."""

    params: dict[str, Any]
    context: Any = None
    #: ``params`` (without ``timeout`` and ``stream``) already serialized as JSON, when the backend built it
    #: (:func:`rlm_backend_kit.openai_format.json_body`); None: the SDK serializes ``params``
    body: bytes | None = None

    @property
    def model(self) -> str:
        return self.params["model"]

    @property
    def timeout(self) -> float:
        return self.params["timeout"]


class RetryingBackend:
    """Settings, options, retry policy, read timeout and deadlines of a backend retried by :mod:`rlm_backend_kit.retry`.

    ``options_type`` is the plugin's ``[plugins.<section>]`` class, with ``retry_base_delay``,
    ``retry_max_delay`` and ``read_timeout`` (:class:`rlm_backend_kit.backend_options.RetryOptions`); options of
    another type are replaced by its defaults.
    """

    name: ClassVar[str]
    section: ClassVar[str]
    options_type: ClassVar[type]

    def __init__(self, *, settings: BackendSettings | None = None) -> None:
        self.settings = settings or BackendSettings()
        options = self.settings.options
        self.options: Any = options if isinstance(options, self.options_type) else self.options_type()
        self.policy = RetryPolicy(
            max_retries=max(0, self.settings.max_retries),
            base_delay=self.options.retry_base_delay,
            max_delay=self.options.retry_max_delay,
        )
        #: every attempt's timeout (one value for the backend's life, so that nothing keyed by it changes)
        self.timeout, self.timeout_fix = read_timeout(self.settings, self.options.read_timeout, section=self.section)

    @staticmethod
    def _deadline(request: LLMRequest) -> float | None:
        """When the caller stops waiting (``time.monotonic()``): no retry starts that would end after it."""
        return time.monotonic() + request.timeout if request.timeout is not None else None

    @staticmethod
    def _too_late(request: LLMRequest, provider: str, base_url: str | None) -> Callable[[], BackendError]:
        """The error of a call still unanswered at its deadline (the request's own timeout)."""
        where = f" at {base_url}" if base_url else ""
        return lambda: timed_out_failure(provider, where, request.timeout, "the request's timeout").error

    async def _call(self, request: LLMRequest, attempt: Callable[[], Any],
                    classify_exc: Callable[[BaseException], Failure | None],
                    too_late: Callable[[], BackendError]) -> Any:
        """``await attempt()``, retried by the policy and abandoned at the request's deadline."""
        deadline = self._deadline(request)
        return await by_deadline(
            call_with_retries(attempt, classify_exc, self.policy, provider=self.name, deadline=deadline),
            deadline, too_late,
        )

    def _stream(self, request: LLMRequest, attempt: Callable[[], AsyncIterator[StreamEvent]],
                classify_exc: Callable[[BaseException], Failure | None],
                too_late: Callable[[], BackendError]) -> AsyncIterator[StreamEvent]:
        """The events of a fresh ``attempt()``, retried while nothing was yielded, abandoned at the deadline."""
        deadline = self._deadline(request)
        retried = stream_with_retries(attempt, classify_exc, self.policy, provider=self.name, deadline=deadline)
        return stream_by_deadline(retried, deadline, too_late)


class SDKBackend(RetryingBackend):
    """:class:`rlm.backend.Backend` over an official HTTP SDK (openai, anthropic).

    Constructing it does no I/O and does not import the SDK; the client is made on the first call and
    closed by :meth:`aclose`.
    """

    #: how the provider is named in messages ("OpenAI")
    provider: ClassVar[str]
    #: the SDK's module ("openai"), imported on first use
    sdk_module: ClassVar[str]
    #: how to install the SDK (the fix of a missing SDK)
    install_hint: ClassVar[str]
    key_env: ClassVar[str]
    base_url_env: ClassVar[str]
    #: sent as the key to a custom base_url when no key is set
    placeholder_key: ClassVar[str]
    no_key_message: ClassVar[str] = NO_KEY_MESSAGE
    no_key_fix: ClassVar[str]
    #: what a non-streamed answer is called in messages ("completion", "message")
    body_noun: ClassVar[str] = "response"
    #: what a complete stream ends with ("finish_reason", "message_stop")
    end_marker: ClassVar[str]
    #: what an empty streamed answer held, for its error
    empty_stream_detail: ClassVar[str] = "no content"
    #: share one SDK client per process over :class:`rlm_backend_kit.http_transport.LeanTransport` (when
    #: :func:`~rlm_backend_kit.http_transport.lean_ok`), else one per backend and loop with the process's one
    #: SSL context; ``make_client`` then gets ``http_client``
    share_clients: ClassVar[bool] = False

    def __init__(self, *, settings: BackendSettings | None = None) -> None:
        require_module(self.sdk_module, f"the {self.name} backend needs the {self.sdk_module} SDK, which is not "
                       "installed", self.install_hint)
        super().__init__(settings=settings)
        self._client: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._shared_key: Any = None

    # --- what a subclass says ----------------------------------------------------------------

    def make_client(self, sdk: Any, http_client: Any = None) -> Any:
        """The SDK's async client (``sdk`` is the SDK module), with its retries off (``max_retries=0``), over
        ``http_client`` when given (:attr:`share_clients`)."""
        raise NotImplementedError

    def prepare(self, request: LLMRequest, *, stream: bool) -> SDKCall:
        """The request as the SDK is to get it (``params["timeout"]`` is :attr:`timeout`)."""
        raise NotImplementedError

    async def create(self, client: Any, call: SDKCall) -> Any:
        """Send ``call``: the SDK's answer (a parsed body, or a stream when ``call.params["stream"]``)."""
        raise NotImplementedError

    def to_response(self, body: Any, call: SDKCall) -> LLMResponse:
        """The SDK's parsed body as an LLMResponse (AttributeError/TypeError/ValueError: it cannot be read)."""
        raise NotImplementedError

    def body_detail(self, body: Any) -> str:
        """What an answer with no text and no tool call held (``content: null``...), for its error."""
        return "no content"

    def assembler(self, call: SDKCall) -> Any:
        """A stream assembler: ``feed(event)`` returns StreamEvents, ``finish()`` the last ones."""
        raise NotImplementedError

    def stream_ended(self, assembler: Any) -> bool:
        """Whether the stream fed to ``assembler`` reached its end marker (:attr:`end_marker`)."""
        raise NotImplementedError

    def classify_error(self, exc: BaseException, **where: Any) -> Failure | None:
        """The failure of an SDK exception (:func:`rlm_backend_kit.provider_errors.classify` with this provider's names)."""
        return classify(exc, provider=self.provider, key_env=self.key_env, **where)

    # --- configuration -----------------------------------------------------------------------

    @property
    def base_url(self) -> str | None:
        return self.settings.base_url or os.environ.get(self.base_url_env) or None

    def api_key(self) -> str:
        """The key to send: settings, then ``$<key_env>``, then a placeholder for a custom base_url."""
        key = self.settings.api_key or os.environ.get(self.key_env)
        if key:
            return key
        if self.base_url:
            return self.placeholder_key
        raise NoProvidersConfigured(self.no_key_message, fix=self.no_key_fix)

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
            sdk = import_sdk(self.sdk_module, self.install_hint)
            if not self.share_clients:
                self._client_loop = loop
                self._client = self.make_client(sdk)
                return self._client
            from rlm_backend_kit import http_transport

            http_client_type = (getattr(sdk, "DefaultAsyncHttpxClient", None)
                                or http_transport.httpx_module().AsyncClient)
            if http_transport.lean_ok(self.base_url):
                self._shared_key = (type(self), self.base_url, self.api_key(), self.timeout, self.options)
                self._client_loop = None  # loop-agnostic: its connections are kept per loop
                self._client = http_transport.shared_client(
                    self._shared_key, lambda http: self.make_client(sdk, http), http_client_type)
                return self._client
            self._client_loop = loop
            self._client = self.make_client(
                sdk, http_client_type(verify=http_transport.shared_ssl_context(alpn_http1=False)))
        return self._client

    # --- reading what came -------------------------------------------------------------------

    def _classify(self, call: SDKCall) -> Callable[[BaseException], Failure | None]:
        def classify_exc(exc: BaseException) -> Failure | None:
            return self.classify_error(exc, model=call.model, base_url=self.base_url, timeout=call.timeout,
                                       timeout_fix=self.timeout_fix)

        return classify_exc

    def _read(self, body: Any, call: SDKCall) -> LLMResponse:
        """The SDK's answer as an LLMResponse; a Fault for a body that is no answer."""
        if isinstance(body, str):  # the SDK hands back the text of a non-JSON body
            raise Fault(not_an_api_body(self.provider, self.base_url, body))
        try:
            response = self.to_response(body, call)
        except (AttributeError, TypeError, ValueError) as exc:
            raise ProviderUnavailableError(
                f"{self.provider} sent a {self.body_noun} that could not be read: {exc}",
                fix=f"try again; if it persists, check that api_base points at an {self.provider}-compatible "
                "server",
            ) from exc
        self._check_not_empty(response, detail=lambda: self.body_detail(body))
        return response

    def _check_not_empty(self, response: LLMResponse, *, detail: str | Callable[[], str]) -> None:
        """A Fault for an answer with no text and no tool call (one cut by max_tokens is the caller's to judge)."""
        failure = empty_answer_of(response, self.provider, self.base_url, detail)
        if failure is not None:
            raise Fault(failure)

    async def _check_event_stream(self, stream: Any) -> None:
        """A Fault (not retried) when the response under the SDK's stream is an HTML page, not events."""
        content_type = stream.response.headers.get("content-type", "")
        if "html" in content_type.lower():
            raw = await stream.response.aread()
            raise Fault(not_an_api_body(self.provider, self.base_url, raw.decode("utf-8", "replace"), content_type))

    # --- the Backend protocol ----------------------------------------------------------------

    async def complete(self, request: LLMRequest) -> LLMResponse:
        client = self.client()
        call = self.prepare(request, stream=False)

        async def attempt() -> LLMResponse:
            return self._read(await self.create(client, call), call)

        return await self._call(request, attempt, self._classify(call),
                                self._too_late(request, self.provider, self.base_url))

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamEvent]:
        client = self.client()
        call = self.prepare(request, stream=True)

        async def attempt() -> AsyncIterator[StreamEvent]:
            stream = await self.create(client, call)
            assembler = self.assembler(call)
            try:
                await self._check_event_stream(stream)
                try:
                    async for chunk in stream:
                        for event in assembler.feed(chunk):
                            yield event
                except json.JSONDecodeError as exc:
                    raise Fault(malformed_stream(self.provider, self.base_url, exc)) from exc
            finally:
                await stream.close()
            if not self.stream_ended(assembler):
                raise Fault(truncated_stream(self.provider, self.base_url, self.end_marker))
            events = assembler.finish()
            final = events[-1]
            if isinstance(final, StreamEnd):
                self._check_not_empty(final.response, detail=self.empty_stream_detail)
            for event in events:
                yield event

        async for event in self._stream(request, attempt, self._classify(call),
                                        self._too_late(request, self.provider, self.base_url)):
            yield event

    async def aclose(self) -> None:
        client, self._client = self._client, None
        key, self._shared_key = self._shared_key, None
        if key is not None:  # shared across runs: only this loop's idle connections close
            from rlm_backend_kit import http_transport

            http_transport.release_loop(key)
            return
        if client is not None:
            try:
                await client.close()
            except RuntimeError:  # made under an event loop that is gone
                pass
