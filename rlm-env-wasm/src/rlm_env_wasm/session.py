""":class:`WasmEnvironment`: the "wasm" Environment, one WASI CPython instance per session.

The session loads the compiled interpreter (cached, see :mod:`rlm_env_wasm.cache`)
into its own Engine, starts a :class:`~rlm_env_wasm.instance.GuestInstance`
running the shared guest REPL (:mod:`rlm_repl.repl_server`), and drives it
with :class:`rlm_repl.client.GuestClient`.  Errors in user code come back in
``REPLResult.error``.  A timeout, ``cpu_limit_s`` (the guest thread's CPU
clock, polled), a trap (stack overflow, abort) or an output flood stops the
instance; the session restarts with a fresh one (state is lost, the result
says so).  CPU time in results is measured by the host: the guest's own
``time.process_time()`` is wrong under WASI.  ``SandboxError`` is raised only when the
environment itself cannot work (wasmtime or the runtime missing, a corrupt
runtime, a guest that cannot start).
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
from rlm_repl import server_source
from rlm_repl.client import (
    GuestClient,
    GuestClosed,
    GuestFault,
    GuestTimeout,
    timeout_message,
)
from rlm_repl.replies import SESSION_LOST, ProtocolError, context_reply, variable_reply
from rlm.logging import get_logger
from rlm.types import REPLResult

from rlm_env_wasm.cache import module_cache
from rlm_env_wasm.config import WasmEnvConfig
from rlm_env_wasm.engine import new_engine
from rlm_env_wasm.instance import GuestInstance
from rlm_env_wasm.mounts import preopens_for
from rlm_env_wasm.runtime import resolve

log = get_logger(__name__)


#: Guest environment variables: the server must not try os.dup (WASI has none).
GUEST_ENV = (("RLM_GUEST_NO_DUP", "1"),)


class WasmEnvironment:
    """A REPL session running CPython 3.12 compiled to WASI, under wasmtime."""

    name = "wasm"

    def __init__(self, *, settings: EnvironmentSettings | None = None,
                 callbacks: HostCallbacks | None = None) -> None:
        self.settings = settings if settings is not None else EnvironmentSettings()
        options = self.settings.options
        self.options = options if isinstance(options, WasmEnvConfig) else WasmEnvConfig()
        self.callbacks = callbacks
        self._engine: Any = None
        self._module: Any = None
        #: How the module was obtained: "cache" or "compiled" (None before the first start).
        self.module_source: str | None = None
        self._guest: GuestInstance | None = None
        #: Said with the next result: the instance ended between calls and a fresh one took its place.
        self._lost_notice: str | None = None
        self._client: GuestClient | None = None
        self._closed = False
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def _get_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def start(self) -> None:
        async with self._get_lock():
            await self._ensure_started()

    def _load_module(self) -> None:
        runtime = resolve(self.options.wasm_path, self.options.wasm_sha256)
        started = time.perf_counter()
        engine = new_engine()
        module, how = module_cache(runtime, self.options.cache_dir).load(engine)
        self._engine, self._module, self.module_source = engine, module, how
        log.info("wasm_module_loaded", source=how, ms=round((time.perf_counter() - started) * 1000, 1))

    async def _ensure_started(self) -> GuestClient:
        if self._closed:
            raise SandboxError("this wasm environment was closed", fix="create a new environment")
        if self._guest is not None and self._client is not None and self._guest.alive:
            return self._client
        if self._guest is not None:
            await self._discard("dead")
            self._lost_notice = f"the wasm instance had ended since the last call; {SESSION_LOST}"
        if self._module is None:
            await asyncio.to_thread(self._load_module)
        s = self.settings
        guest = GuestInstance(
            engine=self._engine, module=self._module,
            argv=["python", "-I", "-B", "-c", server_source()], env=GUEST_ENV,
            preopens=preopens_for(s, enabled=self.options.preopen_paths),
            memory_limit_bytes=int(s.memory_limit_mb) << 20,
            output_budget=int(self.options.max_message_mb) << 20,
        )
        guest.start()
        client = GuestClient(guest.output, guest.writer, callbacks=self.callbacks, name="wasm guest")
        guest.output.nonce = client.nonce.encode("ascii")
        try:
            await client.start(timeout=self.options.startup_timeout, output_limit=s.output_limit,
                               workdir=s.workdir)
        except (GuestTimeout, GuestClosed) as exc:
            reason = guest.describe_end() if not guest.alive else str(exc)
            tail = guest.stderr_tail.strip()
            await self._release(guest, "failed to start")
            raise SandboxError(f"the wasm interpreter did not start: {reason}"
                               + (f"; its stderr ends: {tail[-500:]}" if tail else ""),
                               fix="raise memory_limit_mb (at least 16) or [plugins.env-wasm] startup_timeout; "
                                   "run `rlm doctor`") from None
        except BaseException:
            await self._release(guest, "start cancelled")
            raise
        self._guest, self._client = guest, client
        return client

    async def _release(self, guest: GuestInstance, reason: str) -> None:
        guest.kill(reason)
        await asyncio.to_thread(guest.release)

    async def _discard(self, reason: str) -> None:
        guest, self._guest, self._client = self._guest, None, None
        if guest is not None:
            await self._release(guest, reason)

    async def _restart(self, reason: str) -> None:
        await self._discard(reason)
        try:
            await self._ensure_started()
        except SandboxError as exc:  # the next call tries again and raises
            log.warning("wasm_restart_failed", error=str(exc))

    async def reset(self) -> None:
        async with self._get_lock():
            await self._discard("reset")
            self._lost_notice = None  # the caller asked for a fresh session
            await self._ensure_started()

    async def close(self) -> None:
        self._closed = True
        guest, self._guest, self._client = self._guest, None, None
        if guest is not None:
            guest.kill("closed")
            try:
                await asyncio.to_thread(guest.release)
            except RuntimeError:  # no usable loop/executor any more: release inline
                guest.release()

    # --- requests ----------------------------------------------------------------------------

    async def execute(self, code: str, *, timeout: float | None = None) -> REPLResult:
        result = await self._execute(code, timeout=timeout)
        notice, self._lost_notice = self._lost_notice, None  # set when the wasm instance ended between calls
        return attrs.evolve(result, notice=notice) if notice else result

    async def _execute(self, code: str, *, timeout: float | None = None) -> REPLResult:
        if not isinstance(code, str):
            raise TypeError("execute(code): code must be a str")
        timeout = self.settings.timeout if timeout is None else float(timeout)
        async with self._get_lock():
            client = await self._ensure_started()
            guest = self._guest
            assert guest is not None
            started = time.perf_counter()
            cpu_started = guest.cpu_time_s()

            def elapsed() -> float:
                return round((time.perf_counter() - started) * 1000, 3)

            cpu_limit = self.settings.cpu_limit_s
            watchdog = None
            if cpu_limit and cpu_limit < timeout and cpu_started is not None:
                watchdog = asyncio.create_task(_watch_cpu(guest, cpu_started, cpu_limit))
            try:
                result = await client.execute(code, timeout=timeout, output_limit=self.settings.output_limit)
                cpu_ended = guest.cpu_time_s()
                cpu_ms = None
                if cpu_started is not None and cpu_ended is not None:
                    cpu_ms = round((cpu_ended - cpu_started) * 1000, 3)
                return attrs.evolve(result, cpu_time_ms=cpu_ms)
            except GuestTimeout:
                log.info("wasm_execution_timeout", timeout=timeout)
                guest.kill(f"the execution exceeded the {timeout:g}s wall-clock limit")
                ms = elapsed()
                await self._restart("timeout")
                return REPLResult(error=timeout_message(timeout, state_kept=False), execution_time_ms=ms)
            except GuestClosed:
                reason = await self._end_reason(guest)
                log.info("wasm_guest_died", reason=reason)
                ms = elapsed()
                await self._restart("died")
                return REPLResult(error=f"SandboxError: {reason}; {SESSION_LOST}.", execution_time_ms=ms)
            except GuestFault as exc:
                return REPLResult(error=f"SandboxError: the REPL could not run the code: {exc}",
                                  execution_time_ms=elapsed())
            except ProtocolError as exc:
                log.warning("wasm_protocol_error", op="exec", error=str(exc))
                ms = elapsed()
                await self._restart("protocol error")
                return REPLResult(error=f"SandboxError: the wasm guest broke the protocol ({exc}) and was "
                                        f"stopped; {SESSION_LOST}.", execution_time_ms=ms)
            except BaseException:
                await self._discard("cancelled")
                self._lost_notice = f"a call was cancelled while the instance was busy; {SESSION_LOST}"
                raise
            finally:
                if watchdog is not None:
                    watchdog.cancel()

    async def _end_reason(self, guest: GuestInstance) -> str:
        if guest.kill_reason is None:  # the stream ended first: give the thread a moment to record why
            await asyncio.to_thread(guest.finished.wait, 1.0)
        return guest.describe_end()

    async def _call(self, op: str, fields: dict[str, Any] | None = None, *, read: Any = None) -> Any:
        """One non-exec request, its reply checked by ``read(reply)``; timeouts, deaths and protocol
        violations become SandboxError (after a restart)."""
        timeout = self.settings.timeout
        async with self._get_lock():
            client = await self._ensure_started()
            guest = self._guest
            assert guest is not None
            try:
                reply = await client.request(op, fields, timeout=timeout)
                return read(reply) if read is not None else reply  # KeyError (no such variable) passes
            except ProtocolError as exc:
                log.warning("wasm_protocol_error", op=op, error=str(exc))
                await self._restart("protocol error")
                raise SandboxError(f"the wasm guest broke the protocol during {op}: {exc}; {SESSION_LOST}",
                                   fix="report this as a bug of rlm-env-wasm") from None
            except KeyError:
                raise
            except GuestTimeout:
                guest.kill(f"{op} exceeded {timeout:g}s")
                await self._restart("timeout")
                raise SandboxError(f"the REPL did not answer {op} within {timeout:g}s (a __repr__ that never "
                                   f"returns?); {SESSION_LOST}", fix="avoid slow __repr__ methods") from None
            except GuestClosed:
                reason = await self._end_reason(guest)
                await self._restart("died")
                raise SandboxError(f"the wasm guest died during {op}: {reason}; {SESSION_LOST}",
                                   fix="check memory_limit_mb and the size of the values exchanged") from None
            except GuestFault as exc:
                raise SandboxError(f"the wasm REPL could not serve {op}: {exc}",
                                   fix="report this as a bug of rlm-env-wasm") from None
            except BaseException:
                await self._discard("cancelled")
                self._lost_notice = f"a call was cancelled while the instance was busy; {SESSION_LOST}"
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


async def _watch_cpu(guest: GuestInstance, started: float, limit: float) -> None:
    """Stop ``guest`` once its thread has used ``limit`` seconds of CPU since ``started``."""
    while guest.alive:
        await asyncio.sleep(min(0.05, limit / 4))
        used = guest.cpu_time_s()
        if used is None:
            return
        if used - started > limit:
            log.info("wasm_cpu_limit_exceeded", limit=limit)
            guest.kill(f"the execution used more than its {limit:g}s of CPU time (cpu_limit_s)")
            return
