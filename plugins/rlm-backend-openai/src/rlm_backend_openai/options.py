"""``[plugins.backend-openai]``: the OpenAI backend's own settings (attrs only: cheap to import)."""

from __future__ import annotations

import math
from typing import Any, Literal

import attrs

MaxTokensParam = Literal["auto", "max_completion_tokens", "max_tokens"]


def positive_seconds(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A number of seconds > 0 (or unset)."""
    if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a number of seconds > 0, got {value!r}")


@attrs.define(frozen=True, kw_only=True)
class OpenAIOptions:
    """Validated by the kernel from ``[plugins.backend-openai]`` / ``RLM_PLUGINS__BACKEND_OPENAI__<KEY>``."""

    organization: str | None = attrs.field(default=None, metadata={"help": "OpenAI organization id (org-...)"})
    project: str | None = attrs.field(default=None, metadata={"help": "OpenAI project id (proj_...)"})
    default_max_tokens: int | None = attrs.field(
        default=None, metadata={"help": "max output tokens when a request sets none (unset: the model's default)"}
    )
    max_tokens_param: MaxTokensParam = attrs.field(
        default="auto",
        metadata={"help": 'how to send max tokens: "auto" (max_completion_tokens to OpenAI, max_tokens to '
                          'other servers), "max_completion_tokens" or "max_tokens"'},
    )
    retry_base_delay: float = attrs.field(
        default=0.5, metadata={"help": "seconds before the first retry (doubled each retry, with jitter)"}
    )
    retry_max_delay: float = attrs.field(default=30.0, metadata={"help": "longest wait between two retries, seconds"})
    read_timeout: float | None = attrs.field(
        default=None, validator=positive_seconds,
        metadata={"help": "seconds to wait for the server's next bytes (for an answer that is not streamed: the "
                          "whole answer) before the attempt is abandoned and retried; unset: 120, never more "
                          "than the run's timeout"},
    )
