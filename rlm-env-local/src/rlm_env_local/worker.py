"""The worker process: one REPL session, driven by the host over JSON lines.

Started by :mod:`rlm_env_local.process` as ``python -I -B [-S] -c <boot>``.  At start
it moves the protocol pipes off fds 0/1 (which then point to /dev/null, so
nothing -- not even C code -- can write into the protocol), reads the ``init``
message, locks itself in the OS jail (:mod:`rlm_env_local.jail`: namespaces,
Landlock, seccomp) while it is still single-threaded, starts a watchdog that
exits when the host dies, sets its resource limits (address space, open
files, file size, no new processes, no core dumps), disables the
process-creating functions of ``os``, installs the audit hook and answers
``ready`` with the layers in force.  Then it serves requests one at a time:

host -> worker  ``{"id", "op": "exec"|"context"|"get"|"set"|"clear"|"ping", ...}``
                ``{"id", "op": "reply", "seq", "ok", "value"|"error"}`` (answers to callbacks)
worker -> host  ``{"nonce", "id", "op": "done", ...}`` (one per request)
                ``{"nonce", "id", "op": "llm_query"|"llm_query_batched", "seq", ...}``

Every message to the host carries the session's random nonce; user output
travels inside ``done`` messages as JSON strings, never as protocol lines.
"""

from __future__ import annotations

import io
import json
import math
import os
import resource
import signal
import sys
import threading
import time
import traceback
from typing import Any

MIB = 1024 * 1024
_PROCESS_FUNCTIONS = (
    "system", "fork", "forkpty", "execv", "execve", "execl", "execle", "execlp", "execlpe", "execvp",
    "execvpe", "spawnv", "spawnve", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnvp", "spawnvpe",
    "posix_spawn", "posix_spawnp", "popen", "kill", "killpg", "putenv", "unsetenv", "register_at_fork",
)


class Channel:
    """JSON lines over the two protocol file descriptors."""

    def __init__(self, read_fd: int, write_fd: int, nonce: str = "") -> None:
        self._reader = os.fdopen(read_fd, "rb", buffering=1 << 16)
        self._write_fd = write_fd
        self.nonce = nonce

    def read(self) -> dict[str, Any] | None:
        line = self._reader.readline()
        if not line:
            return None
        return json.loads(line)

    def send(self, message: dict[str, Any]) -> None:
        message["nonce"] = self.nonce
        data = (json.dumps(message) + "\n").encode("ascii")
        view = memoryview(data)
        while view:
            written = os.write(self._write_fd, view)
            view = view[written:]


def _refuse(*_args: Any, **_kwargs: Any) -> Any:
    raise PermissionError("creating processes is not allowed in the sandbox")


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(70)


def _set_limit(which: int, value: int) -> None:
    _soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY and value > hard:
        value = hard
    resource.setrlimit(which, (value, value))


def _apply_limits(init: dict[str, Any]) -> None:
    _set_limit(resource.RLIMIT_CORE, 0)
    _set_limit(resource.RLIMIT_NOFILE, int(init["max_open_files"]))
    _set_limit(resource.RLIMIT_FSIZE, int(init["max_file_size_mb"]) * MIB)
    _set_limit(resource.RLIMIT_NPROC, 0)  # ignored for root; the guards and audit hook cover that case
    if init.get("memory_limit_mb"):
        _set_limit(resource.RLIMIT_AS, int(init["memory_limit_mb"]) * MIB)


def set_cpu_limit(seconds: float) -> None:
    """Let the next request use ``seconds`` more CPU time; past it the kernel kills us (SIGXCPU)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = max(1, int(math.ceil(usage.ru_utime + usage.ru_stime + max(seconds, 0.0))))
    _cur, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


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


def _jail(init: dict[str, Any], off: frozenset[str]) -> dict[str, str]:
    """Enter the OS jail (before any thread or user code); layer -> status."""
    from rlm_env_local import jail

    read = [*_lib_roots(), *jail.SYSTEM_LIB_DIRS, *jail.SYSTEM_FILES, *init["allowed_paths"]]
    return jail.confine(read=read, write=init["writable_paths"], skip=off,
                        missing=init.get("pretend_missing", ()))


def serve(channel: Channel, init: dict[str, Any]) -> None:
    """Build the REPL and answer requests until the host closes the pipe."""
    off = frozenset(init.get("layers_off", ()))
    python_layer = "python-guards" not in off
    # modules the REPL needs are imported before the jail closes the file system around us
    from rlm_env_local.audit import AuditPolicy, install
    from rlm_env_local.modules import ModuleGate
    from rlm_env_local.sandbox import Repl

    jail_started = time.perf_counter()
    layers = _jail(init, off)
    jail_ms = round((time.perf_counter() - jail_started) * 1000, 3)

    state: dict[str, Any] = {"id": None, "seq": 0}

    def host_call(op: str, payload: dict[str, Any]) -> dict[str, Any]:
        state["seq"] += 1
        seq = state["seq"]
        channel.send({"id": state["id"], "op": op, "seq": seq, **payload})
        while True:
            message = channel.read()
            if message is None:
                os._exit(0)
            if message.get("op") == "reply" and message.get("seq") == seq:
                return message

    gate = ModuleGate(init.get("extra_modules", ()))
    audit = AuditPolicy(read_roots=init["allowed_paths"], write_roots=init["writable_paths"],
                        lib_roots=_lib_roots())
    repl = Repl(gate=gate, audit=audit if python_layer else None, host=host_call,
                has_callbacks=bool(init["has_callbacks"]), read_roots=init["allowed_paths"],
                write_roots=init["writable_paths"], workdir=init["workdir"], output_limit=int(init["output_limit"]),
                restricted=python_layer)
    sys.stdout = sys.stderr = repl.stream  # type: ignore[assignment]
    sys.stdin = io.StringIO("")

    parent = os.getppid()
    threading.stack_size(256 * 1024)  # the watchdog needs little; address space is limited
    threading.Thread(target=_watch_parent, args=(parent,), name="rlm-watchdog", daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _apply_limits(init)
    layers["rlimits"] = "active: address space, CPU time, open files, file size, processes, no core dumps"
    if python_layer:
        _neuter_os()
        install(audit)
        layers["python-guards"] = "active: RestrictedPython, module proxies, audit hook"
    else:
        layers["python-guards"] = "off (switched off for a test)"
    channel.send({"op": "ready", "pid": os.getpid(), "modules": gate.allowed(), "layers": layers,
                  "jail_ms": jail_ms})

    while True:
        request = channel.read()
        if request is None:
            return
        state["id"] = request.get("id")
        try:
            reply = _dispatch(repl, request)
        except Exception:  # noqa: BLE001 - a bug here must not kill the session silently
            reply = {"fault": traceback.format_exc(limit=5)}
        reply.update({"id": state["id"], "op": "done"})
        try:
            channel.send(reply)
        except MemoryError:
            channel.send({"id": state["id"], "op": "done",
                          "fault": "the worker ran out of memory while sending the result"})


def _dispatch(repl: Any, request: dict[str, Any]) -> dict[str, Any]:
    op = request.get("op")
    if "cpu_limit" in request:
        set_cpu_limit(float(request["cpu_limit"]))
    if op == "exec":
        result = repl.run(request["code"])
        final = result.get("final")
        if final and len(final["value"]) > repl.output.limit:  # the host caps it too; keep the message small
            final["value"] = final["value"][:repl.output.limit]
            result["truncated"] = True
        result["memory_peak_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return result
    if op == "context":
        return {"context": repl.context()}
    if op == "get":
        return repl.get(request["name"])
    if op == "set":
        repl.set(request["name"], request["value"])
        return {}
    if op == "clear":
        repl.clear()
        return {}
    if op == "ping":
        return {}
    return {"fault": f"unknown request {op!r}"}


def main() -> None:
    """Entry point of the worker process."""
    read_fd, write_fd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    channel = Channel(read_fd, write_fd)
    init = channel.read()
    if not init or init.get("op") != "init":
        sys.stderr.write("rlm worker: expected an init message\n")
        os._exit(2)
    channel.nonce = init["nonce"]
    try:
        serve(channel, init)
    except BrokenPipeError:
        pass
    except BaseException:  # noqa: BLE001 - report to the host through stderr, then die
        os.write(2, traceback.format_exc().encode("utf-8", "replace"))
        os._exit(1)
    os._exit(0)
