"""Anthropic SDK exceptions as rlm errors, with whether a retry can help.

401/403 -> AuthenticationError; 404 -> ModelNotFoundError; 400 "prompt is
too long" and 413 -> ContextTooLongError; 429 -> RateLimitError (retried);
408/409/5xx (529 ``overloaded_error`` included), timeouts and
connection failures -> ProviderUnavailableError (retried); a body that
cannot be read -> ProviderUnavailableError (not retried); other 4xx ->
BackendError.  ``x-should-retry`` from the server overrides the guess.
The SDK is not imported here: exceptions are recognised by their
attributes and class names.
"""

from __future__ import annotations

import re
from typing import Any

from rlm.errors import (
    AuthenticationError,
    BackendError,
    ContextTooLongError,
    ModelNotFoundError,
    ProviderUnavailableError,
    RateLimitError,
)

from rlm.retry import Failure, parse_retry_after

_CONTEXT_WORDS = re.compile(
    r"context[_ ]length|context window|maximum context|too many tokens|prompt is too long|reduce the length",
    re.IGNORECASE,
)


def _headers(exc: BaseException) -> Any:
    response = getattr(exc, "response", None)
    return getattr(response, "headers", None)


def _message(exc: BaseException) -> str:
    """The provider's own words (from the error body when there is one), without a final period."""
    text = ""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            text = inner["message"]
    if not text:
        message = getattr(exc, "message", None)
        text = str(message if isinstance(message, str) and message else exc)
    return text.strip().rstrip(".").strip() or type(exc).__name__


def _code(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if code:
        return str(code)
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        if isinstance(inner, dict) and inner.get("code"):
            return str(inner["code"])
    return ""


def _mro_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


_TRANSPORT_MODULES = ("httpx", "httpcore", "httpx2", "httpcore2", "aiohttp", "h11", "anyio")


def _is_transport_error(exc: BaseException) -> bool:
    """An HTTP-library error raised while reading a response (a stream cut short, a read timeout)."""
    if "HTTPStatusError" in _mro_names(exc):  # an error status, not a transport failure
        return False
    return type(exc).__module__.split(".")[0] in _TRANSPORT_MODULES or isinstance(exc, (ConnectionError, EOFError))


def classify(
    exc: BaseException,
    *,
    model: str,
    provider: str = "Anthropic",
    key_env: str = "ANTHROPIC_API_KEY",
    base_url: str | None = None,
    timeout: float | None = None,
) -> Failure | None:
    """The rlm error for an SDK exception, or None when ``exc`` is not a provider failure."""
    names = _mro_names(exc)
    where = f" at {base_url}" if base_url else ""
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int) or "APIStatusError" not in names:
        status = None
    headers = _headers(exc)
    retry_after = parse_retry_after(headers)
    should_retry = headers.get("x-should-retry") if headers is not None else None
    message = _message(exc)

    transport = _is_transport_error(exc)
    timed_out = "APITimeoutError" in names or ("Timeout" in names and status is None)
    if timed_out or (transport and ("TimeoutException" in names or isinstance(exc, TimeoutError))):
        within = f" within the {timeout:g}s timeout" if timeout else " in time"
        error: BackendError = ProviderUnavailableError(
            f"{provider}{where} did not answer{within} (request timed out)",
            fix="try again later, or raise the timeout",
        )
        failure = Failure(error=error, retryable=True)
    elif ("APIConnectionError" in names and status is None) or transport:
        error = ProviderUnavailableError(
            f"cannot reach {provider}{where}: {message}",
            fix="check the network and api_base, then try again",
        )
        failure = Failure(error=error, retryable=True)
    elif status is not None:
        failure = _from_status(status, message, _code(exc), model=model, provider=provider, key_env=key_env,
                               where=where, retry_after=retry_after)
    elif "APIResponseValidationError" in names or "AnthropicError" in names or "APIError" in names:
        error = ProviderUnavailableError(
            f"{provider}{where} sent a response that could not be read: {message}",
            fix="try again; if it persists, check that api_base points at an Anthropic-compatible server",
        )
        failure = Failure(error=error, retryable=False)
    elif isinstance(exc, (ValueError, KeyError, TypeError)) and "json" in type(exc).__module__:
        error = ProviderUnavailableError(
            f"{provider}{where} sent a response that is not valid JSON: {exc}",
            fix="try again; if it persists, check that api_base points at an Anthropic-compatible server",
        )
        failure = Failure(error=error, retryable=False)
    else:
        return None
    if should_retry == "false" and failure.retryable:
        failure = Failure(error=failure.error, retryable=False, retry_after=failure.retry_after)
    elif should_retry == "true" and not failure.retryable and not failure.error.permanent:
        failure = Failure(error=failure.error, retryable=True, retry_after=failure.retry_after)
    return failure


def _from_status(
    status: int,
    message: str,
    code: str,
    *,
    model: str,
    provider: str,
    key_env: str,
    where: str,
    retry_after: float | None,
) -> Failure:
    said = f"{provider}{where} answered {status}: {message}"
    if status in (401, 403):
        return Failure(error=AuthenticationError(
            f"{provider}{where} rejected the API key ({status}): {message}",
            fix=f"check {key_env} (or the key given as api_key); it may be wrong, revoked or lack access",
        ))
    if status == 404:
        return Failure(error=ModelNotFoundError(
            f"{provider}{where} does not know model {model!r}: {message}",
            fix="check the model name" + (" and api_base" if where else "") + " (list the models your key can use)",
        ))
    if status == 413 or (status == 400 and (code == "context_length_exceeded" or _CONTEXT_WORDS.search(message))):
        return Failure(error=ContextTooLongError(
            f"the prompt is too long for {model!r}: {message}",
            fix="shorten the prompt or context, or use a model with a larger context window",
        ))
    if status == 429:
        if code == "insufficient_quota" or "quota" in message.lower() and "exceeded" in message.lower():
            error = RateLimitError(f"{provider} quota exhausted: {message}", fix="check the plan and billing of the account")
            error.permanent = True
            return Failure(error=error)
        return Failure(
            error=RateLimitError(f"{provider}{where} rate limit hit: {message}",
                                 fix="wait a minute, lower the request rate, or raise the account's limits"),
            retryable=True,
            retry_after=retry_after,
        )
    if status in (408, 409) or status >= 500:
        return Failure(
            error=ProviderUnavailableError(said, fix="the provider is failing or overloaded; try again later"),
            retryable=True,
            retry_after=retry_after,
        )
    return Failure(error=BackendError(said, fix="the request was refused; check the model's parameters"))
