"""Retries for LLM backends: exponential backoff and jitter, honouring ``Retry-After``.

The SDKs' own retries are switched off (``max_retries=0``) so that this is
the only retry policy: the same for every backend, and testable.  A failed
attempt is described by a :class:`Failure` (the rlm error to raise, whether
trying again can help, how long the provider asked us to wait); the backend
decides that, this module only decides when to try again.

The wait before retry ``n`` (0-based) is the provider's ``Retry-After`` when
it gave one (up to ``max_retry_after`` seconds; a longer wait is not
attempted), otherwise ``min(max_delay, base_delay * 2**n)`` with "equal
jitter": half of it fixed, half random, so that clients spread out.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

from attrs import define, field
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
) -> T:
    """``await attempt()``, retried by ``policy`` while ``classify`` says the failure is transient.

    ``classify`` turns an exception into a :class:`Failure`, or None for
    exceptions that are not the provider's (they propagate untouched).  The
    final error is raised with the last provider exception as ``__cause__``.
    """
    retry = 0
    while True:
        try:
            return await attempt()
        except BackendError:
            raise
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            wait = policy.delay(retry, failure.retry_after) if failure.retryable else None
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
            failure = classify(exc)
            if failure is None:
                raise
            wait = policy.delay(retry, failure.retry_after) if failure.retryable and not yielded else None
            if wait is None:
                raise give_up(failure, retry + 1) from exc
            log.info("retrying", provider=provider, attempt=retry + 1, delay=round(wait, 3), stream=True)
            await sleep(wait)
            retry += 1
