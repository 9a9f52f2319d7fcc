"""HTTP-API SDK exceptions as rlm errors, with whether a retry can help.

Shared by the backends whose SDKs follow the same design (openai,
anthropic and SDKs generated like them): exceptions are recognised by
their attributes (``status_code``, ``body``, ``response.headers``) and
class names, so no SDK is imported here.

401/403 -> AuthenticationError; 404 -> ModelNotFoundError; 400 about the
context length and 413 -> ContextTooLongError; 429 -> RateLimitError
(retried, except ``insufficient_quota``); 408/409/5xx, timeouts and
connection failures -> ProviderUnavailableError (retried); a body that
cannot be read -> ProviderUnavailableError (not retried); other 4xx ->
BackendError.  ``x-should-retry`` from the server overrides the guess.

What a backend finds wrong in an answer that did arrive has its own
failures here, the same for every backend: :func:`truncated_stream` (a
stream that ended before its end marker) and :func:`malformed_stream` (an
event that is not JSON), both retried while nothing was yielded;
:func:`empty_answer` (no text and no tool call: retried, unless a filter
stopped it); :func:`not_an_api_body` (an HTML page or other text where JSON
was due: not retried, the fix is the ``api_base``).  A timeout names the
setting that raises it (:func:`timed_out_failure`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

from rlm.errors import (
    AuthenticationError,
    BackendError,
    ContextTooLongError,
    ModelNotFoundError,
    ProviderUnavailableError,
    RateLimitError,
)
from rlm_backend_kit.retry import Failure, parse_retry_after

CONTEXT_WORDS = re.compile(
    r"context[_ ]length|context window|maximum context|too many tokens|prompt is too long|reduce the length",
    re.IGNORECASE,
)


def headers_of(exc: BaseException) -> Any:
    """The response headers of ``exc``: its ``response.headers``, else (when those are empty) litellm's
    ``litellm_response_headers`` (litellm rebuilds ``response`` without headers around a response of another
    httpx, e.g. one from a client given to it)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        extra = getattr(exc, "litellm_response_headers", None)
        if extra:
            return extra
    return headers


def error_message(exc: BaseException) -> str:
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


def error_code(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if code:
        return str(code)
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        if isinstance(inner, dict) and inner.get("code"):
            return str(inner["code"])
    return ""


def mro_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


_TRANSPORT_MODULES = ("httpx", "httpcore", "httpx2", "httpcore2", "aiohttp", "h11", "anyio")


def is_transport_error(exc: BaseException) -> bool:
    """An HTTP-library error raised while reading a response (a stream cut short, a read timeout)."""
    if "HTTPStatusError" in mro_names(exc):  # an error status, not a transport failure
        return False
    return type(exc).__module__.split(".")[0] in _TRANSPORT_MODULES or isinstance(exc, (ConnectionError, EOFError))


def classify(
    exc: BaseException,
    *,
    model: str,
    provider: str,
    key_env: str,
    sdk_errors: tuple[str, ...] = ("APIError",),
    base_url: str | None = None,
    timeout: float | None = None,
    timeout_fix: str | None = None,
    compatible: str | None = None,
    message: str | None = None,
    any_status: bool = False,
) -> Failure | None:
    """The rlm error for an SDK exception, or None when ``exc`` is not a provider failure.

    ``provider`` names the service in messages, ``key_env`` the variable of
    its key; ``sdk_errors`` are the class names of the SDK's base errors
    (a response the SDK could not read); ``timeout`` is the attempt's
    timeout and ``timeout_fix`` the setting that raises it (see
    :func:`rlm_backend_kit.retry.read_timeout`).  For SDKs that wrap others (litellm):
    ``compatible`` names the API the server must speak in fixes (default:
    ``provider``), ``message`` is the provider's words when the caller has
    cleaned them (default: :func:`error_message`), and ``any_status`` takes
    the ``status_code`` of any exception, not only of an ``APIStatusError``.
    """
    names = mro_names(exc)
    where = f" at {base_url}" if base_url else ""
    compatible = compatible or provider
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int) or isinstance(status, bool) or not (any_status or "APIStatusError" in names):
        status = None
    headers = headers_of(exc)
    retry_after = parse_retry_after(headers)
    message = error_message(exc) if message is None else message

    transport = is_transport_error(exc)
    timed_out = "APITimeoutError" in names or ("Timeout" in names and status is None)
    if timed_out or (transport and ("TimeoutException" in names or isinstance(exc, TimeoutError))):
        failure = timed_out_failure(provider, where, timeout, timeout_fix)
    elif ("APIConnectionError" in names and (status is None or "APIStatusError" not in names)) or transport:
        cause = exc if transport else exc.__cause__
        if cause is not None and "RemoteProtocolError" in mro_names(cause):  # it answered, but not in HTTP
            error = ProviderUnavailableError(
                f"{provider}{where} sent a broken HTTP response: {cause}",
                fix=f"try again; if it persists, check that api_base points at an {compatible}-compatible server "
                "and any proxy between rlm and the provider",
            )
        else:
            said = f" ({cause})" if cause is not None and cause is not exc and is_transport_error(cause) and str(cause) \
                and str(cause) not in message else ""
            error = ProviderUnavailableError(
                f"cannot reach {provider}{where}: {message}{said}",
                fix="check the network and api_base, then try again",
            )
        failure = Failure(error=error, retryable=True)
    elif status is not None:
        failure = from_status(status, message, error_code(exc), model=model, provider=provider, key_env=key_env,
                               where=where, retry_after=retry_after)
    elif "APIResponseValidationError" in names or names & set(sdk_errors):
        error = ProviderUnavailableError(
            f"{provider}{where} sent a response that could not be read: {message}",
            fix=f"try again; if it persists, check that api_base points at an {compatible}-compatible server",
        )
        failure = Failure(error=error, retryable=False)
    elif isinstance(exc, (ValueError, KeyError, TypeError)) and "json" in type(exc).__module__:
        error = ProviderUnavailableError(
            f"{provider}{where} sent a response that is not valid JSON: {exc}",
            fix=f"try again; if it persists, check that api_base points at an {compatible}-compatible server",
        )
        failure = Failure(error=error, retryable=False)
    else:
        return None
    return obey_should_retry(failure, headers)


def obey_should_retry(failure: Failure, headers: Any) -> Failure:
    """``failure``, retried or not as the server's ``x-should-retry`` header says (when it says)."""
    should_retry = headers.get("x-should-retry") if headers is not None else None
    if should_retry == "false" and failure.retryable:
        return Failure(error=failure.error, retryable=False, retry_after=failure.retry_after)
    if should_retry == "true" and not failure.retryable and not failure.error.permanent:
        return Failure(error=failure.error, retryable=True, retry_after=failure.retry_after)
    return failure


def timed_out_failure(provider: str, where: str, timeout: float | None, timeout_fix: str | None) -> Failure:
    """The provider sent nothing for ``timeout`` seconds: retried like a connection failure."""
    within = f" within the {timeout:g}s timeout" if timeout else " in time"
    error = ProviderUnavailableError(
        f"{provider}{where} did not answer{within} (request timed out)",
        fix=f"try again later, or raise {timeout_fix or 'the timeout'}",
    )
    return Failure(error=error, retryable=True)


def truncated_stream(provider: str, base_url: str | None, missing: str) -> Failure:
    """A stream that ended, cleanly at the HTTP level, without ``missing`` (its end marker): an error, never
    a complete answer; retried (the retry helpers do so only while nothing was yielded)."""
    where = f" at {base_url}" if base_url else ""
    error = ProviderUnavailableError(
        f"{provider}{where} ended the stream before the answer was complete (no {missing})",
        fix="try again; if it persists, check the network and any proxy between rlm and the provider",
    )
    return Failure(error=error, retryable=True)


def malformed_stream(provider: str, base_url: str | None, exc: BaseException, *,
                     compatible: str | None = None) -> Failure:
    """A stream event that is not valid JSON: like a connection cut mid-answer, retried while nothing was
    yielded.  ``compatible`` names the API in the fix (default: ``provider``)."""
    where = f" at {base_url}" if base_url else ""
    detail = " ".join(str(exc).split())[:120]
    error = ProviderUnavailableError(
        f"{provider}{where} sent a stream event that is not valid JSON ({detail})",
        fix="try again; if it persists, check that api_base points at an "
        f"{compatible or provider}-compatible server and any proxy between rlm and the provider",
    )
    return Failure(error=error, retryable=True)


def empty_answer(provider: str, base_url: str | None, detail: str, *, finish_reason: str | None = None,
                 compatible: str | None = None) -> Failure:
    """An answer with no text and no tool call (``detail`` says what came, e.g. ``content: null``).

    Retried (a model may answer the same prompt the next time), except when
    the provider says a content filter or a refusal stopped it.
    """
    where = f" at {base_url}" if base_url else ""
    filtered = finish_reason in ("content_filter", "refusal")
    error = ProviderUnavailableError(
        f"{provider}{where} sent an answer with no content ({detail}"
        + (f", finish_reason {finish_reason!r}" if finish_reason else "") + ")",
        fix="rephrase the prompt: the provider's filter stopped the answer" if filtered else
        "try again; if it persists, check that api_base points at an "
        f"{compatible or provider}-compatible server and that the model answers this prompt",
    )
    return Failure(error=error, retryable=not filtered)


def empty_answer_of(response: Any, provider: str, base_url: str | None, detail: str | Callable[[], str], *,
                    compatible: str | None = None) -> Failure | None:
    """None when ``response`` (an :class:`rlm.backend.LLMResponse`) holds an answer -- text, a tool
    call, or one cut by max_tokens, which the caller judges -- else :func:`empty_answer`'s failure
    (``detail`` may be a function, called only then)."""
    message = response.message
    if message.text or message.tool_calls or response.finish_reason == "length":
        return None
    return empty_answer(provider, base_url, detail() if callable(detail) else detail,
                        finish_reason=response.finish_reason, compatible=compatible)


def describe_body(text: str, content_type: str | None = None) -> str:
    """A short one-line description of a body that is not the API's: an HTML page's title, or its start."""
    kind = (content_type or "").split(";")[0].strip().lower()
    title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    if title or kind == "text/html" or text.lstrip()[:15].lower().startswith(("<!doctype html", "<html")):
        name = " ".join(html.unescape(title.group(1)).split())[:80] if title else ""
        return f"an HTML page ({name!r})" if name else "an HTML page"
    start = " ".join(text.split())[:80]
    return f"{kind or 'a body'} that is not JSON ({start!r})" if start else "an empty body"


def not_an_api_body(provider: str, base_url: str | None, text: str, content_type: str | None = None, *,
                    compatible: str | None = None) -> Failure:
    """A 200 whose body is an HTML page or other text, not the API's JSON: a wrong ``api_base`` or a proxy
    in the way (not retried)."""
    where = f" at {base_url}" if base_url else ""
    error = ProviderUnavailableError(
        f"{provider}{where} sent {describe_body(text, content_type)} instead of an API response",
        fix=f"check that api_base points at an {compatible or provider}-compatible API, not at a web page or a "
        "proxy's login",
    )
    return Failure(error=error, retryable=False)


def from_status(
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
    if status == 413 or (status == 400 and (code == "context_length_exceeded" or CONTEXT_WORDS.search(message))):
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
