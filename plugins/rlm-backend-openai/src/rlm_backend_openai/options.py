"""``[plugins.backend-openai]``: the OpenAI backend's own settings, after the retry
settings every backend has (:class:`rlm_backend_kit.backend_options.RetryOptions`; attrs only: cheap to import)."""

from __future__ import annotations

from typing import Literal

import attrs
from rlm_backend_kit.backend_options import RetryOptions

MaxTokensParam = Literal["auto", "max_completion_tokens", "max_tokens"]


@attrs.define(frozen=True, kw_only=True)
class OpenAIOptions(RetryOptions):
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
