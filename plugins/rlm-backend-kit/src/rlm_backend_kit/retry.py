"""Retries for LLM backends: exponential backoff and jitter, honouring ``Retry-After``.

The SDKs' own retries are switched off (``max_retries=0``) so that this is
the only retry policy: the same for every backend, and testable.  A failed
attempt is described by a :class:`Failure` (the rlm error to raise, whether
trying again can help, how long the provider asked us to wait); the backend
decides that, this module only decides when to try again.

The wait before retry ``n`` (0-based) is the provider's ``Retry-After`` when
it gave one (up to ``max_retry_after`` seconds; a longer wait is not
attempted), otherwise ``min(max_delay, base_delay * 2**n)`` with "equal
jitter": half of it fixed, half random, so that clients spread out.  With a
``deadline`` (the time the caller stops waiting, e.g. the run's), no retry
is started whose wait would end after it: the provider's error is raised
instead of the caller's timeout.

A failure the backend finds itself in an answer that arrived (a stream cut
before its end marker, an answer with no content) is raised inside the
attempt as a :class:`Fault`, and retried like the SDK's exceptions.

:func:`read_timeout` is the one per-request timeout of a backend: how long
an attempt waits for the provider's next bytes (a hung server is abandoned
after it and retried), the same for every request of the backend (litellm
caches its HTTP clients by timeout).  A request's own timeout bounds the
whole call, retries included: :func:`by_deadline` and
:func:`stream_by_deadline`.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

from attrs import define, field
from rlm.backend import DEFAULT_READ_TIMEOUT, BackendSettings
from rlm.errors import BackendError
from rlm.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")


@define(frozen=True, kw_only=True)
class Failure:
    """One failed attempt: the error to raise if we give up, and whether to try again."""

    error: BackendError
    retryable: bool = False
    retry_after: float | None = None


class Fault(Exception):
    """A provider failure a backend found itself (not an SDK exception): raised inside an attempt,
    it is given up or retried as its :class:`Failure` says."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(str(failure.error))
        self.failure = failure


@define(frozen=True, kw_only=True)
class RetryPolicy:
    """When to try a failed call again.  ``max_retries`` counts retries, not attempts."""

    max_retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 60.0
    jitter: Callable[[], float] = field(default=random.random, repr=False, eq=False)

    def delay(self, retry: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retry number ``retry`` (0-based); None: do not retry."""
        if retry >= self.max_retries:
            return None
        if retry_after is not None and retry_after >= 0:
            if retry_after > self.max_retry_after:
                return None
            return retry_after
        backoff = min(self.max_delay, self.base_delay * (2**retry))
        return backoff / 2 + self.jitter() * backoff / 2


def parse_retry_after(headers: Mapping[str, str] | Any | None) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), or None."""
    if headers is None:
        return None
    try:
        raw_ms = headers.get("retry-after-ms")
        if raw_ms is not None:
            return max(0.0, float(raw_ms) / 1000.0)
    except (TypeError, ValueError):
        pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except (TypeError, ValueError):
        pass
    try:
        when = email.utils.parsedate_to_datetime(str(raw))
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def read_timeout(settings: BackendSettings, option: float | None = None, *,
                 section: str | None = None) -> tuple[float, str]:
    """``(seconds, what sets it)``: how long one attempt of a backend waits for the provider's next bytes.

    The plugin's own ``read_timeout`` option (``option``, from
    ``[plugins.<section>]``) when set, else ``settings.read_timeout``, else
    :data:`rlm.backend.DEFAULT_READ_TIMEOUT`; never more than
    ``settings.timeout`` (the run's).  The second item names the setting to
    raise, for the fix of a timeout error.
    """
    chosen = next((t for t in (option, settings.read_timeout) if t is not None), DEFAULT_READ_TIMEOUT)
    if settings.timeout and settings.timeout <= chosen:
        return float(settings.timeout), "the run's timeout (--timeout)"
    return float(chosen), f"[plugins.{section}] read_timeout" if section else "read_timeout"


def give_up(failure: Failure, attempts: int) -> BackendError:
    """The error to raise after ``attempts`` attempts, saying so when there were retries."""
    error = failure.error
    if attempts > 1 and failure.retryable:
        again = type(error)(f"{error.message} (gave up after {attempts} attempts)", fix=error.fix)
        again.permanent = error.permanent
        return again
    return error


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    classify: Callable[[BaseException], Failure | None],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    provider: str = "provider",
    deadline: float | None = None,
) -> T:
    """``await attempt()``, retried by ``policy`` while ``classify`` says the failure is transient.

    ``classify`` turns an exception into a :class:`Failure`, or None for
    exceptions that are not the provider's (they propagate untouched); a
    :class:`Fault` carries its own.  The final error is raised with the last
    provider exception as ``__cause__``.  ``deadline`` (``time.monotonic()``
    seconds): no retry whose wait ends after it.
    """
    retry = 0
    while True:
        try:
            return await attempt()
        except BackendError:
            raise
        except Exception as exc:
            failure = _failure_of(exc, classify)
            if failure is None:
                raise
            wait = _wait(policy, retry, failure, deadline)
            if wait is None:
                raise give_up(failure, retry + 1) from exc
            log.info(
                "retrying",
                provider=provider,
                attempt=retry + 1,
                delay=round(wait, 3),
                error=type(failure.error).__name__,
            )
            await sleep(wait)
            retry += 1


async def stream_with_retries(
    open_stream: Callable[[], AsyncIterator[T]],
    classify: Callable[[BaseException], Failure | None],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    provider: str = "provider",
    deadline: float | None = None,
) -> AsyncIterator[T]:
    """Iterate a fresh ``open_stream()`` per attempt, retried as :func:`call_with_retries` does,
    but only while nothing has been yielded: once an event went out, a failure is final."""
    retry = 0
    while True:
        yielded = False
        try:
            async for event in open_stream():
                yielded = True
                yield event
            return
        except BackendError:
            raise
        except Exception as exc:
            failure = _failure_of(exc, classify)
            if failure is None:
                raise
            wait = _wait(policy, retry, failure, deadline) if not yielded else None
            if wait is None:
                raise give_up(failure, retry + 1) from exc
            log.info("retrying", provider=provider, attempt=retry + 1, delay=round(wait, 3), stream=True)
            await sleep(wait)
            retry += 1


def _failure_of(exc: Exception, classify: Callable[[BaseException], Failure | None]) -> Failure | None:
    return exc.failure if isinstance(exc, Fault) else classify(exc)


def _wait(policy: RetryPolicy, retry: int, failure: Failure, deadline: float | None) -> float | None:
    """Seconds before the next attempt, or None: not retryable, out of retries, or past the deadline."""
    if not failure.retryable:
        return None
    wait = policy.delay(retry, failure.retry_after)
    if wait is not None and deadline is not None and time.monotonic() + wait >= deadline:
        log.info("not_retrying", reason="the wait would end after the deadline", delay=round(wait, 3))
        return None
    return wait


#: Seconds past a request's deadline before the backend abandons the call itself: a caller that holds the
#: same deadline (the orchestrator's ``wait_for`` on the run's remaining time) acts first, always.
DEADLINE_GRACE = 0.25


async def by_deadline(call: Awaitable[T], deadline: float | None, error: Callable[[], BackendError], *,
                      grace: float = DEADLINE_GRACE) -> T:
    """``await call``, abandoned ``grace`` seconds after ``deadline`` (``time.monotonic()``) with ``error()``."""
    if deadline is None:
        return await call
    try:
        async with asyncio.timeout(max(0.001, deadline + grace - time.monotonic())) as scope:
            return await call
    except TimeoutError:
        if scope.expired():
            raise error() from None
        raise


async def stream_by_deadline(events: AsyncIterator[T], deadline: float | None,
                             error: Callable[[], BackendError], *, grace: float = DEADLINE_GRACE) -> AsyncIterator[T]:
    """The events of ``events``; waiting for one ``grace`` seconds past ``deadline`` raises ``error()``
    (the stream is closed)."""
    iterator = aiter(events)
    try:
        while True:
            if deadline is None:
                try:
                    event = await anext(iterator)
                except StopAsyncIteration:
                    return
            else:
                try:
                    async with asyncio.timeout(max(0.001, deadline + grace - time.monotonic())) as scope:
                        event = await anext(iterator)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    if scope.expired():
                        raise error() from None
                    raise
            yield event
    finally:
        closer = getattr(iterator, "aclose", None)
        if closer is not None:
            await closer()
