"""Faults a backend finds itself (rlm_backend_kit.retry.Fault), the deadline of a call, and the one read timeout."""

from __future__ import annotations

import asyncio
import time

import pytest
from rlm.backend import DEFAULT_READ_TIMEOUT, BackendSettings
from rlm.errors import ProviderUnavailableError
from rlm_backend_kit.retry import (
    Failure,
    Fault,
    RetryPolicy,
    by_deadline,
    call_with_retries,
    read_timeout,
    stream_by_deadline,
    stream_with_retries,
)

NO_WAIT = RetryPolicy(max_retries=3, base_delay=0.0, max_delay=0.0)


def transient(message: str = "cut short") -> Failure:
    return Failure(error=ProviderUnavailableError(message, fix="try again"), retryable=True)


def never(exc: BaseException) -> Failure | None:
    raise AssertionError(f"classify() was called for a Fault: {exc!r}")


def test_a_fault_is_retried_without_classify_then_given_up():
    calls: list[int] = []

    async def attempt():
        calls.append(1)
        raise Fault(transient())

    with pytest.raises(ProviderUnavailableError, match=r"cut short \(gave up after 4 attempts\): try again"):
        asyncio.run(call_with_retries(attempt, never, NO_WAIT))
    assert len(calls) == 4


def test_a_fault_that_is_not_retryable_ends_the_call_at_once():
    calls: list[int] = []

    async def attempt():
        calls.append(1)
        raise Fault(Failure(error=ProviderUnavailableError("an HTML page", fix="check api_base")))

    with pytest.raises(ProviderUnavailableError, match="^an HTML page: check api_base$"):
        asyncio.run(call_with_retries(attempt, never, NO_WAIT))
    assert len(calls) == 1


def test_a_stream_fault_before_any_event_is_retried():
    attempts: list[int] = []

    def open_stream():
        attempts.append(1)

        async def events():
            if len(attempts) == 1:
                raise Fault(transient("ended before its end marker"))
            yield "whole"

        return events()

    async def collect():
        return [e async for e in stream_with_retries(open_stream, never, NO_WAIT)]

    assert asyncio.run(collect()) == ["whole"]
    assert len(attempts) == 2


def test_a_stream_fault_after_an_event_is_final():
    attempts: list[int] = []

    def open_stream():
        attempts.append(1)

        async def events():
            yield "half"
            raise Fault(transient("ended before its end marker"))

        return events()

    seen: list[str] = []

    async def collect():
        async for event in stream_with_retries(open_stream, never, NO_WAIT):
            seen.append(event)

    with pytest.raises(ProviderUnavailableError, match="^ended before its end marker: try again$"):
        asyncio.run(collect())
    assert seen == ["half"] and len(attempts) == 1


def test_no_retry_starts_whose_wait_ends_after_the_deadline():
    calls: list[int] = []
    slow = RetryPolicy(max_retries=5, base_delay=10.0, max_delay=10.0, jitter=lambda: 0.0)

    async def attempt():
        calls.append(1)
        raise OSError("refused")

    started = time.monotonic()
    with pytest.raises(ProviderUnavailableError, match="cannot connect"):
        asyncio.run(call_with_retries(attempt, lambda exc: transient("cannot connect"), slow,
                                      deadline=time.monotonic() + 2.0))
    assert len(calls) == 1, "a 5 s backoff does not fit before a deadline 2 s away"
    assert time.monotonic() - started < 1.0


def test_retries_that_fit_before_the_deadline_happen():
    calls: list[int] = []

    async def attempt():
        calls.append(1)
        if len(calls) < 3:
            raise OSError("refused")
        return "ok"

    result = asyncio.run(call_with_retries(attempt, lambda exc: transient(), NO_WAIT,
                                           deadline=time.monotonic() + 30.0))
    assert result == "ok" and len(calls) == 3


def test_a_caller_holding_the_same_deadline_acts_first():
    """The orchestrator waits for a call with the run's remaining time; the backend's own deadline is the
    same moment: its error must never win over the caller's timeout."""

    async def hang():
        await asyncio.sleep(30)

    async def caller():
        deadline = time.monotonic() + 0.2
        return await asyncio.wait_for(
            by_deadline(hang(), deadline, lambda: ProviderUnavailableError("the backend's own")), timeout=0.2)

    for _ in range(5):
        with pytest.raises(TimeoutError):
            asyncio.run(caller())


def test_by_deadline_abandons_the_call_with_the_given_error():
    async def hang():
        await asyncio.sleep(30)

    started = time.monotonic()
    with pytest.raises(ProviderUnavailableError, match="too late"):
        asyncio.run(by_deadline(hang(), time.monotonic() + 0.2,
                                lambda: ProviderUnavailableError("too late", fix="raise the timeout")))
    assert time.monotonic() - started < 2.0


def test_by_deadline_lets_other_timeouts_through():
    async def inner_timeout():
        raise TimeoutError("the call's own")

    with pytest.raises(TimeoutError, match="the call's own"):
        asyncio.run(by_deadline(inner_timeout(), time.monotonic() + 30,
                                lambda: ProviderUnavailableError("too late")))
    assert asyncio.run(by_deadline(asyncio.sleep(0, "done"), None, lambda: ProviderUnavailableError("x"))) == "done"


def test_stream_by_deadline_stops_a_stalled_stream_and_closes_it():
    closed: list[bool] = []

    async def stalls():
        try:
            yield "first"
            await asyncio.sleep(30)
            yield "never"
        finally:
            closed.append(True)

    seen: list[str] = []

    async def collect():
        async for event in stream_by_deadline(stalls(), time.monotonic() + 0.3,
                                              lambda: ProviderUnavailableError("too late")):
            seen.append(event)

    started = time.monotonic()
    with pytest.raises(ProviderUnavailableError, match="too late"):
        asyncio.run(collect())
    assert seen == ["first"] and closed == [True]
    assert time.monotonic() - started < 2.0


def test_stream_by_deadline_without_a_deadline_passes_everything():
    async def events():
        for n in range(3):
            yield n

    async def collect():
        return [e async for e in stream_by_deadline(events(), None, lambda: ProviderUnavailableError("x"))]

    assert asyncio.run(collect()) == [0, 1, 2]


@pytest.mark.parametrize(
    ("option", "setting", "timeout", "expected"),
    [
        (None, None, 300.0, (DEFAULT_READ_TIMEOUT, "[plugins.backend-x] read_timeout")),
        (None, 30.0, 300.0, (30.0, "[plugins.backend-x] read_timeout")),
        (5.0, 30.0, 300.0, (5.0, "[plugins.backend-x] read_timeout")),
        (None, None, 8.0, (8.0, "the run's timeout (--timeout)")),
        (50.0, None, 8.0, (8.0, "the run's timeout (--timeout)")),
    ],
)
def test_read_timeout(option, setting, timeout, expected):
    settings = BackendSettings(timeout=timeout, read_timeout=setting)
    assert read_timeout(settings, option, section="backend-x") == expected


def test_read_timeout_is_one_value_whatever_the_requests():
    settings = BackendSettings(timeout=300.0)
    assert {read_timeout(settings) for _ in range(3)} == {(DEFAULT_READ_TIMEOUT, "read_timeout")}
