"""Host side of one worker process: spawn, handshake, requests, callbacks, kill.

The worker's stdin/stdout pipes carry JSON lines (see :mod:`rlm_env_local.worker`);
its stderr goes to an anonymous temporary file read only to explain a crash.
I/O uses ``loop.add_reader``/``add_writer`` on non-blocking pipes, so a
worker works from whichever event loop calls it (``asyncio.run`` per call
included).  The worker runs in its own session (process group) with a minimal
environment: no API keys or other secrets of the host reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import secrets
import signal
import site
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from rlm.logging import get_logger
from rlm_repl.replies import MAX_FRAME_BYTES, ProtocolError

log = get_logger(__name__)

Callback = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

_BOOT = ("import sys, json\n"
         "sys.path.extend(p for p in json.loads(sys.argv[1]) if p not in sys.path)\n"
         "from rlm_env_local.worker import main\n"
         "main()\n")


class WorkerTimeout(Exception):
    """The worker did not answer before the deadline (it has been killed)."""


class WorkerDied(Exception):
    """The worker exited (or its pipe closed) while a request was outstanding."""

    def __init__(self, returncode: int | None, stderr: str) -> None:
        super().__init__(f"worker exited with {returncode}")
        self.returncode = returncode
        self.stderr = stderr


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


def _command(python: str, extra_modules: Sequence[str]) -> list[str]:
    """How the worker is started.  With the interpreter running rlm, ``-S`` skips the site
    module (and every .pth file: a few ms of the cold start); its site-packages are passed
    explicitly.  Another interpreter keeps its own site setup."""
    paths = _import_paths(extra_modules)
    flags = ["-I", "-B"]
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        flags.append("-S")
        paths += [p for p in site.getsitepackages() if os.path.isdir(p)]
    return [python, *flags, "-c", _BOOT, json.dumps(list(dict.fromkeys(paths)))]


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
    """One running worker and the JSON-lines channel to it."""

    def __init__(self, *, python: str, init: dict[str, Any], cwd: str) -> None:
        self.nonce = secrets.token_hex(16)
        self._init = {"op": "init", "nonce": self.nonce, **init}
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by kill()
        #: The whole environment the worker starts with (no secret of the host's).
        self.env = _worker_env()
        self._proc = subprocess.Popen(
            _command(python, init.get("extra_modules", ())),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, cwd=cwd, env=self.env,
            start_new_session=True, close_fds=True,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._wfd = self._proc.stdin.fileno()
        self._rfd = self._proc.stdout.fileno()
        os.set_blocking(self._wfd, False)
        os.set_blocking(self._rfd, False)
        self._buffer = bytearray()
        self._next_id = 0
        self._finalizer = weakref.finalize(self, _kill, self._proc)
        self.pid = self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    # --- lifecycle -------------------------------------------------------------------------

    async def handshake(self, timeout: float) -> dict[str, Any]:
        started = time.perf_counter()
        await self._send(self._init)
        message = await self._recv(asyncio.get_running_loop().time() + timeout)
        if message.get("op") != "ready":
            raise ProtocolError(f"expected 'ready', got {message.get('op')!r}")
        log.info("worker_started", pid=self.pid, startup_ms=round((time.perf_counter() - started) * 1000, 1))
        return message

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

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    def stderr_tail(self, limit: int = 2000) -> str:
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - limit))
            return self._stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    # --- requests --------------------------------------------------------------------------

    async def request(self, op: str, payload: dict[str, Any], *, timeout: float,
                      on_callback: Callback) -> dict[str, Any]:
        """Send one request and wait for its ``done``, serving callbacks meanwhile.

        ``timeout`` bounds the whole request, time spent in callbacks (sub-LLM
        calls made by the host) included, as in every environment: a callback
        still running at the deadline is cancelled.  Raises
        :class:`WorkerTimeout`, :class:`WorkerDied` or :class:`ProtocolError`.
        """
        loop = asyncio.get_running_loop()
        self._next_id += 1
        rid = self._next_id
        await self._send({"id": rid, "op": op, **payload})
        deadline = loop.time() + timeout
        while True:
            message = await self._recv(deadline)
            if message.get("id") != rid:
                raise ProtocolError(f"answer to request {message.get('id')!r} while waiting for {rid}")
            kind = message.get("op")
            if kind == "done":
                return message
            if kind in ("llm_query", "llm_query_batched"):
                try:
                    reply = await asyncio.wait_for(on_callback(kind, message), max(deadline - loop.time(), 0.0))
                except asyncio.TimeoutError:
                    raise WorkerTimeout() from None
                await self._send({"id": rid, "op": "reply", "seq": message.get("seq"), **reply})
                continue
            raise ProtocolError(f"unexpected message {kind!r}")

    async def _send(self, message: dict[str, Any]) -> None:
        data = memoryview((json.dumps(message) + "\n").encode("ascii"))
        loop = asyncio.get_running_loop()
        while data:
            try:
                written = os.write(self._wfd, data)
            except BlockingIOError:
                await self._wait(loop, self._wfd, writer=True, deadline=None)
                continue
            except (BrokenPipeError, ValueError, OSError):
                raise WorkerDied(self._wait_exit(), self.stderr_tail()) from None
            data = data[written:]

    async def _recv(self, deadline: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        while True:
            end = self._buffer.find(b"\n")
            if end > MAX_FRAME_BYTES or (end < 0 and len(self._buffer) > MAX_FRAME_BYTES):
                raise ProtocolError(f"a message from the worker is larger than {MAX_FRAME_BYTES >> 20} MiB")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[:end + 1]
                return self._parse(line)
            try:
                chunk = os.read(self._rfd, 1 << 20)
            except BlockingIOError:
                chunk = None
            except (ValueError, OSError):
                chunk = b""
            if chunk == b"":
                raise WorkerDied(self._wait_exit(), self.stderr_tail())
            if chunk:
                self._buffer += chunk
                continue
            if not await self._wait(loop, self._rfd, writer=False, deadline=deadline):
                raise WorkerTimeout()

    def _parse(self, line: bytes) -> dict[str, Any]:
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            raise ProtocolError("the worker sent a line that is not JSON (or nested too deeply)") from None
        if not isinstance(message, dict) or message.get("nonce") != self.nonce:
            raise ProtocolError("the worker sent a message without this session's nonce")
        return message

    @staticmethod
    async def _wait(loop: asyncio.AbstractEventLoop, fd: int, *, writer: bool, deadline: float | None) -> bool:
        """Wait until ``fd`` is ready; False when ``deadline`` (loop time) passed first."""
        future: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not future.done():
                future.set_result(None)

        add, remove = (loop.add_writer, loop.remove_writer) if writer else (loop.add_reader, loop.remove_reader)
        add(fd, ready)
        handle = None
        if deadline is not None:
            handle = loop.call_at(deadline, lambda: future.done() or future.set_result(None))
        try:
            await future
        finally:
            remove(fd)
            if handle is not None:
                handle.cancel()
        return deadline is None or loop.time() < deadline

    def _wait_exit(self) -> int | None:
        try:
            return self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return None


def default_python() -> str:
    return sys.executable
