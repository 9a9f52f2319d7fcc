"""One running WASI CPython: its Store, stdio FIFOs, reader thread and guest thread.

The guest's ``_start`` runs in a daemon thread for the whole session.  Its
stdin and stdout are FIFOs (``WasiConfig`` has no stdin callback, and its
stdout callback gets 4 KiB pieces, one Python call each): requests go in
through :class:`~rlm_env_wasm.streams.FifoWriter` on the stdin FIFO, which the
host holds open read-write; a reader thread moves stdout, 64 KiB at a time,
into :class:`~rlm_env_wasm.streams.GuestOutput`.  stderr goes to a callback
that keeps its last 4 KiB for error messages.

:meth:`GuestInstance.kill` stops the guest: the engine's epoch is incremented
(the store's deadline is one tick, so running code traps at its next loop or
call), host-side sleeps end, and the stdin FIFO's writer is closed (a blocked
read sees end of file).  When ``_start`` returns or traps, the guest thread
drops the Store at once, which closes wasmtime's end of the stdout FIFO: the
reader sees end of file and so does the client.  No Store outlives its guest,
and :func:`release_all` stops every guest at interpreter exit (a Store with
output callbacks alive at exit makes wasmtime's runtime panic).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

from attrs import define
from rlm.errors import SandboxError
from rlm.logging import get_logger

from rlm_env_wasm.engine import import_wasmtime
from rlm_env_wasm.hostcalls import HostCalls
from rlm_env_wasm.streams import FifoWriter, GuestOutput

log = get_logger(__name__)

STDERR_TAIL_BYTES = 4096
EXIT_RELEASE_S = 10.0  # at interpreter exit, for all live guests together
READ_CHUNK = 1 << 16

_live: weakref.WeakSet[GuestInstance] = weakref.WeakSet()


@define(frozen=True, kw_only=True)
class Preopen:
    """A host directory visible to the guest at ``guest`` (read-only unless ``writable``)."""

    host: str
    guest: str
    writable: bool = False


@define(frozen=True, kw_only=True)
class Outcome:
    """How the guest's ``_start`` ended: ``exit`` (with ``code``), ``trap`` or ``error``."""

    kind: str
    code: int | None = None
    trap_code: str | None = None
    message: str = ""


class GuestInstance:
    """A WASI CPython instance running ``argv`` on its own thread."""

    def __init__(self, *, engine: Any, module: Any, argv: Sequence[str], env: Sequence[tuple[str, str]] = (),
                 preopens: Sequence[Preopen] = (), memory_limit_bytes: int, output_budget: int) -> None:
        self.engine = engine
        self.module = module
        self.argv = list(argv)
        self.env = list(env)
        self.preopens = list(preopens)
        self.memory_limit_bytes = memory_limit_bytes
        self.stop = threading.Event()
        self.finished = threading.Event()
        self.output = GuestOutput(budget=output_budget, on_overflow=self._interrupt)
        self.writer: FifoWriter | None = None
        self.outcome: Outcome | None = None
        self.kill_reason: str | None = None
        self.monotonic_origin_ns = 0
        self._stderr = bytearray()
        self._stderr_lock = threading.Lock()
        self._store: Any = None
        self._start_func: Any = None
        self._thread: threading.Thread | None = None
        self._reader: threading.Thread | None = None
        self._wfd: int | None = None
        self._fd_lock = threading.Lock()

    # --- start -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Create the Store and start ``_start`` on a thread (SandboxError when that fails)."""
        wasmtime = import_wasmtime()
        if not hasattr(os, "mkfifo"):
            raise SandboxError("the wasm environment needs POSIX named pipes (Linux or macOS)",
                               fix="use another environment on this platform (environment = \"local\")")
        fifo_dir = tempfile.mkdtemp(prefix="rlm-wasm-")
        rfd: int | None = None
        try:
            stdin_path, stdout_path = os.path.join(fifo_dir, "stdin"), os.path.join(fifo_dir, "stdout")
            os.mkfifo(stdin_path, 0o600)
            os.mkfifo(stdout_path, 0o600)
            # stdin read-write: wasmtime's read-only open does not block, and the guest sees end of
            # file only once we close it.  stdout read-only and non-blocking (no writer yet): the
            # write end is wasmtime's alone, so its closing (the Store dropped) ends our reads.
            self._wfd = os.open(stdin_path, os.O_RDWR | os.O_CLOEXEC)
            rfd = os.open(stdout_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            before = time.monotonic_ns()
            wasi = wasmtime.WasiConfig()  # the guest's monotonic clock starts here (wasmtime 50)
            self.monotonic_origin_ns = (before + time.monotonic_ns()) // 2
            wasi.argv = self.argv
            wasi.env = self.env
            wasi.stdin_file = stdin_path
            wasi.stdout_file = stdout_path
            wasi.stderr_custom = self._on_stderr
            for preopen in self.preopens:
                wasi.preopen_dir(preopen.host, preopen.guest, preopen.writable)
            os.set_blocking(rfd, True)
        except (OSError, wasmtime.WasmtimeError) as exc:
            self._close_fd()
            if rfd is not None:
                os.close(rfd)
            raise SandboxError(f"cannot set up the wasm guest's stdio or directories: {exc}",
                               fix="check that the temporary directory is writable and allowed_paths exist") from exc
        finally:
            shutil.rmtree(fifo_dir, ignore_errors=True)  # both FIFOs are open now: the names can go
        self.writer = FifoWriter(self._wfd, on_write=self.output.host_spoke)
        store = wasmtime.Store(self.engine)
        store.set_wasi(wasi)
        store.set_limits(memory_size=self.memory_limit_bytes)
        store.set_epoch_deadline(1)  # one increment of this session's engine stops the guest
        linker = wasmtime.Linker(self.engine)
        linker.define_wasi()
        HostCalls(self.stop, monotonic_origin_ns=self.monotonic_origin_ns).define(wasmtime, linker)
        try:
            instance = linker.instantiate(store, self.module)
        except wasmtime.WasmtimeError as exc:
            self._close_fd()
            del store
            os.close(rfd)
            raise SandboxError(f"cannot instantiate the wasm interpreter: {exc}",
                               fix="raise memory_limit_mb (the interpreter needs at least 16 MiB)") from exc
        self._store = store
        self._start_func = instance.exports(store)["_start"]
        self._reader = threading.Thread(target=self._read_stdout, args=(rfd,), name="rlm-wasm-stdout",
                                        daemon=True)
        self._thread = threading.Thread(target=self._run, name="rlm-wasm-guest", daemon=True)
        _live.add(self)
        self._reader.start()
        self._thread.start()

    def _run(self) -> None:
        wasmtime = import_wasmtime()
        try:
            self._start_func(self._store)
            self.outcome = Outcome(kind="exit", code=0)
        except wasmtime.ExitTrap as exc:
            self.outcome = Outcome(kind="exit", code=exc.code)
        except wasmtime.Trap as exc:
            code = exc.trap_code
            self.outcome = Outcome(kind="trap", trap_code=code.name if code is not None else None,
                                   message=exc.message)
        except BaseException as exc:  # noqa: BLE001 - WasmtimeError or a bug: reported, never raised here
            self.outcome = Outcome(kind="error", message=f"{type(exc).__name__}: {exc}")
        finally:
            # delete the Store now: wasmtime closes its FIFO ends (the reader sees end of file)
            store, self._store, self._start_func = self._store, None, None
            with contextlib.suppress(Exception):
                store.close()
            self.finished.set()
            if self.writer is not None:
                self.writer.abort()
            log.debug("wasm_guest_ended", outcome=str(self.outcome), reason=self.kill_reason)

    def _read_stdout(self, fd: int) -> None:
        try:
            while True:
                try:
                    data = os.read(fd, READ_CHUNK)
                except InterruptedError:
                    continue
                except OSError as exc:
                    log.warning("wasm_stdout_read_failed", error=str(exc))
                    break
                if not data:
                    break
                self.output.feed(data)
        finally:
            self.output.close()
            with contextlib.suppress(OSError):
                os.close(fd)

    # --- stop ------------------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._thread is not None and not self.finished.is_set()

    def kill(self, reason: str) -> None:
        """Stop the guest (idempotent; the first reason is kept).

        Call it from the host's side (the event loop's thread): it also closes the
        stdin FIFO's writer, which the :class:`FifoWriter` uses on that thread.
        """
        self._interrupt(reason)
        self._close_fd()

    def _interrupt(self, reason: str) -> None:
        # also the overflow handler, on the reader thread: the guest is writing (not reading
        # its stdin), so the epoch trap is enough; the stdin FIFO is closed from the host's side
        if self.kill_reason is None:
            self.kill_reason = reason
        self.stop.set()
        self.engine.increment_epoch()
        if self.writer is not None:
            self.writer.abort()

    def _close_fd(self) -> None:
        with self._fd_lock:
            fd, self._wfd = self._wfd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def release(self, timeout: float = 2.0) -> bool:
        """Kill and wait for both threads; False when the guest's thread did not end in time."""
        if self._thread is None:
            self._close_fd()
            return True
        self.kill(self.kill_reason or "released")
        if not self.finished.wait(timeout):
            log.warning("wasm_guest_thread_stuck", timeout=timeout)
            return False
        self._thread.join(timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        _live.discard(self)
        return True

    def cpu_time_s(self) -> float | None:
        """CPU time used by the guest's thread so far (None where the platform cannot tell).

        The guest's own ``time.process_time()`` is wrong under WASI (wasi-libc's ``times()``
        emulation), so the host measures instead.
        """
        thread = self._thread
        if thread is None or thread.ident is None or not hasattr(time, "pthread_getcpuclockid"):
            return None
        try:
            return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (OSError, ValueError, OverflowError):
            return None

    # --- diagnostics -----------------------------------------------------------------------------

    def _on_stderr(self, data: bytes) -> None:
        with self._stderr_lock:
            self._stderr += data
            if len(self._stderr) > STDERR_TAIL_BYTES:
                del self._stderr[:-STDERR_TAIL_BYTES]

    @property
    def stderr_tail(self) -> str:
        with self._stderr_lock:
            return self._stderr.decode("utf-8", "replace")

    def describe_end(self) -> str:
        """Why the guest is gone, in words (for errors)."""
        if self.kill_reason:
            return self.kill_reason
        outcome = self.outcome
        last = self.stderr_tail.strip().splitlines()
        detail = f" ({last[-1][:300]})" if last else ""
        if outcome is None:
            return "the wasm guest stopped answering"
        if outcome.kind == "exit":
            return f"the interpreter exited with status {outcome.code} (os._exit() or a fatal error){detail}"
        if outcome.trap_code == "STACK_OVERFLOW":
            return "the interpreter's call stack overflowed (recursion too deep inside C code)"
        if outcome.trap_code == "UNREACHABLE":
            return f"the interpreter aborted (a fatal error, e.g. out of memory){detail}"
        if outcome.kind == "trap":
            first = outcome.message.strip().splitlines()[0] if outcome.message.strip() else outcome.trap_code
            return f"the wasm guest trapped: {first}"
        return f"the wasm guest failed: {outcome.message}"


@atexit.register
def release_all() -> None:
    """Stop every live guest (its thread then drops its Store) before the interpreter exits.

    Every guest is told to stop first, then each is waited for under one shared deadline:
    on a loaded machine a trapped guest can take over a second to unwind, and a Store still
    alive when the interpreter finalizes makes wasmtime's runtime panic.
    """
    instances = list(_live)
    for instance in instances:
        with contextlib.suppress(Exception):
            instance.kill(instance.kill_reason or "released")
    deadline = time.monotonic() + EXIT_RELEASE_S
    for instance in instances:
        with contextlib.suppress(Exception):
            instance.release(timeout=max(0.1, deadline - time.monotonic()))
