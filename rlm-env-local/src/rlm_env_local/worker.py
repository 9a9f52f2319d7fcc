"""The worker process: the shared REPL server under the local sandbox's jail and policy.

Started by :mod:`rlm_env_local.process` as ``python -I -B [-S] -c <boot>
<paths> <jail>``.  It speaks the protocol of :mod:`rlm_repl.repl_server` (whose
:class:`Channel` and :class:`Server` it uses): at start it moves the protocol
pipes off fds 0/1 (which then point to /dev/null, so nothing -- not even C
code -- can write into the protocol), imports what the REPL needs and locks
itself in the OS jail (:mod:`rlm_env_local.jail`: namespaces, Landlock,
seccomp) while it is still single-threaded, with the paths and switches of
``<jail>`` -- all before ``init`` arrives, so that a pre-started spare
(:mod:`rlm_env_local.spares`) is claimed by sending ``init`` alone.  The
paths code may read and write are those of ``<jail>``, never ``init``'s.
Then it reads ``init``, starts a watchdog that exits when the host dies, sets its
resource limits (address space, open files, file size, no new processes, no
core dumps), disables the process-creating functions of ``os``, installs the
audit hook and answers ``ready`` with the layers in force.  Then it serves
requests one at a time with :class:`rlm_env_local.sandbox.Repl` (the shared
REPL with the RestrictedPython policy on top).  Past a request's
``cpu_limit_s`` the kernel kills the worker (``SIGXCPU``) and the host starts a
fresh one.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import threading
import time
import traceback
from typing import Any

from rlm_repl import repl_server

_PROCESS_FUNCTIONS = (
    "system", "fork", "forkpty", "execv", "execve", "execl", "execle", "execlp", "execlpe", "execvp",
    "execvpe", "spawnv", "spawnve", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnvp", "spawnvpe",
    "posix_spawn", "posix_spawnp", "popen", "kill", "killpg", "putenv", "unsetenv", "register_at_fork",
)


def _refuse(*_args: Any, **_kwargs: Any) -> Any:
    raise PermissionError("creating processes is not allowed in the sandbox")


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(70)


def _lib_roots() -> list[str]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    roots.update(p for p in sys.path if p and os.path.isdir(p))
    return sorted(roots)


def _neuter_os() -> None:
    import posix

    for module in (os, posix):
        for name in _PROCESS_FUNCTIONS:
            if hasattr(module, name):
                setattr(module, name, _refuse)


def _jail(spec: dict[str, Any], off: frozenset[str]) -> dict[str, str]:
    """Enter the OS jail (before any thread or user code); layer -> status."""
    from rlm_env_local import jail

    read = [*_lib_roots(), *jail.SYSTEM_LIB_DIRS, *jail.SYSTEM_FILES, *spec["allowed_paths"]]
    return jail.confine(read=read, write=spec["writable_paths"], skip=off,
                        missing=spec.get("pretend_missing", ()))


def prepare(spec: dict[str, Any]) -> tuple[dict[str, str], float]:
    """Import what the REPL needs, then enter the jail ``spec`` describes; (layer -> status, ms in the jail)."""
    # modules the REPL needs are imported before the jail closes the file system around us
    import rlm_env_local.audit
    import rlm_env_local.modules
    import rlm_env_local.sandbox  # noqa: F401

    jail_started = time.perf_counter()
    layers = _jail(spec, frozenset(spec.get("layers_off", ())))
    return layers, round((time.perf_counter() - jail_started) * 1000, 3)


def serve(channel: Any, init: dict[str, Any], spec: dict[str, Any], layers: dict[str, str], jail_ms: float) -> None:
    """Build the REPL (inside the jail ``spec`` set up) and answer requests until the host closes the pipe."""
    off = frozenset(spec.get("layers_off", ()))
    python_layer = "python-guards" not in off
    from rlm_env_local.audit import AuditPolicy, install
    from rlm_env_local.modules import ModuleGate
    from rlm_env_local.sandbox import Repl

    read_roots, write_roots = list(spec["allowed_paths"]), list(spec["writable_paths"])
    server = repl_server.Server(channel, cpu_kill=True)
    gate = ModuleGate(init.get("extra_modules", ()))
    audit = AuditPolicy(read_roots=read_roots, write_roots=write_roots, lib_roots=_lib_roots())
    repl = Repl(gate=gate, audit=audit if python_layer else None, host=server.host_call(),
                has_callbacks=bool(init["has_callbacks"]), read_roots=read_roots,
                write_roots=write_roots, workdir=init["workdir"], output_limit=int(init["output_limit"]),
                restricted=python_layer)
    server.repl = repl
    repl.install_streams()

    parent = os.getppid()
    threading.stack_size(256 * 1024)  # the watchdog needs little; address space is limited
    threading.Thread(target=_watch_parent, args=(parent,), name="rlm-watchdog", daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    repl_server.apply_limits(init)
    _set_limit(resource.RLIMIT_NPROC, 0)  # ignored for root; the guards, seccomp and audit hook cover that case
    layers["rlimits"] = "active: address space, CPU time, open files, file size, processes, no core dumps"
    if python_layer:
        _neuter_os()
        install(audit)
        layers["python-guards"] = "active: RestrictedPython, module proxies, audit hook"
    else:
        layers["python-guards"] = "off (switched off for a test)"
    server.ready(modules=gate.allowed(), layers=layers, jail_ms=jail_ms)
    server.loop()


def _set_limit(which: int, value: int) -> None:
    _soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY and value > hard:
        value = hard
    resource.setrlimit(which, (value, value))


def main() -> None:
    """Entry point of the worker process: the jail first, then ``init`` (see the module docstring)."""
    channel = repl_server.open_streams(require_dup=True)
    try:
        spec = json.loads(sys.argv[2])
        layers, jail_ms = prepare(spec)
    except BaseException:  # noqa: BLE001 - report to the host through stderr, then die
        os.write(2, traceback.format_exc().encode("utf-8", "replace"))
        os._exit(1)
    init = repl_server.read_init(channel)
    try:
        serve(channel, init, spec, layers, jail_ms)
    except BrokenPipeError:
        pass
    except BaseException:  # noqa: BLE001 - report to the host through stderr, then die
        os.write(2, traceback.format_exc().encode("utf-8", "replace"))
        os._exit(1)
    os._exit(0)
