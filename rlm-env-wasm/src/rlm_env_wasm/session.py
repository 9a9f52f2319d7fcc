""":class:`WasmEnvironment`: the "wasm" Environment, one WASI CPython instance per session.

A :class:`rlm_repl.session.GuestSession` whose sandbox is a
:class:`~rlm_env_wasm.instance.GuestInstance`: the compiled interpreter
(cached, see :mod:`rlm_env_wasm.cache`) loaded into its own Engine, running the
shared guest REPL (:mod:`rlm_repl.repl_server`).  Errors in user code come
back in ``REPLResult.error``.  A timeout, ``cpu_limit_s`` (the guest thread's
CPU clock, polled), a trap (stack overflow, abort) or an output flood stops
the instance; the session restarts with a fresh one (state is lost, the
result says so).  CPU time in results is measured by the host: the guest's
own ``time.process_time()`` is wrong under WASI.  ``SandboxError`` is raised
only when the environment itself cannot work (wasmtime or the runtime
missing, a corrupt runtime, a guest that cannot start).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import attrs
from rlm.environment import EnvironmentSettings, HostCallbacks
from rlm.errors import SandboxError
from rlm.logging import get_logger
from rlm.types import REPLResult
from rlm_repl import server_source
from rlm_repl.client import GuestClient, GuestClosed, GuestTimeout
from rlm_repl.session import GuestSession

from rlm_env_wasm.cache import module_cache
from rlm_env_wasm.config import WasmEnvConfig
from rlm_env_wasm.engine import new_engine
from rlm_env_wasm.instance import GuestInstance
from rlm_env_wasm.mounts import preopens_for
from rlm_env_wasm.runtime import resolve

log = get_logger(__name__)


#: Guest environment variables: the server must not try os.dup (WASI has none).
GUEST_ENV = (("RLM_GUEST_NO_DUP", "1"),)


class _Instance:
    """The running sandbox: the wasm instance and the client driving it."""

    def __init__(self, guest: GuestInstance, client: GuestClient) -> None:
        self.guest = guest
        self.client = client


class WasmEnvironment(GuestSession):
    """A REPL session running CPython 3.12 compiled to WASI, under wasmtime."""

    name = "wasm"
    noun = "wasm instance"
    bug_fix = "report this as a bug of rlm-env-wasm"

    def __init__(self, *, settings: EnvironmentSettings | None = None,
                 callbacks: HostCallbacks | None = None) -> None:
        super().__init__(settings=settings, callbacks=callbacks)
        options = self.settings.options
        self.options = options if isinstance(options, WasmEnvConfig) else WasmEnvConfig()
        self._engine: Any = None
        self._module: Any = None
        #: How the module was obtained: "cache" or "compiled" (None before the first start).
        self.module_source: str | None = None

    @property
    def _guest(self) -> GuestInstance | None:
        """The running instance (None when none runs)."""
        return self._sandbox.guest if self._sandbox is not None else None

    # --- the sandbox --------------------------------------------------------------------------

    def _load_module(self) -> None:
        runtime = resolve(self.options.wasm_path, self.options.wasm_sha256)
        started = time.perf_counter()
        engine = new_engine()
        module, how = module_cache(runtime, self.options.cache_dir).load(engine)
        self._engine, self._module, self.module_source = engine, module, how
        log.info("wasm_module_loaded", source=how, ms=round((time.perf_counter() - started) * 1000, 1))

    def _cpu_limit_s(self, timeout: float) -> float | None:
        return None  # measured and enforced by the host (_watch_cpu): the guest cannot

    def _alive(self, sandbox: _Instance) -> bool:
        return sandbox.guest.alive

    async def _stop(self, sandbox: _Instance, reason: str) -> None:
        sandbox.guest.kill(reason)
        try:
            await asyncio.to_thread(sandbox.guest.release)
        except RuntimeError:  # no usable loop/executor any more: release inline
            sandbox.guest.release()

    def _stop_now(self, sandbox: _Instance, reason: str) -> None:
        sandbox.guest.kill(reason)

    async def _death_reason(self, sandbox: _Instance) -> str:
        guest = sandbox.guest
        if guest.kill_reason is None:  # the stream ended first: give the thread a moment to record why
            await asyncio.to_thread(guest.finished.wait, 1.0)
        return guest.describe_end()

    async def _launch(self) -> _Instance:
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
            await self._stop(_Instance(guest, client), "failed to start")
            raise SandboxError(f"the wasm interpreter did not start: {reason}"
                               + (f"; its stderr ends: {tail[-500:]}" if tail else ""),
                               fix="raise memory_limit_mb (at least 16) or [plugins.env-wasm] startup_timeout; "
                                   "run `rlm doctor`") from None
        except BaseException:
            await self._stop(_Instance(guest, client), "start cancelled")
            raise
        return _Instance(guest, client)

    async def _run(self, sandbox: _Instance, code: str, timeout: float, fields: dict[str, Any]) -> REPLResult:
        guest = sandbox.guest
        cpu_started = guest.cpu_time_s()
        cpu_limit = self.settings.cpu_limit_s
        watchdog = None
        if cpu_limit and cpu_limit < timeout and cpu_started is not None:
            watchdog = asyncio.create_task(_watch_cpu(guest, cpu_started, cpu_limit))
        try:
            try:
                result = await super()._run(sandbox, code, timeout, fields)
            except GuestTimeout:
                guest.kill(f"the execution exceeded the {timeout:g}s wall-clock limit")
                raise
        finally:
            if watchdog is not None:
                watchdog.cancel()
        cpu_ended = guest.cpu_time_s()
        cpu_ms = None
        if cpu_started is not None and cpu_ended is not None:
            cpu_ms = round((cpu_ended - cpu_started) * 1000, 3)
        return attrs.evolve(result, cpu_time_ms=cpu_ms)


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
