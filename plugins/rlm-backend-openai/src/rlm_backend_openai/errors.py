"""OpenAI SDK exceptions as rlm errors: the shared rules of every backend (:mod:`rlm_backend_kit.provider_errors`)
with OpenAI's name, key variable and SDK base error."""

from __future__ import annotations

import functools

from rlm_backend_kit.provider_errors import classify as _classify

classify = functools.partial(_classify, provider="OpenAI", key_env="OPENAI_API_KEY",
                             sdk_errors=("OpenAIError", "APIError"))
