"""``[plugins.backend-litellm]``: the litellm backend's own settings (attrs only: cheap to import)."""

from __future__ import annotations

import math
from typing import Any

import attrs


def positive_seconds(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A number of seconds > 0 (or unset)."""
    if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a number of seconds > 0, got {value!r}")


@attrs.define(frozen=True, kw_only=True)
class LiteLLMOptions:
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
    retry_base_delay: float = attrs.field(
        default=0.5, metadata={"help": "seconds before the first retry (doubled each retry, with jitter)"}
    )
    retry_max_delay: float = attrs.field(default=30.0, metadata={"help": "longest wait between two retries, seconds"})
    read_timeout: float | None = attrs.field(
        default=None, validator=positive_seconds,
        metadata={"help": "seconds to wait for the provider's next bytes (for an answer that is not streamed: the "
                          "whole answer) before the attempt is abandoned and retried; unset: 120, never more "
                          "than the run's timeout"},
    )
