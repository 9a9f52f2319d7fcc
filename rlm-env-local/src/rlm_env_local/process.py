"""Host side of one worker process: spawn, the line streams to it, kill.

The worker's stdin/stdout pipes carry the JSON lines of the shared REPL
protocol (:mod:`rlm_repl.repl_server`); :class:`WorkerProcess` is the line
reader/writer pair a :class:`rlm_repl.client.GuestClient` drives (every line
read is bounded by :data:`rlm_repl.replies.MAX_FRAME_BYTES`).  Its stderr goes
to an anonymous temporary file read only to explain a crash.  I/O uses
``loop.add_reader``/``add_writer`` on non-blocking pipes, so a worker works
from whichever event loop calls it (``asyncio.run`` per call included).  The
worker runs in its own session (process group) with a minimal environment:
no API keys or other secrets of the host reach it.  What its OS jail allows
(``jail``: the paths, the layers switched off) is fixed on its command line,
so that it enters the jail before it gets ``init`` (a pre-started spare,
:mod:`rlm_env_local.spares`, does).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import site
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from rlm.logging import get_logger
from rlm_repl.replies import MAX_FRAME_BYTES, ProtocolError

log = get_logger(__name__)

_BOOT = ("import sys, json\n"
         "sys.path.extend(p for p in json.loads(sys.argv[1]) if p not in sys.path)\n"
         "# sys.argv[2]: the jail (rlm_env_local.worker.main)\n"
         "from rlm_env_local.worker import main\n"
         "main()\n")


def _import_paths(extra_modules: Sequence[str] = ()) -> list[str]:
    """Directories the worker needs on sys.path: where rlm_env_local, rlm_repl and RestrictedPython live,
    and where the configured extra modules are found."""
    import RestrictedPython
    import rlm_repl

    import rlm_env_local

    paths = []
    for module in (rlm_env_local, rlm_repl, RestrictedPython):
        package_dir = os.path.dirname(os.path.abspath(module.__file__ or ""))
        paths.append(os.path.dirname(package_dir))
    for name in extra_modules:
        try:
            spec = importlib.util.find_spec(name.split(".")[0])
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            continue  # the worker reports the failed import when code asks for it
        if spec.submodule_search_locations:
            paths.extend(os.path.dirname(p) for p in spec.submodule_search_locations)
        elif spec.origin and os.path.isabs(spec.origin):
            paths.append(os.path.dirname(spec.origin))
    return list(dict.fromkeys(paths))


def _command(python: str, extra_modules: Sequence[str], jail: Mapping[str, Any]) -> list[str]:
    """How the worker is started.  With the interpreter running rlm, ``-S`` skips the site
    module (and every .pth file: a few ms of the cold start); its site-packages are passed
    explicitly.  Another interpreter keeps its own site setup."""
    paths = _import_paths(extra_modules)
    flags = ["-I", "-B"]
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        flags.append("-S")
        paths += [p for p in site.getsitepackages() if os.path.isdir(p)]
    return [python, *flags, "-c", _BOOT, json.dumps(list(dict.fromkeys(paths))), json.dumps(dict(jail))]


def _worker_env() -> dict[str, str]:
    env = {"PATH": os.defpath, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8",
           "MALLOC_ARENA_MAX": "1"}  # one malloc arena: a second thread must not reserve 64 MiB of address space
    if "TZ" in os.environ:
        env["TZ"] = os.environ["TZ"]
    return env


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - a SIGKILLed process always goes
        log.warning("worker_kill_timeout", pid=proc.pid)


class WorkerProcess:
    """One running worker: the line reader and writer of its protocol pipes."""

    def __init__(self, *, python: str, extra_modules: Sequence[str], cwd: str, jail: Mapping[str, Any]) -> None:
        self._stderr = tempfile.TemporaryFile()
        #: The whole environment the worker starts with (no secret of the host's).
        self.env = _worker_env()
        self._proc = subprocess.Popen(
            _command(python, extra_modules, jail),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, cwd=cwd, env=self.env,
            start_new_session=True, close_fds=True,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._wfd = self._proc.stdin.fileno()
        self._rfd = self._proc.stdout.fileno()
        os.set_blocking(self._wfd, False)
        os.set_blocking(self._rfd, False)
        self._buffer = bytearray()
        self._pending = bytearray()
        self._finalizer = weakref.finalize(self, _kill, self._proc)
        self.pid = self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def kill(self, reason: str) -> None:
        """Kill the worker (and anything in its process group); idempotent."""
        if self.alive:
            log.info("worker_killed", pid=self.pid, reason=reason)
        _kill(self._proc)
        for stream in (self._proc.stdin, self._proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        self._stderr.close()
        self._finalizer.detach()

    def abandon(self) -> None:
        """Let go of the worker without killing it (a forked child's copy of its parent's worker):
        its pipes are closed here, the finalizer that would kill it is detached."""
        self._finalizer.detach()
        for stream in (self._proc.stdin, self._proc.stdout, self._stderr):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()
        self._proc.returncode = 0  # not this process's child: never waited for nor killed from here

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    def wait_exit(self, timeout: float = 2.0) -> int | None:
        """The exit status once the worker is gone (None if it is still running after ``timeout``)."""
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stderr_tail(self, limit: int = 2000) -> str:
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - limit))
            return self._stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    # --- the line streams (rlm_repl.client.LineReader / LineWriter) ---------------------------

    def write(self, data: bytes) -> None:
        self._pending += data

    async def drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            try:
                written = os.write(self._wfd, self._pending)
            except BlockingIOError:
                await self._wait(loop, self._wfd, writer=True)
                continue
            except (ValueError, OSError) as exc:
                self._pending.clear()
                raise BrokenPipeError(f"the worker's input is closed: {exc}") from None
            del self._pending[:written]

    async def readline(self) -> bytes:
        """The next line (newline included); ``b""`` at end of stream; ProtocolError past the frame limit."""
        loop = asyncio.get_running_loop()
        while True:
            end = self._buffer.find(b"\n")
            if end > MAX_FRAME_BYTES or (end < 0 and len(self._buffer) > MAX_FRAME_BYTES):
                self._buffer.clear()
                raise ProtocolError(f"a message from the worker is larger than {MAX_FRAME_BYTES >> 20} MiB")
            if end >= 0:
                line = bytes(self._buffer[:end + 1])
                del self._buffer[:end + 1]
                return line
            try:
                chunk = os.read(self._rfd, 1 << 20)
            except BlockingIOError:
                chunk = None
            except (ValueError, OSError):
                chunk = b""
            if chunk == b"":
                return b""
            if chunk:
                self._buffer += chunk
                continue
            await self._wait(loop, self._rfd, writer=False)

    @staticmethod
    async def _wait(loop: asyncio.AbstractEventLoop, fd: int, *, writer: bool) -> None:
        """Wait until ``fd`` is ready (the caller's timeout cancels the wait)."""
        future: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not future.done():
                future.set_result(None)

        add, remove = (loop.add_writer, loop.remove_writer) if writer else (loop.add_reader, loop.remove_reader)
        add(fd, ready)
        try:
            await future
        finally:
            remove(fd)


def default_python() -> str:
    return sys.executable
