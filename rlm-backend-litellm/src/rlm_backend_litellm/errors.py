"""litellm's exceptions as rlm errors, with whether a retry can help.

litellm maps every provider's errors onto OpenAI-style exceptions (they
subclass the openai SDK's), so the rules are the OpenAI ones:

401/403 -> AuthenticationError; 404 -> ModelNotFoundError; 400 about the
context length and 413 -> ContextTooLongError; 429 -> RateLimitError
(retried, except ``insufficient_quota``); 408/409/5xx, timeouts and
connection failures -> ProviderUnavailableError (retried); a body that
cannot be read -> ProviderUnavailableError (not retried); other 4xx ->
BackendError.  ``x-should-retry`` from the server overrides the guess.
litellm's ``ContextWindowExceededError`` is a context error whatever its
text, and "LLM Provider NOT provided" asks for a provider prefix.  litellm
is not imported here: exceptions are recognised by their attributes and
class names.
"""

from __future__ import annotations

import ast
import re

from rlm.errors import BackendError, ContextTooLongError, ProviderUnavailableError
from rlm.provider_errors import (
    error_code,
    error_message,
    from_status,
    headers_of,
    is_transport_error,
    malformed_stream,
    mro_names,
    not_an_api_body,
    timed_out_failure,
    truncated_stream,
)

from rlm.retry import Failure, parse_retry_after

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

    ``timeout_fix`` names the setting that raises the timeout; ``compatible`` the API the server must
    speak (for the fixes of unreadable answers).
    """
    names = mro_names(exc)
    where = f" at {base_url}" if base_url else ""
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int) or isinstance(status, bool):
        status = None
    headers = headers_of(exc)
    retry_after = parse_retry_after(headers)
    should_retry = headers.get("x-should-retry") if headers is not None else None
    message = _message(exc)

    underlying = _underlying(exc) if status in (None, 500) else None
    if underlying is not None:
        # litellm reports a dropped connection or an unreadable body as a 500 of its own
        names, status, message = mro_names(underlying), None, _message(underlying)
        if isinstance(underlying, ValueError):
            error = ProviderUnavailableError(
                f"{provider}{where} sent a response that is not valid JSON: {message}",
                fix=f"try again; if it persists, check that api_base points at an {compatible}-compatible server",
            )
            return Failure(error=error, retryable=False)
    transport = is_transport_error(exc) or (underlying is not None and is_transport_error(underlying))
    timed_out = "APITimeoutError" in names or "Timeout" in names
    if timed_out or (transport and ("TimeoutException" in names or isinstance(exc, TimeoutError))):
        failure = timed_out_failure(provider, where, timeout, timeout_fix)
    elif _EOF_BEFORE_FINISH in message:
        # litellm's own check of an OpenAI-style stream that ended without a finish_reason
        failure = truncated_stream(provider, base_url, "finish_reason")
    elif (body := _NOT_A_COMPLETION.search(error_message(exc))) is not None:
        failure = not_an_api_body(provider, base_url, _unquote(body.group(1)), compatible=compatible)
    elif ("APIConnectionError" in names and "APIStatusError" not in names) or transport:
        error = ProviderUnavailableError(
            f"cannot reach {provider}{where}: {message}",
            fix="check the network and api_base, then try again",
        )
        failure = Failure(error=error, retryable=True)
    elif "ContextWindowExceededError" in names:
        failure = Failure(error=ContextTooLongError(
            f"the prompt is too long for {model!r}: {message}",
            fix="shorten the prompt or context, or use a model with a larger context window",
        ))
    elif status is not None:
        failure = _from_status(status, message, error_code(exc), model=model, provider=provider, key_env=key_env,
                               where=where, retry_after=retry_after)
    elif "APIResponseValidationError" in names or "OpenAIError" in names or "APIError" in names:
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
    if should_retry == "false" and failure.retryable:
        failure = Failure(error=failure.error, retryable=False, retry_after=failure.retry_after)
    elif should_retry == "true" and not failure.retryable and not failure.error.permanent:
        failure = Failure(error=failure.error, retryable=True, retry_after=failure.retry_after)
    return failure


def _unquote(text: str) -> str:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return value if isinstance(value, str) else text


def _from_status(status: int, message: str, code: str, *, model: str, provider: str, key_env: str, where: str,
                 retry_after: float | None) -> Failure:
    if status == 400 and "LLM Provider NOT provided" in message:
        return Failure(error=BackendError(
            f"litellm cannot tell which provider serves model {model!r}",
            fix='prefix the model with its provider ("openai/...", "anthropic/...", "ollama/..."), or set '
                "[plugins.backend-litellm] custom_llm_provider",
        ))
    return from_status(status, message, code, model=model, provider=provider, key_env=key_env, where=where,
                       retry_after=retry_after)
