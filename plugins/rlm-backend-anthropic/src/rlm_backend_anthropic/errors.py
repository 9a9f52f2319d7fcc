"""Anthropic SDK exceptions as rlm errors: the shared rules of every backend (:mod:`rlm_backend_kit.provider_errors`)
with Anthropic's name, key variable and SDK base error.  A 529 ``overloaded_error`` is a 5xx:
retried like the others."""

from __future__ import annotations

import functools

from rlm_backend_kit.provider_errors import classify as _classify

classify = functools.partial(_classify, provider="Anthropic", key_env="ANTHROPIC_API_KEY",
                             sdk_errors=("AnthropicError", "APIError"))
