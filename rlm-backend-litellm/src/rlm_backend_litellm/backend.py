"""The litellm backend: any provider litellm supports, model strings as litellm names them.

``gpt-4o-mini``, ``anthropic/claude-sonnet-4-5``, ``ollama/llama3``...  With
``base_url`` (``[rlm] api_base``) requests go to that server; a model litellm
does not know is then sent with ``custom_llm_provider="openai"`` (an
OpenAI-compatible server), and a missing key is replaced by a placeholder.
Requests and responses use the OpenAI format (:mod:`.convert`); litellm
translates for the provider.  litellm's retries are off: :mod:`.retry`
retries 429/5xx, timeouts and connection failures with backoff, jitter and
``Retry-After``; :mod:`.errors` turns litellm's exceptions into
:mod:`rlm.errors`.  litellm is imported on the first call (:mod:`.loader`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from rlm.backend import BackendCapabilities, BackendSettings, LLMRequest, LLMResponse, StreamEvent
from rlm.errors import NoProvidersConfigured, ProviderUnavailableError
from rlm.logging import get_logger

from rlm import openai_format as convert
from rlm_backend_litellm.errors import classify
from rlm_backend_litellm.loader import load_litellm, model_info, require_litellm
from rlm_backend_litellm.options import LiteLLMOptions
from rlm.retry import RetryPolicy, call_with_retries, stream_with_retries

log = get_logger(__name__)

NO_KEY_MESSAGE = "No providers configured: set OPENAI_API_KEY or ANTHROPIC_API_KEY"
#: Sent as the key to a custom base_url when the provider's key is not set (local servers ignore it).
PLACEHOLDER_KEY = "sk-no-key-required"


class LiteLLMBackend:
    """:class:`rlm.backend.Backend` over ``litellm.acompletion``.

    Constructing it does no I/O and does not import litellm.
    """

    name = "litellm"

    def __init__(self, *, settings: BackendSettings | None = None) -> None:
        require_litellm()
        self.settings = settings or BackendSettings()
        options = self.settings.options
        self.options = options if isinstance(options, LiteLLMOptions) else LiteLLMOptions()
        self.policy = RetryPolicy(
            max_retries=max(0, self.settings.max_retries),
            base_delay=self.options.retry_base_delay,
            max_delay=self.options.retry_max_delay,
        )
        self._providers: dict[str, str | None] = {}

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
            if provider is None or self.options.custom_llm_provider:
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
        if entry is None:
            return BackendCapabilities(native_tools=True, json_schema=True, preferred_protocol="tools")
        window = entry.get("max_input_tokens") or entry.get("max_tokens")
        return BackendCapabilities(
            native_tools=bool(entry.get("supports_function_calling", True)),
            json_schema=bool(entry.get("supports_response_schema", False)),
            vision=bool(entry.get("supports_vision", False)),
            audio=bool(entry.get("supports_audio_input", False)),
            preferred_protocol="tools",
            context_window=int(window) if isinstance(window, (int, float)) and window > 0 else None,
        )

    def _params(self, request: LLMRequest) -> dict[str, Any]:
        params = convert.request_params(request, max_tokens_param="max_tokens")
        if request.max_tokens is None and self.options.default_max_tokens is not None:
            params["max_tokens"] = self.options.default_max_tokens
        params.update(self._call_args(request.model))
        params["model"] = request.model
        params["timeout"] = request.timeout if request.timeout is not None else self.settings.timeout
        params["num_retries"] = 0
        params["max_retries"] = 0
        if self.options.drop_params:
            params["drop_params"] = True
        return params

    def _classify(self, params: dict[str, Any]) -> Any:
        known = params.get("custom_llm_provider") or self.provider_of(params["model"])
        provider = f"{known} (via litellm)" if known else "litellm"
        key_env = self.key_env(params["model"])

        def classify_exc(exc: BaseException) -> Any:
            return classify(exc, model=params["model"], provider=provider, key_env=key_env,
                            base_url=self.settings.base_url, timeout=params["timeout"])

        return classify_exc

    async def complete(self, request: LLMRequest) -> LLMResponse:
        litellm = load_litellm()
        params = self._params(request)

        async def attempt() -> Any:
            return await litellm.acompletion(**params)

        response = await call_with_retries(attempt, self._classify(params), self.policy, provider=self.name)
        try:
            return convert.from_openai_completion(response, model=params["model"])
        except (AttributeError, TypeError, ValueError) as exc:
            raise ProviderUnavailableError(
                f"litellm returned a completion that could not be read: {exc}",
                fix="try again; if it persists, report the model and provider",
            ) from exc

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamEvent]:
        litellm = load_litellm()
        params = self._params(request)
        params["stream"] = True
        params["stream_options"] = {"include_usage": True}
        classify_exc = self._classify(params)

        async def attempt() -> AsyncIterator[StreamEvent]:
            stream = await litellm.acompletion(**params)
            assembler = convert.StreamAssembler(model=params["model"])
            try:
                async for chunk in stream:
                    for event in assembler.feed(chunk):
                        yield event
            finally:
                closer = getattr(stream, "aclose", None)
                if closer is not None:
                    await closer()
            for event in assembler.finish():
                yield event

        async for event in stream_with_retries(attempt, classify_exc, self.policy, provider=self.name):
            yield event

    async def aclose(self) -> None:
        """Nothing of ours to release: litellm keeps its own client cache."""
        self._providers.clear()
