"""``[plugins.backend-anthropic]``: the Anthropic backend's own settings (attrs only: cheap to import)."""

from __future__ import annotations

import math
from typing import Any, Literal

import attrs

StructuredOutput = Literal["auto", "native", "tool"]


def positive_seconds(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A number of seconds > 0 (or unset)."""
    if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a number of seconds > 0, got {value!r}")


@attrs.define(frozen=True, kw_only=True)
class AnthropicOptions:
    """Validated by the kernel from ``[plugins.backend-anthropic]`` / ``RLM_PLUGINS__BACKEND_ANTHROPIC__<KEY>``."""

    default_max_tokens: int | None = attrs.field(
        default=None,
        metadata={"help": "max output tokens when a request sets none (Anthropic requires one; "
                          "unset: 8192, or 4096 for Claude 3 models)"},
    )
    structured_output: StructuredOutput = attrs.field(
        default="auto",
        metadata={"help": 'how response_format is sent: "native" (output_config.format json_schema), '
                          '"tool" (a forced tool whose input is the answer) or "auto" (native for models '
                          "that support it: Claude 4.5 and later, Opus 4.1; a tool otherwise)"},
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
