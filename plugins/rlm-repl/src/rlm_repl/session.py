"""The host side of one environment session: :class:`GuestSession`, the base of local, docker and wasm.

Every environment runs the shared guest REPL server (:mod:`rlm_repl.repl_server`)
in its own sandbox -- a jailed worker process, a container, a WebAssembly
instance -- and drives it with :class:`rlm_repl.client.GuestClient`.  What is
the same for all three lives here, once:

* one lock per session (one request at a time, from whichever event loop calls);
* lazy start, :meth:`~GuestSession.start`, :meth:`~GuestSession.reset`,
  :meth:`~GuestSession.close`;
* the deadline: ``timeout`` (``settings.timeout`` unless given) bounds a whole
  execution, the time its ``llm_query`` callbacks wait for the host included;
  past it the sandbox is interrupted where it can be (state kept) or stopped
  and replaced (state lost, the result says so);
* error mapping: a timeout, a dead sandbox, a fault or a protocol violation
  ends :meth:`~GuestSession.execute` with a result whose ``error`` says what
  happened (never an exception), and the other calls with a
  :class:`rlm.errors.SandboxError` naming cause and fix;
* state loss is announced: when the sandbox ended between two calls or a call
  was cancelled mid-way, the next result's ``notice`` says the variables are gone;
* the write quota on ``writable_paths`` (:mod:`rlm_repl.quota`): checked and
  enforced after every execution, its remainder the next cell's file size limit;
* the context helpers (``get_context``, ``get_variable``, ``set_context``,
  ``clear_context``) with their argument checks.

A subclass says how its sandbox starts, dies and is stopped (:meth:`_launch`,
:meth:`_alive`, :meth:`_stop`, :meth:`_stop_now`, :meth:`_death_reason`) and may
add an interrupt (:meth:`_interrupt`) or wrap one execution (:meth:`_run`).
"""

from __future__ import annotations

import asyncio
import json
import keyword
import time
from typing import Any

import attrs
from rlm.environment import EnvironmentSettings, HostCallbacks
from rlm.errors import SandboxError
from rlm.logging import get_logger
from rlm.types import REPLResult

from rlm_repl.client import (
    GuestClient,
    GuestClosed,
    GuestFault,
    GuestTimeout,
    Interrupt,
    timeout_message,
)
from rlm_repl.replies import SESSION_LOST, ProtocolError, context_reply, variable_reply

log = get_logger(__name__)


class Sandbox:
    """One running sandbox of a session: whatever the environment keeps, plus its client."""

    client: GuestClient


class GuestSession:
    """Base class of the environments that drive a guest REPL server (see the module docstring)."""

    name = "guest"
    #: What the sandbox is called in messages ("worker", "sandbox container", "wasm instance").
    noun = "sandbox"
    #: The fix of an error that can only be our bug.
    bug_fix = "report this as a bug of rlm"

    def __init__(self, *, settings: EnvironmentSettings | None = None,
                 callbacks: HostCallbacks | None = None) -> None:
        self.settings = settings if settings is not None else EnvironmentSettings()
        self.callbacks = callbacks
        self._sandbox: Any = None
        #: Said with the next result: the sandbox ended between calls, or a call was cancelled.
        self._lost_notice: str | None = None
        self._closed = False
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._quota: Any = None

    # --- what a subclass provides ---------------------------------------------------------------

    async def _launch(self) -> Any:
        """Start a sandbox and its guest (handshake done); the :class:`Sandbox`. SandboxError on failure."""
        raise NotImplementedError

    def _alive(self, sandbox: Any) -> bool:
        raise NotImplementedError

    async def _stop(self, sandbox: Any, reason: str) -> None:
        """Kill and release ``sandbox``."""
        raise NotImplementedError

    def _stop_now(self, sandbox: Any, reason: str) -> None:
        """Kill ``sandbox`` without awaiting (a cancelled call)."""
        raise NotImplementedError

    async def _death_reason(self, sandbox: Any) -> str:
        """Why ``sandbox`` ended, in words (``it ran out of memory (limit 256 MiB)``)."""
        return "it ended"

    def _interrupt(self, sandbox: Any) -> Interrupt | None:
        """How to interrupt a running execution without losing the session (None: stop it)."""
        return None

    def _cpu_limit_s(self, timeout: float) -> float | None:
        """The CPU seconds one request may use, sent to the guest (None: not sent)."""
        return self.settings.cpu_limit_s

    def _grace(self) -> float:
        """Seconds an interrupted execution has to answer before the sandbox is stopped."""
        return 2.0

    async def _run(self, sandbox: Any, code: str, timeout: float, fields: dict[str, Any]) -> REPLResult:
        """One execution in ``sandbox``; subclasses may wrap it (watchdogs, host-side measurements)."""
        return await sandbox.client.execute(code, timeout=timeout, interrupt=self._interrupt(sandbox),
                                            grace=self._grace(), output_limit=self.settings.output_limit,
                                            **fields)

    # --- lifecycle ----------------------------------------------------------------------------

    def _get_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def start(self) -> None:
        async with self._get_lock():
            await self._ensure_started()

    async def _ensure_started(self) -> Any:
        if self._closed:
            raise SandboxError(f"this {self.name} environment was closed", fix="create a new environment")
        sandbox = self._sandbox
        if sandbox is not None and self._alive(sandbox):
            return sandbox
        if sandbox is not None:  # it ended between two calls: whoever calls next must know
            reason = await self._death_reason(sandbox)
            self._sandbox = None
            await self._stop(sandbox, "dead")
            self._lost_notice = f"the {self.noun} ended since the last call ({reason}); {SESSION_LOST}"
            log.info("session_lost_between_calls", environment=self.name, reason=reason)
        # launched first: a sandbox that cannot start fails before this call's first await
        sandbox = await self._launch()
        if self._quota is None:  # before any code runs: what is under writable_paths now is the baseline
            try:
                self._quota = await asyncio.to_thread(self._new_quota)
            except BaseException:
                self._stop_now(sandbox, "start failed")
                raise
        if self._closed:  # closed while it started: it must not outlive the session
            await self._stop(sandbox, "closed during start")
            raise SandboxError(f"this {self.name} environment was closed", fix="create a new environment")
        self._sandbox = sandbox
        return sandbox

    def _new_quota(self) -> Any:
        from rlm_repl.quota import WriteQuota

        quota = WriteQuota.from_settings(self.settings)
        quota.baseline()
        return quota

    async def _restart(self, sandbox: Any, reason: str) -> None:
        """Replace ``sandbox`` with a fresh one (a failed start is raised by the next call)."""
        log.info("session_restart", environment=self.name, reason=reason)
        if self._sandbox is sandbox:
            self._sandbox = None
        await self._stop(sandbox, reason)
        try:
            await self._ensure_started()
        except SandboxError as exc:
            log.warning("session_restart_failed", environment=self.name, error=str(exc))

    def _cancelled(self, sandbox: Any) -> None:
        if self._sandbox is sandbox:
            self._sandbox = None
        self._stop_now(sandbox, "cancelled")
        self._lost_notice = f"a call was cancelled while the {self.noun} was busy; {SESSION_LOST}"

    async def reset(self) -> None:
        async with self._get_lock():
            sandbox, self._sandbox = self._sandbox, None
            if sandbox is not None:
                await self._stop(sandbox, "reset")
            self._lost_notice = None  # the caller asked for a fresh session
            self._quota = None  # a fresh session: what is there now is its baseline
            await self._ensure_started()

    async def close(self) -> None:
        self._closed = True
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            await self._stop(sandbox, "close")

    # --- executions ---------------------------------------------------------------------------

    async def execute(self, code: str, *, timeout: float | None = None) -> REPLResult:
        if not isinstance(code, str):
            raise TypeError("execute(code): code must be a str")
        timeout = self.settings.timeout if timeout is None else float(timeout)
        async with self._get_lock():
            sandbox = await self._ensure_started()
            notice, self._lost_notice = self._lost_notice, None
            result = await self._execute_in(sandbox, code, timeout)
            result = await self._enforce_quota(result)
        notice = "; ".join(n for n in (notice, result.notice) if n) or None
        return attrs.evolve(result, notice=notice) if notice != result.notice else result

    async def _execute_in(self, sandbox: Any, code: str, timeout: float) -> REPLResult:
        started = time.perf_counter()

        def elapsed() -> float:
            return round((time.perf_counter() - started) * 1000, 3)

        fields: dict[str, Any] = {}
        cpu = self._cpu_limit_s(timeout)
        if cpu:
            fields["cpu_limit_s"] = cpu
        size = await self._file_size_limit()
        if size is not None:
            fields["file_size_limit"] = size
        try:
            return await self._run(sandbox, code, timeout, fields)
        except GuestTimeout as exc:
            if exc.recovered and exc.result is not None:
                log.info("execution_interrupted", environment=self.name, timeout=timeout)
                return exc.result
            log.info("execution_timeout", environment=self.name, timeout=timeout)
            ms = elapsed()
            await self._restart(sandbox, "timeout")
            return REPLResult(error=timeout_message(timeout, state_kept=False), execution_time_ms=ms)
        except GuestClosed:
            reason = await self._death_reason(sandbox)
            log.info("sandbox_died", environment=self.name, reason=reason)
            ms = elapsed()
            await self._restart(sandbox, "died")
            return REPLResult(error=f"SandboxError: the {self.noun} stopped during the execution ({reason}); "
                                    f"{SESSION_LOST}.", execution_time_ms=ms)
        except GuestFault as exc:
            log.warning("guest_fault", environment=self.name, fault=str(exc)[:500])
            return REPLResult(error=f"SandboxError: the REPL failed internally ({self.bug_fix}): {str(exc)[:2000]}",
                              execution_time_ms=elapsed())
        except ProtocolError as exc:
            # whatever the guest sent, it ends in a result that says so, never an exception
            log.warning("guest_protocol_error", environment=self.name, op="exec", error=str(exc))
            ms = elapsed()
            await self._restart(sandbox, "protocol error")
            return REPLResult(error=f"SandboxError: the {self.noun} broke the protocol ({exc}) and was stopped; "
                                    f"{SESSION_LOST}.", execution_time_ms=ms)
        except BaseException:
            self._cancelled(sandbox)
            raise

    # --- the write quota ------------------------------------------------------------------------

    async def _file_size_limit(self) -> int | None:
        """The next cell's largest file (``RLIMIT_FSIZE``): what is left of the write quota."""
        if self._quota is None or not self.settings.writable_paths:
            return None
        from rlm_repl.quota import file_size_limit

        return await asyncio.to_thread(file_size_limit, self._quota, None)

    async def _enforce_quota(self, result: REPLResult) -> REPLResult:
        if self._quota is None or not self.settings.writable_paths:
            return result
        message = await asyncio.to_thread(self._quota.enforce)
        if not message:
            return result
        log.info("write_quota_exceeded", environment=self.name, message=message[:300])
        error = f"{result.error}\n{message}" if result.error else message
        return attrs.evolve(result, error=error)

    # --- other requests -----------------------------------------------------------------------

    async def _call(self, op: str, fields: dict[str, Any] | None = None, *, read: Any = None) -> Any:
        """One non-exec request, its reply checked by ``read(reply)``; timeouts, deaths and protocol
        violations become SandboxError (after a restart)."""
        timeout = self.settings.timeout
        async with self._get_lock():
            sandbox = await self._ensure_started()
            request = dict(fields or {})
            cpu = self._cpu_limit_s(timeout)
            if cpu:
                request["cpu_limit_s"] = cpu
            try:
                reply = await sandbox.client.request(op, request, timeout=timeout)
                return read(reply) if read is not None else reply  # KeyError (no such variable) passes
            except KeyError:
                raise
            except ProtocolError as exc:
                log.warning("guest_protocol_error", environment=self.name, op=op, error=str(exc))
                await self._restart(sandbox, "protocol error")
                raise SandboxError(f"the {self.noun} broke the protocol during {op}: {exc}; {SESSION_LOST}",
                                   fix=self.bug_fix) from None
            except GuestTimeout:
                await self._restart(sandbox, "timeout")
                raise SandboxError(f"the REPL did not answer {op} within {timeout:g}s (a __repr__ that never "
                                   f"returns?); {SESSION_LOST}", fix="avoid slow __repr__ methods") from None
            except GuestClosed:
                reason = await self._death_reason(sandbox)
                await self._restart(sandbox, "died")
                raise SandboxError(f"the {self.noun} stopped during {op} ({reason}); {SESSION_LOST}",
                                   fix="check the memory limit and the size of the values exchanged") from None
            except GuestFault as exc:
                raise SandboxError(f"the REPL could not serve {op}: {str(exc)[:2000]}", fix=self.bug_fix) from None
            except BaseException:
                self._cancelled(sandbox)
                raise

    async def get_context(self) -> dict[str, str]:
        return await self._call("context", read=context_reply)

    async def get_variable(self, name: str) -> Any:
        return await self._call("get", {"name": name}, read=lambda reply: variable_reply(name, reply))

    async def set_context(self, name: str, value: Any) -> None:
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) \
                or name.startswith("_"):
            raise ValueError(f"set_context: {name!r} is not a valid variable name (identifiers not starting "
                             "with '_')")
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"set_context({name!r}): the value must be JSON-serialisable ({exc})") from None
        await self._call("set", {"name": name, "value": value})

    async def clear_context(self) -> None:
        await self._call("clear")
