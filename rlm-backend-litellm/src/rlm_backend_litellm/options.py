"""``[plugins.backend-litellm]``: the litellm backend's own settings, after the retry
settings every backend has (:class:`rlm_backend_kit.backend_options.RetryOptions`; attrs only: cheap to import)."""

from __future__ import annotations

import attrs
from rlm_backend_kit.backend_options import RetryOptions


@attrs.define(frozen=True, kw_only=True)
class LiteLLMOptions(RetryOptions):
    """Validated by the kernel from ``[plugins.backend-litellm]`` / ``RLM_PLUGINS__BACKEND_LITELLM__<KEY>``."""

    custom_llm_provider: str | None = attrs.field(
        default=None,
        metadata={"help": 'litellm provider for every model (e.g. "openai" for an OpenAI-compatible api_base); '
                          "unset: from the model string, and \"openai\" for unknown models with api_base"},
    )
    drop_params: bool = attrs.field(
        default=False, metadata={"help": "let litellm drop parameters the provider does not support"}
    )
    default_max_tokens: int | None = attrs.field(
        default=None, metadata={"help": "max output tokens when a request sets none (unset: the provider's default)"}
    )
    shared_client: bool = attrs.field(
        default=True,
        metadata={"help": "for OpenAI-protocol models (provider openai), give litellm one openai SDK client per process "
                          "over rlm's lean keep-alive HTTP/1.1 transport (less CPU per call; off: litellm's own "
                          "clients)"},
    )
    fast_openai_route: bool = attrs.field(
        default=True,
        metadata={"help": "send a non-streamed call to an OpenAI-protocol model (provider openai) straight through the "
                          "shared openai SDK client (litellm's own request transformation, without its per-call "
                          "logging and cost work: ~2 ms less CPU per call); falls back to litellm.acompletion "
                          "whenever litellm callbacks or other litellm settings are in use (off: always litellm)"},
    )
