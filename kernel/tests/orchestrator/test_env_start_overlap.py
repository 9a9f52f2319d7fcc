"""The environment starts while the first model call runs (both protocols), and what that changes nothing of:
a start that fails still ends a repl-protocol run with the sandbox's error, a tools-protocol run that never
runs code does not fail because of it, and every started environment is closed, whatever ends the run.

The order is shown with events, never with times: the fake environment's start waits until the fake
model has been called (so it can only finish when the two overlap).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rlm.errors import SandboxError

from .conftest import FakeEnvironment, call, run

CODE = "```repl\nFINAL(str(6 * 7))\n```"


class Gate:
    """``model_called`` is set by the fake model's first request; ``start`` (patched onto the fake
    environment) waits for it, then succeeds, fails or hangs as told."""

    def __init__(self, *, fail: bool = False, hang: bool = False, fail_at_once: bool = False) -> None:
        self.fail, self.hang, self.fail_at_once = fail, hang, fail_at_once
        self.model_called: asyncio.Event | None = None
        self.overlapped: bool | None = None
        self.start_cancelled = False

    def event(self) -> asyncio.Event:
        if self.model_called is None:
            self.model_called = asyncio.Event()
        return self.model_called

    def script(self, reply: Any):
        def answer(request: Any) -> Any:
            self.event().set()
            return reply(request) if callable(reply) else reply
        return answer

    async def start(self, env: FakeEnvironment) -> None:
        if self.fail_at_once:
            raise SandboxError("the test sandbox cannot start", fix="nothing to fix: a test")
        waiting = asyncio.ensure_future(self.event().wait())
        try:  # (not wait_for: in Python 3.11 it can swallow a cancellation that comes as it ends)
            await asyncio.wait((waiting,), timeout=5)
            self.overlapped = waiting.done()
        except asyncio.CancelledError:
            self.start_cancelled = True
            raise
        finally:
            waiting.cancel()
        try:
            if self.hang:
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.start_cancelled = True
            raise
        if self.fail:
            raise SandboxError("the test sandbox cannot start", fix="nothing to fix: a test")
        env.started = True


@pytest.fixture
def gate(monkeypatch):
    def make(**kwargs: Any) -> Gate:
        g = Gate(**kwargs)

        async def start(env: FakeEnvironment) -> None:
            await g.start(env)

        monkeypatch.setattr(FakeEnvironment, "start", start)
        return g

    return make


def test_repl_protocol_the_first_model_call_overlaps_the_start(make_rlm, gate):
    g = gate()
    rlm, backend = make_rlm(g.script(CODE), protocol="repl", direct_below_tokens=0)
    result = run(rlm.completion("six times seven"))
    assert result.success and result.response == "42"
    assert g.overlapped is True
    env = FakeEnvironment.instances[-1]
    assert env.namespace["context"] == "six times seven"  # the context was bound by the start
    assert env.closed


def test_tools_protocol_execute_code_starts_while_the_model_thinks(make_rlm, gate):
    g = gate()
    rlm, backend = make_rlm(g.script([call("execute_code", code="FINAL(str(6 * 7))")]), protocol="tools")
    result = run(rlm.completion("six times seven"))
    assert result.success and result.response == "42"
    assert g.overlapped is True
    assert FakeEnvironment.instances[-1].closed


def test_repl_protocol_a_start_that_fails_at_once_sends_no_model_call(make_rlm, gate):
    g = gate(fail_at_once=True)
    rlm, backend = make_rlm(g.script(CODE), protocol="repl", direct_below_tokens=0)
    result = run(rlm.completion("six times seven"))
    assert result.error_type == "SandboxError" and result.response == ""
    assert backend.requests == [] and result.total_calls == 0
    assert all(env.closed for env in FakeEnvironment.instances)


def test_repl_protocol_a_start_that_fails_later_still_ends_the_run(make_rlm, gate):
    """The model's reply (code) came first: the run still ends with the sandbox's error, as it did when
    the sandbox started before the first call."""
    g = gate(fail=True)
    rlm, backend = make_rlm(g.script(CODE), protocol="repl", direct_below_tokens=0)
    result = run(rlm.completion("six times seven"))
    assert result.error_type == "SandboxError" and "cannot start" in (result.error or "")
    assert g.overlapped is True
    assert all(not env.executed for env in FakeEnvironment.instances)
    assert all(env.closed for env in FakeEnvironment.instances)


def test_repl_protocol_a_start_that_fails_even_when_the_model_answers_in_words(make_rlm, gate):
    g = gate(fail=True)
    rlm, backend = make_rlm(g.script("FINAL(42)"), protocol="repl", direct_below_tokens=0)
    result = run(rlm.completion("six times seven"))
    assert result.error_type == "SandboxError"


def test_tools_protocol_a_failed_start_nobody_used_does_not_fail_the_run(make_rlm, gate):
    g = gate(fail=True)
    rlm, backend = make_rlm(g.script("42"), protocol="tools")
    result = run(rlm.completion("six times seven"))
    assert result.success and result.response == "42" and result.error is None
    assert all(env.closed for env in FakeEnvironment.instances)


def test_tools_protocol_a_failed_start_is_raised_when_code_runs(make_rlm, gate):
    g = gate(fail=True)
    rlm, backend = make_rlm(g.script([call("execute_code", code="print(1)")]), protocol="tools")
    result = run(rlm.completion("six times seven"))
    assert result.error_type == "SandboxError"
    assert len(backend.requests) == 1


def test_a_run_that_ends_before_the_start_closes_it(make_rlm, gate):
    """The model answers without code while the sandbox is still starting: the start is stopped and
    the environment closed (no worker or container outlives the run)."""
    g = gate(hang=True)
    rlm, backend = make_rlm(g.script("42"), protocol="tools")
    result = run(rlm.completion("six times seven"))
    assert result.success and result.response == "42"
    assert g.start_cancelled
    assert FakeEnvironment.instances and all(env.closed for env in FakeEnvironment.instances)


def test_a_cancelled_run_closes_the_starting_environment(make_rlm, gate):
    g = gate(hang=True)
    rlm, backend = make_rlm(g.script(CODE), protocol="repl", direct_below_tokens=0)

    async def body() -> None:
        task = asyncio.ensure_future(rlm.completion("six times seven"))
        while g.model_called is None or not g.model_called.is_set():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(body())
    assert g.start_cancelled
    assert FakeEnvironment.instances and all(env.closed for env in FakeEnvironment.instances)


def test_a_session_whose_start_was_cut_short_closes_it_and_starts_again(make_rlm, gate):
    g = gate(hang=True)
    rlm, backend = make_rlm(g.script("42"), protocol="tools")

    async def body() -> None:
        async with rlm.session() as session:
            first = await session.completion("six times seven")
            assert first.success and first.response == "42"
            assert session.environment is None  # the start was stopped: nothing kept half-started
            assert all(env.closed for env in FakeEnvironment.instances)
            g.hang = False
            backend.script = g.script([call("execute_code", code="FINAL(str(6 * 7))")])
            second = await session.completion("again")
            assert second.success and second.response == "42"
            assert session.environment is not None and not session.environment.closed
        assert session.environment is None

    run(body())
