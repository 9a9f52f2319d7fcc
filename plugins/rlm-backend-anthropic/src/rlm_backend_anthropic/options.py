"""``[plugins.backend-anthropic]``: the Anthropic backend's own settings, after the retry
settings every backend has (:class:`rlm_backend_kit.backend_options.RetryOptions`; attrs only: cheap to import)."""

from __future__ import annotations

from typing import Literal

import attrs
from rlm_backend_kit.backend_options import RetryOptions

StructuredOutput = Literal["auto", "native", "tool"]


@attrs.define(frozen=True, kw_only=True)
class AnthropicOptions(RetryOptions):
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
