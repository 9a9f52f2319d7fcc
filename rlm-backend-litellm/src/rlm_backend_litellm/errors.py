"""litellm's exceptions as rlm errors, with whether a retry can help.

litellm maps every provider's errors onto OpenAI-style exceptions (they
subclass the openai SDK's), so the shared rules of rlm_backend_kit.provider_errors apply
(:func:`rlm_backend_kit.provider_errors.classify`: status codes, timeouts, connection
failures, ``x-should-retry``), to the exception or to the failure litellm
wrapped in it.  litellm's own cases come first: its check of a stream's end,
a 200 whose body is not a completion, ``ContextWindowExceededError`` (a
context error whatever its text) and "LLM Provider NOT provided" (which asks
for a provider prefix).  litellm is not imported here: exceptions are
recognised by their attributes and class names.
"""

from __future__ import annotations

import ast
import re

from rlm.errors import BackendError, ContextTooLongError
from rlm_backend_kit.provider_errors import classify as _classify
from rlm_backend_kit.provider_errors import (
    error_message,
    headers_of,
    is_transport_error,
    malformed_stream,
    mro_names,
    not_an_api_body,
    obey_should_retry,
    truncated_stream,
)
from rlm_backend_kit.retry import Failure

#: What litellm says of an OpenAI-style stream that ended cleanly before a finish_reason.
_EOF_BEFORE_FINISH = "Stream ended before a finish_reason"
#: What litellm says of a 200 whose body is not a completion (an HTML page...): the body is quoted with repr().
_NOT_A_COMPLETION = re.compile(r"Empty or invalid response from LLM endpoint\. Received: (.*)\. Check the reverse proxy",
                               re.DOTALL)
_LITELLM_PREFIX = re.compile(r"^(?:litellm\.\w+:\s*|\w+(?:Error|Exception)(?::|\s+-)\s*|\w+Exception\s+-\s*)+")


def _message(exc: BaseException) -> str:
    """The provider's words, without litellm's ``litellm.RateLimitError: RateLimitError: OpenAIException -``."""
    return _LITELLM_PREFIX.sub("", error_message(exc)).strip() or type(exc).__name__


def json_error_in(exc: BaseException) -> BaseException | None:
    """The JSON decoding error behind ``exc`` (litellm wraps the one of a broken stream event), if any."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if "JSONDecodeError" in mro_names(cause):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def stream_failure(exc: BaseException, *, provider: str, base_url: str | None,
                   compatible: str | None = None) -> Failure | None:
    """A failure of a stream that the rules for a plain call would get wrong: an event that is not JSON
    (retried while nothing was yielded, like a connection cut mid-answer)."""
    broken = json_error_in(exc)
    return malformed_stream(provider, base_url, broken, compatible=compatible) if broken is not None else None


def _underlying(exc: BaseException) -> BaseException | None:
    """The connection failure, timeout or JSON error behind one of litellm's wrapper exceptions, if any."""
    seen: set[int] = {id(exc)}
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        names = mro_names(cause)
        if names & {"APIConnectionError", "APITimeoutError", "JSONDecodeError"} or is_transport_error(cause):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) and not isinstance(status, bool) else None


def classify(
    exc: BaseException,
    *,
    model: str,
    provider: str = "litellm",
    key_env: str = "the provider's API key variable",
    base_url: str | None = None,
    timeout: float | None = None,
    timeout_fix: str | None = None,
    compatible: str = "OpenAI",
) -> Failure | None:
    """The rlm error for an SDK exception, or None when ``exc`` is not a provider failure.

    The shared rules (:func:`rlm_backend_kit.provider_errors.classify`, with litellm's words cleaned of its prefixes
    and any exception's ``status_code``) applied to ``exc``, or to the failure litellm wrapped in it; first
    litellm's own cases.  ``timeout_fix`` names the setting that raises the timeout; ``compatible`` the API
    the server must speak (for the fixes of unreadable answers).
    """
    underlying = _underlying(exc) if _status(exc) in (None, 500) else None
    # litellm reports a dropped connection or an unreadable body as a 500 of its own: judge what it wraps
    subject = exc if underlying is None else underlying
    message = _message(subject)
    where = f" at {base_url}" if base_url else ""
    if underlying is None or not isinstance(underlying, ValueError):
        failure = _litellm_failure(exc, subject, message, model=model, provider=provider, base_url=base_url,
                                   where=where, compatible=compatible)
        if failure is not None:
            return obey_should_retry(failure, headers_of(exc))
    failure = _classify(subject, model=model, provider=provider, key_env=key_env,
                        sdk_errors=("OpenAIError", "APIError"), base_url=base_url, timeout=timeout,
                        timeout_fix=timeout_fix, compatible=compatible, message=message, any_status=True)
    if failure is None or subject is exc or isinstance(underlying, ValueError):
        return failure
    return obey_should_retry(failure, headers_of(exc))


def _litellm_failure(exc: BaseException, subject: BaseException, message: str, *, model: str, provider: str,
                     base_url: str | None, where: str, compatible: str) -> Failure | None:
    """What only litellm says: its check of a stream's end, a body that is not a completion, a context
    error whatever its text, a model whose provider it cannot tell; None for the shared rules."""
    names = mro_names(subject)
    if "APITimeoutError" in names or "Timeout" in names:
        return None  # a timeout, whatever its words
    if _EOF_BEFORE_FINISH in message:
        # litellm's own check of an OpenAI-style stream that ended without a finish_reason
        return truncated_stream(provider, base_url, "finish_reason")
    if (body := _NOT_A_COMPLETION.search(error_message(exc))) is not None:
        return not_an_api_body(provider, base_url, _unquote(body.group(1)), compatible=compatible)
    if "ContextWindowExceededError" in names:
        return Failure(error=ContextTooLongError(
            f"the prompt is too long for {model!r}: {message}",
            fix="shorten the prompt or context, or use a model with a larger context window",
        ))
    if subject is exc and _status(exc) == 400 and "LLM Provider NOT provided" in message:
        return Failure(error=BackendError(
            f"litellm cannot tell which provider serves model {model!r}",
            fix='prefix the model with its provider ("openai/...", "anthropic/...", "ollama/..."), or set '
                "[plugins.backend-litellm] custom_llm_provider",
        ))
    return None


def _unquote(text: str) -> str:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return value if isinstance(value, str) else text
