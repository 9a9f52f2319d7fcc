""":class:`LocalEnvironment`: the "local" Environment, one worker process per session.

The session starts its worker lazily (or on :meth:`start`), sends it one
request at a time, answers its ``llm_query`` callbacks through the host's
:class:`rlm.environment.HostCallbacks`, and turns timeouts and crashes into
clear results: a timed-out execution kills the worker and starts a fresh one
(state is lost, the result says so); errors in user code come back in
``REPLResult.error`` and are never raised.  ``SandboxError`` is raised only
when the environment itself cannot work.
"""

from __future__ import annotations

import asyncio
import json
import keyword
import signal
import time
from collections.abc import Iterable
from typing import Any

from rlm.environment import EnvironmentSettings, HostCallbacks
from rlm.errors import SandboxError
from rlm.logging import get_logger
from rlm.types import REPLResult

from rlm_env_local import jail
from rlm_env_local.config import LocalEnvConfig
from rlm_env_local.process import WorkerDied, WorkerProcess, WorkerTimeout, default_python
from rlm_repl import replies
from rlm_repl.replies import SESSION_LOST, ProtocolError

log = get_logger(__name__)


def _death_reason(returncode: int | None, cpu_limit: float | None) -> str:
    if returncode is None:
        return "the worker stopped answering"
    if returncode == -signal.SIGXCPU:
        limit = f" of {cpu_limit:g}s" if cpu_limit else ""
        return f"the CPU time limit{limit} was exceeded"
    if returncode == -signal.SIGKILL:
        return "the worker was killed (out of memory?)"
    if returncode == -signal.SIGSEGV:
        return "the worker crashed (segmentation fault, e.g. recursion too deep inside C code)"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"the worker was killed by signal {name}"
    return f"the worker exited with status {returncode}"


#: Layers a test may switch off one by one (never reachable from configuration).
SWITCHABLE_LAYERS = frozenset({*jail.OS_LAYERS, "python-guards"})


def refusal(layers: dict[str, str]) -> SandboxError | None:
    """The error for a worker whose OS jail lacks a layer (None when all are active)."""
    missing = {name: layers.get(name, "unavailable: not reported") for name in jail.OS_LAYERS
               if not jail.is_active(layers.get(name, ""))}
    if not missing:
        return None
    what = "; ".join(f"{name} is {status}" for name, status in missing.items())
    return SandboxError(
        f"the local sandbox refuses to start with fewer OS isolation layers than required: {what}",
        fix="run on Linux >= 5.13 with Landlock, seccomp and user namespaces enabled (`rlm doctor` lists "
            "them), or use environment = \"docker\" or \"wasm\", or accept the weaker jail with "
            "[plugins.env-local] require_os_sandbox = false (RLM_PLUGINS__ENV_LOCAL__REQUIRE_OS_SANDBOX=false)")


class LocalEnvironment:
    """A REPL session running RestrictedPython in a sandboxed worker subprocess.

    ``disable_layers`` is for tests only: it switches isolation layers off
    (``"namespaces"``, ``"landlock"``, ``"seccomp"``, ``"python-guards"``) so each
    remaining layer can be shown to hold on its own.  The kernel never passes it.
    """

    name = "local"

    def __init__(self, *, settings: EnvironmentSettings | None = None,
                 callbacks: HostCallbacks | None = None, disable_layers: Iterable[str] = ()) -> None:
        self.settings = settings if settings is not None else EnvironmentSettings()
        options = self.settings.options
        self.options = options if isinstance(options, LocalEnvConfig) else LocalEnvConfig()
        self.callbacks = callbacks
        self.disable_layers = frozenset(disable_layers)
        unknown = self.disable_layers - SWITCHABLE_LAYERS
        if unknown:
            raise ValueError(f"disable_layers: unknown layer(s) {sorted(unknown)}; "
                             f"known: {sorted(SWITCHABLE_LAYERS)}")
        #: The isolation layers of the running worker: name -> status ("active: ..." when in force).
        self.layers: dict[str, str] = {}
        #: Milliseconds the running worker spent entering its OS jail (None before the first start).
        self.jail_ms: float | None = None
        self._worker: WorkerProcess | None = None
        #: Said with the next result: the worker ended between calls and a fresh one took its place.
        self._lost_notice: str | None = None
        self._closed = False
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def _get_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    @property
    def pid(self) -> int | None:
        """The worker's process id (None when not running)."""
        return self._worker.pid if self._worker is not None and self._worker.alive else None

    async def start(self) -> None:
        async with self._get_lock():
            await self._ensure_started()

    async def _ensure_started(self) -> WorkerProcess:
        if self._closed:
            raise SandboxError("this local environment was closed", fix="create a new environment")
        if self._worker is not None and self._worker.alive:
            return self._worker
        if self._worker is not None:  # it ended between two calls: whoever calls next must know
            reason = _death_reason(self._worker.returncode, None)
            self._worker.kill("dead")
            self._worker = None
            self._lost_notice = f"{reason} since the last call; {SESSION_LOST}"
            log.info("worker_lost_between_calls", reason=reason)
        s = self.settings
        init = {
            "allowed_paths": list(s.allowed_paths), "writable_paths": list(s.writable_paths),
            "workdir": s.workdir, "memory_limit_mb": s.memory_limit_mb, "max_open_files": s.max_open_files,
            "max_file_size_mb": self.options.max_file_size_mb, "output_limit": s.output_limit,
            "has_callbacks": self.callbacks is not None, "extra_modules": list(self.options.extra_modules),
            "layers_off": sorted(self.disable_layers),
            "pretend_missing": sorted(jail.pretend_missing()),
        }
        python = self.options.python or default_python()
        try:
            worker = WorkerProcess(python=python, init=init, cwd=s.workdir)
        except OSError as exc:
            raise SandboxError(f"cannot start the local REPL worker ({python}): {exc}",
                               fix="check [plugins.env-local] python and that settings.workdir exists") from exc
        try:
            ready = await worker.handshake(self.options.startup_timeout)
        except (WorkerDied, WorkerTimeout, ProtocolError) as exc:
            detail = worker.stderr_tail().strip().splitlines()
            worker.kill("failed to start")
            reason = detail[-1] if detail else type(exc).__name__
            raise SandboxError(f"the local REPL worker did not start: {reason}",
                               fix="make sure RestrictedPython is installed for that Python "
                                   "(pip install rlm-env-local) and memory_limit_mb leaves room "
                                   "for the interpreter (at least 64)") from exc
        except BaseException:
            worker.kill("start cancelled")
            raise
        layers = ready.get("layers")
        layers = {str(k)[:64]: str(v)[:300] for k, v in layers.items()} if isinstance(layers, dict) else {}
        layers["scrubbed-env"] = "active: the worker gets no variable of the host's environment but " \
                                 + ", ".join(sorted(worker.env))
        required = self.options.require_os_sandbox and not (self.disable_layers & set(jail.OS_LAYERS))
        problem = refusal(layers) if required else None
        if problem is not None:
            worker.kill("OS jail incomplete")
            raise problem
        if not all(jail.is_active(layers.get(n, "")) for n in jail.OS_LAYERS) and not self.disable_layers:
            log.warning("os_sandbox_incomplete", layers={k: v for k, v in layers.items() if not jail.is_active(v)})
        self.layers = layers
        jail_ms = ready.get("jail_ms")
        self.jail_ms = float(jail_ms) if isinstance(jail_ms, (int, float)) else None
        self._worker = worker
        return worker

    async def _restart(self, reason: str) -> None:
        if self._worker is not None:
            self._worker.kill(reason)
            self._worker = None
        try:
            await self._ensure_started()
        except SandboxError as exc:  # the next call will try again and raise
            log.warning("worker_restart_failed", error=str(exc))

    async def reset(self) -> None:
        async with self._get_lock():
            if self._worker is not None:
                self._worker.kill("reset")
                self._worker = None
            self._lost_notice = None  # the caller asked for a fresh session
            await self._ensure_started()

    async def close(self) -> None:
        self._closed = True
        if self._worker is not None:
            self._worker.kill("close")
            self._worker = None

    # --- callbacks ---------------------------------------------------------------------------

    async def _on_callback(self, op: str, message: dict[str, Any]) -> dict[str, Any]:
        callbacks = self.callbacks
        if callbacks is None:
            return {"ok": False, "error": f"{op} is not available: no host callbacks"}
        request = replies.callback_request(op, message)  # a malformed callback breaks the protocol
        try:
            if isinstance(request, str):
                value: Any = str(await callbacks.llm_query(request))
            else:
                prompts = request
                value = [str(v) for v in await callbacks.llm_query_batched(prompts)]
                if len(value) != len(prompts):
                    raise RuntimeError(f"the host returned {len(value)} answers for {len(prompts)} prompts")
        except Exception as exc:  # noqa: BLE001 - reported inside the code, which may handle it
            log.info("llm_callback_failed", op=op, error=str(exc))
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"ok": True, "value": value}

    # --- requests ----------------------------------------------------------------------------

    async def _call(self, op: str, payload: dict[str, Any], *, read: Any = None,
                    timeout: float | None = None) -> Any:
        """One non-exec request, its reply checked by ``read(reply)`` (may raise ProtocolError);
        timeouts, crashes and protocol violations become SandboxError (after a restart)."""
        timeout = self.settings.timeout if timeout is None else timeout
        cpu_limit = self.settings.cpu_limit_s or timeout
        async with self._get_lock():
            worker = await self._ensure_started()
            try:
                reply = await worker.request(op, {**payload, "cpu_limit_s": cpu_limit}, timeout=timeout,
                                             on_callback=self._on_callback)
                if reply.get("fault"):
                    raise SandboxError(f"the REPL worker failed internally: {str(reply['fault'])[:2000]}",
                                       fix="report this as a bug of rlm-env-local")
                return read(reply) if read is not None else reply  # KeyError (no such variable) passes
            except WorkerTimeout:
                await self._restart("timeout")
                raise SandboxError(f"the REPL did not answer {op} within {timeout:g}s (a __repr__ that never "
                                   f"returns?); {SESSION_LOST}", fix="avoid slow __repr__ methods") from None
            except WorkerDied as died:
                reason = _death_reason(died.returncode, cpu_limit)
                await self._restart("died")
                raise SandboxError(f"the REPL worker died during {op}: {reason}; {SESSION_LOST}",
                                   fix="check memory_limit_mb and the code's resource use") from None
            except ProtocolError as exc:
                log.warning("worker_protocol_error", pid=worker.pid, error=str(exc))
                await self._restart("protocol error")
                raise SandboxError(f"the REPL worker broke the protocol: {exc}; {SESSION_LOST}",
                                   fix="report this as a bug of rlm-env-local") from None
            except (SandboxError, KeyError):
                raise
            except BaseException:
                worker.kill("cancelled")
                self._worker = None
                self._lost_notice = f"a call was cancelled while the worker was busy; {SESSION_LOST}"
                raise

    async def execute(self, code: str, *, timeout: float | None = None) -> REPLResult:
        if not isinstance(code, str):
            raise TypeError("execute(code): code must be a str")
        timeout = self.settings.timeout if timeout is None else float(timeout)
        cpu_limit = self.settings.cpu_limit_s or timeout
        async with self._get_lock():
            worker = await self._ensure_started()
            notice, self._lost_notice = self._lost_notice, None
            started = time.perf_counter()

            def elapsed() -> float:
                return round((time.perf_counter() - started) * 1000, 3)

            try:
                reply = await worker.request("exec", {"code": code, "cpu_limit_s": cpu_limit}, timeout=timeout,
                                             on_callback=self._on_callback)
            except WorkerTimeout:
                log.info("execution_timeout", pid=worker.pid, timeout=timeout)
                ms = elapsed()
                await self._restart("timeout")
                return REPLResult(error=f"TimeoutError: the execution exceeded the {timeout:g}s wall-clock "
                                        f"limit (llm_query time included) and was stopped; {SESSION_LOST}. Make the "
                                        "code faster or split the work into smaller steps (or raise "
                                        "env_timeout).", execution_time_ms=ms, notice=notice)
            except WorkerDied as died:
                reason = _death_reason(died.returncode, cpu_limit)
                log.info("worker_died", pid=worker.pid, returncode=died.returncode, stderr=died.stderr[-500:])
                ms = elapsed()
                await self._restart("died")
                return REPLResult(error=f"SandboxError: {reason}; {SESSION_LOST}.", execution_time_ms=ms, notice=notice)
            except ProtocolError as exc:
                protocol_error = exc
            except BaseException:
                worker.kill("cancelled")
                self._worker = None
                self._lost_notice = f"a call was cancelled while the worker was busy; {SESSION_LOST}"
                raise
            else:
                if reply.get("fault"):
                    return REPLResult(error=f"SandboxError: the REPL worker failed internally (please report this "
                                            f"as a bug of rlm-env-local): {str(reply['fault'])[:2000]}",
                                      execution_time_ms=elapsed(), notice=notice)
                try:
                    return replies.exec_result(reply, output_limit=self.settings.output_limit,
                                               execution_time_ms=elapsed(), notice=notice)
                except ProtocolError as exc:
                    protocol_error = exc
            # whatever the worker sent or did, it ends in a result that says so, never an exception
            log.warning("worker_protocol_error", pid=worker.pid, error=str(protocol_error))
            await self._restart("protocol error")
            return REPLResult(error=f"SandboxError: the REPL worker broke the protocol ({protocol_error}) and was "
                                    f"stopped; {SESSION_LOST}.", execution_time_ms=elapsed(), notice=notice)

    async def get_context(self) -> dict[str, str]:
        return await self._call("context", {}, read=replies.context_reply)

    async def get_variable(self, name: str) -> Any:
        return await self._call("get", {"name": name}, read=lambda reply: replies.variable_reply(name, reply))

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
        await self._call("clear", {})
