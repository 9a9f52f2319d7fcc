""":class:`LocalEnvironment`: the "local" Environment, one jailed worker process per session.

A :class:`rlm_repl.session.GuestSession` whose sandbox is a worker subprocess
(:mod:`rlm_env_local.process`) running the shared REPL server under the OS
jail and the RestrictedPython policy (:mod:`rlm_env_local.worker`).  The
session starts its worker lazily (or on :meth:`start`), claiming a pre-started
spare when one of the same jail is waiting (:mod:`rlm_env_local.spares`); a
start that cannot succeed (no interpreter, an OS layer this machine lacks while
``require_os_sandbox`` is on) fails before its first await; a timed-out execution
kills the worker and starts a fresh one (state is lost, the result says so);
past ``cpu_limit_s`` (default: the timeout) the kernel kills the worker the
same way.  Errors in user code come back in ``REPLResult.error`` and are
never raised.  ``SandboxError`` is raised only when the environment itself
cannot work -- or when the OS jail lacks a layer and ``require_os_sandbox``
is on.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterable

from rlm.environment import EnvironmentSettings, HostCallbacks
from rlm.errors import SandboxError
from rlm.logging import get_logger
from rlm_repl.client import GuestClient, GuestClosed, GuestTimeout
from rlm_repl.replies import ProtocolError
from rlm_repl.session import GuestSession

from rlm_env_local import jail
from rlm_env_local.config import LocalEnvConfig
from rlm_env_local.process import WorkerProcess, default_python
from rlm_env_local.spares import POOL, WorkerSpec

log = get_logger(__name__)


def _death_reason(returncode: int | None, cpu_limit: float | None) -> str:
    if returncode is None:
        return "the worker stopped answering"
    if returncode == -signal.SIGXCPU:
        limit = f" of {cpu_limit:g}s" if cpu_limit else ""
        return f"the CPU time limit{limit} was exceeded"
    if returncode == -signal.SIGKILL:
        return "the worker was killed (SIGKILL: out of memory?)"
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


class _Worker:
    """The running sandbox: the worker process and the client driving it."""

    def __init__(self, process: WorkerProcess, client: GuestClient) -> None:
        self.process = process
        self.client = client


class LocalEnvironment(GuestSession):
    """A REPL session running RestrictedPython in a sandboxed worker subprocess.

    ``disable_layers`` is for tests only: it switches isolation layers off
    (``"namespaces"``, ``"landlock"``, ``"seccomp"``, ``"python-guards"``) so each
    remaining layer can be shown to hold on its own.  The kernel never passes it.
    """

    name = "local"
    noun = "worker"
    bug_fix = "report this as a bug of rlm-env-local"

    def __init__(self, *, settings: EnvironmentSettings | None = None,
                 callbacks: HostCallbacks | None = None, disable_layers: Iterable[str] = ()) -> None:
        super().__init__(settings=settings, callbacks=callbacks)
        options = self.settings.options
        self.options = options if isinstance(options, LocalEnvConfig) else LocalEnvConfig()
        self.disable_layers = frozenset(disable_layers)
        unknown = self.disable_layers - SWITCHABLE_LAYERS
        if unknown:
            raise ValueError(f"disable_layers: unknown layer(s) {sorted(unknown)}; "
                             f"known: {sorted(SWITCHABLE_LAYERS)}")
        #: The isolation layers of the running worker: name -> status ("active: ..." when in force).
        self.layers: dict[str, str] = {}
        #: Milliseconds the running worker spent entering its OS jail (None before the first start).
        self.jail_ms: float | None = None

    @property
    def pid(self) -> int | None:
        """The worker's process id (None when not running)."""
        worker = self._sandbox
        return worker.process.pid if worker is not None and worker.process.alive else None

    # --- the sandbox --------------------------------------------------------------------------

    def _cpu_limit_s(self, timeout: float) -> float | None:
        return self.settings.cpu_limit_s or timeout

    def _alive(self, sandbox: _Worker) -> bool:
        return sandbox.process.alive

    async def _stop(self, sandbox: _Worker, reason: str) -> None:
        sandbox.process.kill(reason)

    def _stop_now(self, sandbox: _Worker, reason: str) -> None:
        sandbox.process.kill(reason)

    async def _death_reason(self, sandbox: _Worker) -> str:
        returncode = await asyncio.to_thread(sandbox.process.wait_exit)
        return _death_reason(returncode, self._cpu_limit_s(self.settings.timeout))

    def _spec(self) -> WorkerSpec:
        s = self.settings
        return WorkerSpec.of(python=self.options.python or default_python(), extra_modules=self.options.extra_modules,
                          cwd=s.workdir, allowed_paths=s.allowed_paths, writable_paths=s.writable_paths,
                          layers_off=tuple(sorted(self.disable_layers)),
                          pretend_missing=tuple(sorted(jail.pretend_missing())))

    def _required(self) -> bool:
        """Whether a missing OS layer refuses the session (the default on Linux; not when a test switched one off)."""
        return self.options.require_os_sandbox and not (self.disable_layers & set(jail.OS_LAYERS))

    async def _launch(self) -> _Worker:
        # everything up to the worker's start is synchronous: a session that cannot start fails at
        # once, before its caller's next await (the kernel's first model call is not sent then)
        s = self.settings
        if self._required():  # a layer this machine lacks: the worker would report it the same way
            problem = refusal({name: "active" if why is None else f"unavailable: {why}"
                               for name, why in jail.probe().items()})
            if problem is not None:
                raise problem
        init = {"max_open_files": s.max_open_files, "max_file_size_mb": self.options.max_file_size_mb,
                "extra_modules": list(self.options.extra_modules)}
        spec = self._spec()
        python = spec.python
        try:
            process = POOL.claim(spec, self.options.spare_workers)
        except OSError as exc:
            raise SandboxError(f"cannot start the local REPL worker ({python}): {exc}",
                               fix="check [plugins.env-local] python and that settings.workdir exists") from exc
        client = GuestClient(process, process, callbacks=self.callbacks, name=f"local worker {process.pid}")
        try:
            ready = await client.start(timeout=self.options.startup_timeout, output_limit=s.output_limit,
                                       memory_limit_mb=s.memory_limit_mb, workdir=s.workdir, **init)
        except (GuestClosed, GuestTimeout, ProtocolError) as exc:
            detail = process.stderr_tail().strip().splitlines()
            process.kill("failed to start")
            reason = detail[-1] if detail else type(exc).__name__
            raise SandboxError(f"the local REPL worker did not start: {reason}",
                               fix="make sure RestrictedPython is installed for that Python "
                                   "(pip install rlm-env-local) and memory_limit_mb leaves room "
                                   "for the interpreter (at least 64)") from exc
        except BaseException:
            process.kill("start cancelled")
            raise
        layers = ready.get("layers")
        layers = {str(k)[:64]: str(v)[:300] for k, v in layers.items()} if isinstance(layers, dict) else {}
        layers["scrubbed-env"] = "active: the worker gets no variable of the host's environment but " \
                                 + ", ".join(sorted(process.env))
        problem = refusal(layers) if self._required() else None
        if problem is not None:
            process.kill("OS jail incomplete")
            raise problem
        if not all(jail.is_active(layers.get(n, "")) for n in jail.OS_LAYERS) and not self.disable_layers:
            log.warning("os_sandbox_incomplete", layers={k: v for k, v in layers.items() if not jail.is_active(v)})
        self.layers = layers
        jail_ms = ready.get("jail_ms")
        self.jail_ms = float(jail_ms) if isinstance(jail_ms, (int, float)) else None
        log.info("worker_started", pid=process.pid)
        return _Worker(process, client)


__all__ = ["SWITCHABLE_LAYERS", "LocalEnvironment", "refusal"]


