"""The retry policy: backoff with jitter, Retry-After, giving up."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from rlm.errors import ProviderUnavailableError, RateLimitError
from rlm_backend_kit.retry import Failure, RetryPolicy, call_with_retries, give_up, parse_retry_after, stream_with_retries


def test_backoff_doubles_with_equal_jitter_and_is_capped():
    low = RetryPolicy(max_retries=10, base_delay=0.5, max_delay=3.0, jitter=lambda: 0.0)
    high = RetryPolicy(max_retries=10, base_delay=0.5, max_delay=3.0, jitter=lambda: 1.0)
    assert [low.delay(n) for n in range(5)] == [0.25, 0.5, 1.0, 1.5, 1.5]
    assert [high.delay(n) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_retry_after_is_honoured_and_retries_are_counted():
    policy = RetryPolicy(max_retries=2, base_delay=0.5, max_retry_after=60.0)
    assert policy.delay(0, retry_after=7.5) == 7.5
    assert policy.delay(1, retry_after=0.0) == 0.0
    assert policy.delay(2, retry_after=1.0) is None, "max_retries=2 allows two retries"
    assert policy.delay(0, retry_after=120.0) is None, "a wait longer than max_retry_after is not attempted"
    assert RetryPolicy(max_retries=0).delay(0) is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.2", "retry-after-ms": "200"}, 0.2),
        ({"retry-after": "soon"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_parse_retry_after(headers, expected):
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date():
    when = datetime.now(UTC) + timedelta(seconds=30)
    seconds = parse_retry_after({"retry-after": format_datetime(when, usegmt=True)})
    assert seconds is not None and 25 <= seconds <= 31


def test_call_with_retries_retries_transient_failures_then_gives_up():
    calls: list[int] = []
    waits: list[float] = []

    async def attempt():
        calls.append(1)
        raise OSError("boom")

    def classify(exc):
        return Failure(error=RateLimitError("rate limited", fix="wait"), retryable=True, retry_after=0.01)

    async def sleep(seconds):
        waits.append(seconds)

    with pytest.raises(RateLimitError) as info:
        asyncio.run(call_with_retries(attempt, classify, RetryPolicy(max_retries=3), sleep=sleep))
    assert len(calls) == 4 and waits == [0.01, 0.01, 0.01]
    assert "gave up after 4 attempts" in str(info.value)
    assert isinstance(info.value.__cause__, OSError), "the provider's exception is chained"


def test_call_with_retries_does_not_retry_permanent_failures_or_foreign_exceptions():
    async def attempt():
        raise OSError("bad key")

    permanent = Failure(error=ProviderUnavailableError("no", fix="x"), retryable=False)
    with pytest.raises(ProviderUnavailableError) as info:
        asyncio.run(call_with_retries(attempt, lambda exc: permanent, RetryPolicy(max_retries=3)))
    assert "gave up" not in str(info.value)
    with pytest.raises(OSError):
        asyncio.run(call_with_retries(attempt, lambda exc: None, RetryPolicy(max_retries=3)))


def test_give_up_keeps_class_fix_and_permanence():
    error = RateLimitError("quota", fix="pay")
    error.permanent = True
    again = give_up(Failure(error=error, retryable=True), 3)
    assert type(again) is RateLimitError and again.fix == "pay" and again.permanent
    assert str(again) == "quota (gave up after 3 attempts): pay"


def _stream_run(fail_after: list[int]):
    """Attempts that each yield ``n`` events then fail with a transient error (or finish when n < 0)."""
    attempts = iter(fail_after)
    waits: list[float] = []

    async def open_stream():
        n = next(attempts)
        for i in range(max(n, 0)):
            yield i
        if n >= 0:
            raise ConnectionError("cut")
        yield "done"

    async def sleep(seconds):
        waits.append(seconds)

    def classify(exc):
        return Failure(error=ProviderUnavailableError("down"), retryable=True)

    async def collect():
        policy = RetryPolicy(max_retries=3, base_delay=0.01, jitter=lambda: 0.0)
        return [e async for e in stream_with_retries(open_stream, classify, policy, sleep=sleep)]

    return collect, waits


def test_stream_is_retried_while_nothing_was_yielded():
    collect, waits = _stream_run([0, 0, -1])
    assert asyncio.run(collect()) == ["done"] and len(waits) == 2


def test_stream_failure_after_an_event_is_final():
    collect, waits = _stream_run([2, -1])
    with pytest.raises(ProviderUnavailableError):
        asyncio.run(collect())
    assert waits == []
