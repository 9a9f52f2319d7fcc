"""The litellm backend: any provider litellm supports, model strings as litellm names them.

``gpt-4o-mini``, ``anthropic/claude-sonnet-4-5``, ``ollama/llama3``...  With
``base_url`` (``[rlm] api_base``) requests go to that server; a model litellm
does not know is then sent with ``custom_llm_provider="openai"`` (an
OpenAI-compatible server), and a missing key is replaced by a placeholder.
Requests and responses use the OpenAI format (:mod:`.convert`); litellm
translates for the provider.  litellm's retries are off: :mod:`rlm_backend_kit.retry`
retries 429/5xx, timeouts and connection failures with backoff, jitter and
``Retry-After``; :mod:`.errors` turns litellm's exceptions into
:mod:`rlm.errors`.  litellm is imported on the first call (:mod:`.loader`).

Every request goes out with the same ``timeout``, the backend's read timeout
(:func:`rlm_backend_kit.retry.read_timeout`): litellm caches its HTTP clients by a key
that includes the timeout, so a value that changed per request (the run's
remaining time) opened a new client, and a new connection, per request.  A
request's own ``timeout`` bounds the whole call, retries included.  A
stream without a ``finish_reason``, an event that is not JSON, an answer with
no text and no tool call and an HTML page instead of JSON are errors, as in
the other backends.

A non-streamed call to an OpenAI-protocol model (provider ``openai``) with nothing litellm-specific in play (no
callbacks, no call-wide litellm settings) skips ``litellm.acompletion``: :mod:`.fast_route` sends litellm's own
request body with the shared SDK client and reads the answer with litellm's own reader, without litellm's
per-call logging and cost work (``[plugins.backend-litellm] fast_openai_route``, on by default).

litellm keeps its clients in a process-wide cache, one set per event loop.
:meth:`LiteLLMBackend.aclose` closes those of the current loop once no other
open litellm backend has used that loop (and drops them from the cache), so
that runs do not leave their connections open.
"""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import Any

from rlm_backend_kit import openai_format as convert
from rlm.backend import (
    BackendCapabilities,
    BackendSettings,
    LLMRequest,
    LLMResponse,
    StreamEnd,
    StreamEvent,
)
from rlm.errors import NoProvidersConfigured, ProviderUnavailableError
from rlm.logging import get_logger
from rlm_backend_kit.provider_errors import empty_answer_of, not_an_api_body, truncated_stream
from rlm_backend_kit.retry import Fault
from rlm_backend_kit.sdk_backend import NO_KEY_MESSAGE, RetryingBackend

from rlm_backend_litellm.errors import classify, stream_failure
from rlm_backend_litellm.fast_route import FastRoute, litellm_untouched
from rlm_backend_litellm.loader import load_litellm, model_info, require_litellm
from rlm_backend_litellm.options import LiteLLMOptions

log = get_logger(__name__)

#: Sent as the key to a custom base_url when the provider's key is not set (local servers ignore it).
PLACEHOLDER_KEY = "sk-no-key-required"
SECTION = "backend-litellm"

#: The open litellm backends that made calls on each event loop (litellm's clients are per loop).
_USERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, weakref.WeakSet[LiteLLMBackend]] = (
    weakref.WeakKeyDictionary()
)


#: litellm raises UnsupportedParamsError for a ``seed`` the provider has no field for (Anthropic, Gemini...):
#: only these providers' models list it among the sampling options the backend sends.
SEED_PROVIDERS = frozenset({"openai", "azure", "text-completion-openai", "mistral", "groq", "deepseek",
                            "together_ai", "fireworks_ai"})
SEEDED = frozenset({"temperature", "top_p", "seed"})
UNSEEDED = frozenset({"temperature", "top_p"})


def openai_base_url(litellm: Any, env: Mapping[str, str]) -> str | None:
    """Where litellm sends a provider-``openai`` model given no ``api_base``, in litellm's own order:
    ``OPENAI_BASE_URL``, ``OPENAI_API_BASE``, else ``https://api.openai.com/v1``.  None when litellm's module-wide
    ``api_base``, ``api_key`` or ``openai_key`` or a secret manager is set: litellm applies those itself, so the
    backend leaves such a call to litellm's own client."""
    if any(getattr(litellm, name, None) for name in ("api_base", "api_key", "openai_key", "secret_manager_client",
                                                     "_key_management_system")):
        return None
    return env.get("OPENAI_BASE_URL") or env.get("OPENAI_API_BASE") or "https://api.openai.com/v1"


class LiteLLMBackend(RetryingBackend):
    """:class:`rlm.backend.Backend` over ``litellm.acompletion``.

    Constructing it does no I/O and does not import litellm.
    """

    name = "litellm"
    section = SECTION
    options_type = LiteLLMOptions

    def __init__(self, *, settings: BackendSettings | None = None) -> None:
        require_litellm()
        #: self.timeout is every request's timeout: one value, so that litellm's client cache (keyed by it)
        #: reuses connections
        super().__init__(settings=settings)
        self._providers: dict[str, str | None] = {}
        #: _call_args per model: litellm's provider lookup and key check cost ~1 ms, the same every turn
        self._args: dict[str, dict[str, Any]] = {}
        #: the keys of the shared OpenAI SDK clients this backend gave litellm (rlm_backend_kit.http_transport)
        self._shared_keys: set[Any] = set()
        #: _shared_client per model until aclose (its checks read the environment: ~0.1 ms, the same every turn)
        self._clients: dict[str, Any] = {}
        #: the fast OpenAI route per model (:mod:`.fast_route`; None: litellm.acompletion), until aclose
        self._fast: dict[str, FastRoute | None] = {}

    # --- models and keys ---------------------------------------------------------------------

    def provider_of(self, model: str) -> str | None:
        """litellm's provider for ``model`` (None when litellm cannot tell)."""
        if self.options.custom_llm_provider:
            return self.options.custom_llm_provider
        if model not in self._providers:
            litellm = load_litellm()
            try:
                self._providers[model] = litellm.get_llm_provider(model, api_base=self.settings.base_url)[1]
            except Exception:  # noqa: BLE001 - litellm raises BadRequestError for unknown models
                self._providers[model] = None
        return self._providers[model]

    def _call_args(self, model: str) -> dict[str, Any]:
        """``api_base``, ``api_key`` and ``custom_llm_provider`` for ``model``; NoProvidersConfigured without keys."""
        args: dict[str, Any] = {}
        base_url = self.settings.base_url
        provider = self.provider_of(model)
        if base_url:
            args["api_base"] = base_url
            # "openai" is named too, though litellm finds it again: without it litellm matches api_base against
            # each of its ~60 known OpenAI-compatible endpoints, twice a call (~10% of its function calls a turn);
            # a model or api_base litellm resolves to another provider (groq...) goes without it, as before
            if provider in (None, "openai") or self.options.custom_llm_provider:
                args["custom_llm_provider"] = provider or "openai"
        elif self.options.custom_llm_provider:
            args["custom_llm_provider"] = self.options.custom_llm_provider
        if self.settings.api_key:
            args["api_key"] = self.settings.api_key
            return args
        missing = self.missing_keys(model, args.get("custom_llm_provider"))
        if missing and base_url:
            args["api_key"] = PLACEHOLDER_KEY
        elif missing:
            raise NoProvidersConfigured(
                NO_KEY_MESSAGE,
                fix=f"model {model!r} needs {' or '.join(missing)}; export it (or set api_base to a local "
                "OpenAI-compatible server, which needs no key)",
            )
        return args

    def missing_keys(self, model: str, provider: str | None = None) -> list[str]:
        """The ``*_API_KEY`` variables litellm wants for ``model`` and does not find (others are not checked)."""
        litellm = load_litellm()
        name = f"{provider}/{model}" if provider and not model.startswith(provider + "/") else model
        try:
            report = litellm.validate_environment(model=name, api_base=self.settings.base_url)
        except Exception:  # noqa: BLE001 - an unknown model: let the call say what is wrong
            return []
        missing = [str(k) for k in report.get("missing_keys") or []]
        if report.get("keys_in_environment") or not missing:
            return []
        return missing if all(k.endswith("_API_KEY") for k in missing) else []

    def key_env(self, model: str) -> str:
        provider = self.provider_of(model) or "the provider"
        return f"{provider.upper()}_API_KEY" if provider != "the provider" else "the provider's API key"

    # --- the Backend protocol ----------------------------------------------------------------

    def capabilities(self, model: str) -> BackendCapabilities:
        """From litellm's bundled model map (read from disk; litellm is not imported)."""
        entry = model_info(model, self.options.custom_llm_provider)
        # the provider decides whether a seed can be sent: the map's, the configured one, the model's prefix;
        # a bare unknown name is spoken to as OpenAI-compatible (api_base), which takes every option
        provider = ((entry or {}).get("litellm_provider") or self.options.custom_llm_provider
                    or (model.split("/", 1)[0] if "/" in model else "openai"))
        sampling = SEEDED if str(provider) in SEED_PROVIDERS else UNSEEDED
        if entry is None:
            return BackendCapabilities(native_tools=True, json_schema=True, preferred_protocol="tools",
                                       sampling=sampling)
        window = entry.get("max_input_tokens") or entry.get("max_tokens")
        return BackendCapabilities(
            native_tools=bool(entry.get("supports_function_calling", True)),
            json_schema=bool(entry.get("supports_response_schema", False)),
            vision=bool(entry.get("supports_vision", False)),
            audio=bool(entry.get("supports_audio_input", False)),
            preferred_protocol="tools",
            context_window=int(window) if isinstance(window, (int, float)) and window > 0 else None,
            sampling=sampling,
        )

    def _cached_call_args(self, model: str) -> dict[str, Any]:
        args = self._args.get(model)
        if args is None:
            args = self._args[model] = self._call_args(model)
        return args

    def _shared_client(self, model: str, args: dict[str, Any]) -> Any:
        """For an OpenAI-protocol model (provider ``openai``): the process's shared ``openai.AsyncOpenAI`` over the
        lean transport (:mod:`rlm_backend_kit.http_transport`), given to litellm as ``client`` -- litellm's own
        per-loop client and httpx's pool are skipped.  None otherwise (litellm makes its own).

        Its base URL is ``api_base``; without one, where litellm itself sends such a model
        (:func:`openai_base_url`), unless litellm's own ``api_base``/``api_key``/``openai_key`` or a secret
        manager is set (litellm applies those itself)."""
        base_url = self.settings.base_url
        provider = args.get("custom_llm_provider") or self.provider_of(model)
        if provider != "openai":
            return None
        import os

        if not base_url:
            base_url = openai_base_url(load_litellm(), os.environ)
            if base_url is None:
                return None
        from rlm_backend_kit import http_transport

        if not http_transport.lean_ok(base_url):
            return None
        try:
            import openai
        except ImportError:  # pragma: no cover - litellm depends on openai
            return None

        api_key = args.get("api_key") or os.environ.get("OPENAI_API_KEY") or PLACEHOLDER_KEY
        key = ("litellm", base_url, api_key, self.timeout)
        self._shared_keys.add(key)

        def make(http_client: Any) -> Any:
            return openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=self.timeout, max_retries=0,
                                      http_client=http_client)

        return http_transport.shared_client(key, make, openai.DefaultAsyncHttpxClient)

    def _params(self, request: LLMRequest) -> dict[str, Any]:
        params = convert.request_params(request, max_tokens_param="max_tokens")
        # the message dicts are shared between requests (rlm_backend_kit.openai_format.wire_message), and
        # litellm's provider adapters may rewrite a message's fields: each request gets its own (shallow) copies
        params["messages"] = [dict(m) for m in params["messages"]]
        if request.max_tokens is None and self.options.default_max_tokens is not None:
            params["max_tokens"] = self.options.default_max_tokens
        args = self._cached_call_args(request.model)
        params.update(args)
        if self.options.shared_client:
            if request.model not in self._clients:
                self._clients[request.model] = self._shared_client(request.model, args)
            client = self._clients[request.model]
            if client is not None:
                params["client"] = client
        params["model"] = request.model
        params["timeout"] = self.timeout
        params["num_retries"] = 0
        params["max_retries"] = 0
        if self.options.drop_params:
            params["drop_params"] = True
        return params

    def _classify(self, params: dict[str, Any]) -> Any:
        provider, api = self._provider_name(params), self._api_name(params)
        key_env = self.key_env(params["model"])

        def classify_exc(exc: BaseException) -> Any:
            return classify(exc, model=params["model"], provider=provider, key_env=key_env,
                            base_url=self.settings.base_url, timeout=params["timeout"], timeout_fix=self.timeout_fix,
                            compatible=api)

        return classify_exc

    def _provider_name(self, params: dict[str, Any]) -> str:
        known = params.get("custom_llm_provider") or self.provider_of(params["model"])
        return f"{known} (via litellm)" if known else "litellm"

    def _api_name(self, params: dict[str, Any]) -> str:
        """The API the server must speak, for fixes ("an OpenAI-compatible server")."""
        known = params.get("custom_llm_provider") or self.provider_of(params["model"]) or "openai"
        return {"openai": "OpenAI", "anthropic": "Anthropic"}.get(known, known)

    def _check_not_empty(self, response: LLMResponse, params: dict[str, Any], detail: str) -> None:
        """A Fault for an answer with no text and no tool call (one cut by max_tokens is the caller's to judge)."""
        failure = empty_answer_of(response, self._provider_name(params), self.settings.base_url, detail,
                                  compatible=self._api_name(params))
        if failure is not None:
            raise Fault(failure)

    def _using_loop(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        _USERS.setdefault(loop, weakref.WeakSet()).add(self)

    def _fast_route(self, litellm: Any, params: dict[str, Any]) -> FastRoute | None:
        """The fast OpenAI route for this call (:mod:`.fast_route`), or None: ``litellm.acompletion``."""
        if not self.options.fast_openai_route or params.get("client") is None or self.options.drop_params:
            return None
        model = params["model"]
        if model not in self._fast:
            self._fast[model] = FastRoute.make(litellm, model, params["client"], str(params["client"].base_url))
            log.info("litellm_fast_route", model=model, used=self._fast[model] is not None)
        route = self._fast[model]
        if route is None or route.client is not params["client"] or not route.takes(params):
            return None
        busy = litellm_untouched(litellm, route.parts)
        if busy is not None:
            log.debug("litellm_fast_route_skipped", model=model, reason=f"litellm.{busy} is set")
            return None
        return route

    async def complete(self, request: LLMRequest) -> LLMResponse:
        litellm = load_litellm()
        params = self._params(request)
        self._using_loop()
        fast = self._fast_route(litellm, params)

        async def attempt() -> LLMResponse:
            if fast is not None:
                raw = await fast.send(fast.body(params), params["timeout"])
            else:
                raw = await litellm.acompletion(**params)
            if isinstance(raw, str):
                raise Fault(not_an_api_body(self._provider_name(params), self.settings.base_url, raw,
                                            compatible=self._api_name(params)))
            try:
                response = convert.from_openai_completion(raw, model=params["model"])
            except (AttributeError, TypeError, ValueError) as exc:
                raise ProviderUnavailableError(
                    f"litellm returned a completion that could not be read: {exc}",
                    fix="try again; if it persists, report the model and provider",
                ) from exc
            self._check_not_empty(response, params, convert.content_detail(raw))
            return response

        return await self._call(request, attempt, self._classify(params),
                                self._too_late(request, self._provider_name(params), self.settings.base_url))

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamEvent]:
        litellm = load_litellm()
        params = self._params(request)
        params["stream"] = True
        params["stream_options"] = {"include_usage": True}
        classify_exc = self._classify(params)
        self._using_loop()

        provider, api = self._provider_name(params), self._api_name(params)

        async def attempt() -> AsyncIterator[StreamEvent]:
            stream = await litellm.acompletion(**params)
            assembler = convert.StreamAssembler(model=params["model"])
            try:
                await self._check_event_stream(stream, provider, api)
                try:
                    async for chunk in stream:
                        for event in assembler.feed(chunk):
                            yield event
                except Exception as exc:
                    failure = stream_failure(exc, provider=provider, base_url=self.settings.base_url, compatible=api)
                    if failure is None:
                        raise
                    raise Fault(failure) from exc
            finally:
                closer = getattr(stream, "aclose", None)
                if closer is not None:
                    await closer()
            if assembler.finish_reason is None:
                raise Fault(truncated_stream(self._provider_name(params), self.settings.base_url, "finish_reason"))
            events = assembler.finish()
            final = events[-1]
            if isinstance(final, StreamEnd):
                self._check_not_empty(final.response, params, "no content delta, no tool call")
            for event in events:
                yield event

        async for event in self._stream(request, attempt, classify_exc,
                                        self._too_late(request, provider, self.settings.base_url)):
            yield event

    async def _check_event_stream(self, stream: Any, provider: str, api: str) -> None:
        """A Fault when the HTTP response under litellm's stream is an HTML page, not an event stream."""
        response = getattr(getattr(stream, "completion_stream", None), "response", None)
        headers = getattr(response, "headers", None)
        content_type = headers.get("content-type", "") if headers is not None else ""
        if not isinstance(content_type, str) or "html" not in content_type.lower():
            return
        try:
            raw = await response.aread()
        except Exception:  # noqa: BLE001 - the description is a nicety; the fault stands without it
            raw = b""
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
        raise Fault(not_an_api_body(provider, self.settings.base_url, text, content_type, compatible=api))

    async def aclose(self) -> None:
        """Close litellm's clients of this event loop when no other open litellm backend used it.  Idempotent."""
        self._providers.clear()
        self._clients.clear()
        self._fast.clear()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        users = _USERS.get(loop)
        if users is None or self not in users:
            return  # no call of ours on this loop
        users.discard(self)
        if users:
            return  # another backend on this loop still uses the clients
        _USERS.pop(loop, None)
        if self._shared_keys:
            from rlm_backend_kit import http_transport

            for key in self._shared_keys:
                http_transport.release_loop(key)
        await close_loop_clients()


def _loaded() -> bool:
    from rlm_backend_litellm import loader

    return loader._litellm is not None


async def close_loop_clients() -> int:
    """Drop the current event loop's clients from litellm's client cache and close them; returns how many.

    Only clients litellm created are closed (not one a caller gave it);
    one still serving a request is handed to litellm's own deferred closer
    instead.  Does nothing (0) when litellm is not imported or its cache
    is not the kind this knows (it cannot tell then which clients are
    litellm's own).
    """
    if not _loaded():
        return 0
    litellm = load_litellm()
    cache = getattr(litellm, "in_memory_llm_clients_cache", None)
    scoped = getattr(cache, "update_cache_key_with_event_loop", None)
    entries = getattr(cache, "cache_dict", None)
    if not callable(scoped) or not isinstance(entries, dict):
        return 0
    suffix = scoped("")
    if not suffix:
        return 0
    closer = getattr(cache, "evicted_client_closer", None)
    owned = getattr(closer, "_is_owned", None)
    schedule = getattr(closer, "schedule", None)
    if not callable(owned) or not callable(schedule):
        return 0
    ttl = getattr(cache, "ttl_dict", None)
    closed = 0
    for key in [k for k in list(entries) if isinstance(k, str) and k.endswith(suffix)]:
        client = entries.pop(key, None)
        if isinstance(ttl, dict):
            ttl.pop(key, None)
        if client is None or not owned(client):
            continue
        if _in_flight(client):
            schedule(client)
            continue
        if await _close(client):
            closed += 1
    return closed


def _in_flight(client: Any) -> bool:
    try:
        from litellm.caching.evicted_client_closer import _has_connection_in_flight
    except ImportError:
        return False
    return bool(_has_connection_in_flight(client))


async def _close(client: Any) -> bool:
    close = getattr(client, "aclose", None) or getattr(client, "close", None)
    if not callable(close):
        return False
    try:
        result = close()
        if inspect.isawaitable(result):
            await result
    except Exception as exc:  # noqa: BLE001 - closing a client must not fail a run
        log.debug("litellm_client_close_failed", error=repr(exc))
        return False
    return True
