"""The llama.cpp server as a child process: start, health, reuse, stop.

llama.cpp's own C++ server (:mod:`rlm_backend_local.serve`, through the
prebuilt ``xllamacpp`` wheels) runs in its own process group, bound to
127.0.0.1 on a free port, with a random API key (other local users cannot
use it).  Its output goes to a log file, whose tail is shown when it fails
to start.  One server per (model, settings) is shared by every backend in
the process; it is stopped at exit (atexit: SIGTERM to the group, then
SIGKILL), and on Linux the kernel kills it if this process dies without
running atexit (``PR_SET_PDEATHSIG``, set in the child before exec).

The PDEATHSIG fires when the *thread* that forked the child ends, so each
server is forked by a dedicated thread that lives as long as the server
(it also reaps it).  Why a child process rather than llama.cpp in-process:
a crash or abort inside llama.cpp cannot take the run down, the model's
memory is returned at once when it stops, inference never holds the GIL of
the orchestrator, and the backend speaks the same OpenAI protocol as to any
llama.cpp server (``api_base`` can point at one started by hand).
"""

from __future__ import annotations

import atexit
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attrs import define, field
from rlm.errors import BackendError
from rlm.logging import get_logger

log = get_logger(__name__)

#: The Python package that runs the server (prebuilt wheels: nothing is compiled).
RUNTIME = "xllamacpp"
#: The version tested with (``[model]`` extra, scripts/install-local-model.sh).
RUNTIME_VERSION = "2026.10.11549"
SERVER_MODULES = (RUNTIME,)
#: The server script, run by path so that the server's Python needs only xllamacpp (not rlm).
SERVE_SCRIPT = str(Path(__file__).with_name("serve.py"))
TAIL_LINES = 25


def install_command(python: str | None = None) -> str:
    """The exact command that installs the server runtime (a prebuilt ~34 MB wheel)."""
    py = python or sys.executable
    return f"{py} -m pip install '{RUNTIME}=={RUNTIME_VERSION}'"


def permanent(error: BackendError) -> BackendError:
    """Mark an error as one retrying cannot fix."""
    error.permanent = True
    return error


def missing_server_modules() -> list[str]:
    """The ``[server]`` modules not importable by this Python (found without importing them)."""
    import importlib.util

    missing = []
    for name in SERVER_MODULES:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except (ImportError, ValueError):
            missing.append(name)
    return missing


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@define(frozen=True, kw_only=True)
class ServerSpec:
    """What to run: the same spec shares one server within the process."""

    model_path: str
    alias: str
    n_ctx: int
    n_threads: int
    python: str = field(factory=lambda: sys.executable)
    host: str = "127.0.0.1"
    extra_args: tuple[str, ...] = ()
    #: replaces the whole command (tests start fake servers); ``{port}``/``{host}``/``{api_key}`` are filled in
    command: tuple[str, ...] | None = None

    def argv(self, port: int, api_key: str) -> list[str]:
        """The server's command line (:mod:`rlm_backend_local.serve`).  Every value is attached to its
        flag (``--flag=value``): a value that begins with ``-`` (a key, a path) is never read as an option."""
        if self.command is not None:
            return [part.format(port=port, host=self.host, api_key=api_key) for part in self.command]
        options = {
            "model": self.model_path,
            "alias": self.alias,
            "host": self.host,
            "port": port,
            "n-ctx": self.n_ctx,
            "n-threads": self.n_threads,
        }
        return [self.python, SERVE_SCRIPT, *(f"--{name}={value}" for name, value in options.items()),
                *(f"--set={arg}" for arg in self.extra_args)]


#: The environment variable that carries the server's API key to it (never its command line, which
#: every local user can read in /proc).
API_KEY_ENV = "RLM_LOCAL_SERVER_KEY"


def new_api_key() -> str:
    """A random key for the server (only this process can use it).

    Hex, so it never begins with ``-``; :meth:`ServerSpec.argv` does not rely on that (``--api_key=<key>``).
    """
    return secrets.token_hex(24)


def _prctl() -> Any:
    """libc's prctl, resolved in the parent (the child must not load libraries between fork and exec)."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: atexit still stops the server
        return None


def _die_with_parent(parent_pid: int, prctl: Any) -> None:  # runs in the child between fork and exec
    if prctl is not None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: the kernel kills us when the forking thread dies
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


class LlamaServer:
    """One llama.cpp server process (started lazily, restarted if it died)."""

    def __init__(self, spec: ServerSpec, *, startup_timeout: float = 120.0) -> None:
        self.spec = spec
        self.startup_timeout = startup_timeout
        self.api_key = new_api_key()
        self.port: int | None = None
        self.startup_s: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._lock = threading.Lock()

    # --- state ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server is not started")
        return f"http://{self.spec.host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = TAIL_LINES) -> str:
        """The last lines the server printed (its stderr and stdout)."""
        if self._log_path is None:
            return ""
        try:
            text = self._log_path.read_bytes()[-32_768:].decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(condense(text.strip().splitlines())[-lines:])

    # --- start ---------------------------------------------------------------------------------

    def ensure_started(self) -> str:
        """Start the server if it is not running and wait until it answers; returns its base URL.

        Blocking (call it in a worker thread from async code).  Raises a
        permanent BackendError with the server's output when it exits or does
        not answer within ``startup_timeout``.
        """
        with self._lock:
            if self.alive() and self.port is not None:
                return self.base_url
            if self._proc is not None:  # it died since the last call
                log.warning("local_server_died", returncode=self._proc.returncode, tail=self.log_tail(5))
                self._cleanup()
            return self._start()

    def _start(self) -> str:
        started = time.monotonic()
        self.port = free_port(self.spec.host)
        fd, log_name = tempfile.mkstemp(prefix="rlm-llama-server-", suffix=".log")
        self._log_path = Path(log_name)
        argv = self.spec.argv(self.port, self.api_key)
        self._proc = self._spawn(argv, fd, {API_KEY_ENV: self.api_key})
        log.info("local_server_starting", pid=self._proc.pid, port=self.port, model=self.spec.model_path,
                 n_ctx=self.spec.n_ctx, n_threads=self.spec.n_threads)
        _SERVERS.add(self)
        deadline = started + self.startup_timeout
        while True:
            if self._proc.poll() is not None:
                tail = self.log_tail()
                code = self._proc.returncode
                self._cleanup()
                raise permanent(BackendError(
                    with_tail(f"the local llama.cpp server exited with code {code} while starting", tail),
                    fix=_start_fix(tail),
                ))
            if self._healthy():
                break
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise permanent(BackendError(
                    with_tail(f"the local llama.cpp server did not answer within {self.startup_timeout:g} s", tail),
                    fix="raise [plugins.backend-local] startup_timeout, or check the model file",
                ))
            time.sleep(0.05)
        self.startup_s = round(time.monotonic() - started, 3)
        log.info("local_server_started", pid=self._proc.pid, port=self.port, startup_s=self.startup_s,
                 model=self.spec.alias)
        return self.base_url

    def _spawn(self, argv: Sequence[str], log_fd: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Fork the server from a thread that lives (and reaps it) as long as the server does."""
        box: dict[str, object] = {}
        ready = threading.Event()
        parent = os.getpid()
        prctl = _prctl()

        def owner() -> None:
            try:
                proc = subprocess.Popen(
                    list(argv), stdin=subprocess.DEVNULL, stdout=log_fd, stderr=subprocess.STDOUT,
                    start_new_session=True, close_fds=True, preexec_fn=lambda: _die_with_parent(parent, prctl),  # noqa: PLW1509 - no locks taken
                    env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                )
            except BaseException as exc:  # noqa: BLE001 - reported to the caller
                box["error"] = exc
                ready.set()
                return
            finally:
                os.close(log_fd)
            box["proc"] = proc
            ready.set()
            proc.wait()

        threading.Thread(target=owner, name="rlm-llama-server", daemon=True).start()
        ready.wait()
        if "error" in box:
            error = box["error"]
            raise permanent(BackendError(
                f"cannot start the local llama.cpp server ({argv[0]}): {error}",
                fix=f"set [plugins.backend-local] python to a Python with {RUNTIME} installed",
            ))
        return box["proc"]  # type: ignore[return-value]

    def _healthy(self) -> bool:
        request = urllib.request.Request(f"{self.base_url}/models",
                                         headers={"Authorization": f"Bearer {self.api_key}"})
        try:
            with urllib.request.urlopen(request, timeout=2.0) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    # --- stop ----------------------------------------------------------------------------------

    def stop(self, grace: float = 3.0) -> None:
        """Stop the server's process group (SIGTERM, then SIGKILL after ``grace`` seconds).  Idempotent."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
            log.info("local_server_stopped", pid=proc.pid)
        if proc is not None:  # whatever the server left in its group goes too
            _signal_group(proc, signal.SIGKILL)
        self._cleanup()

    def _cleanup(self) -> None:
        self._proc = None
        self.port = None
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None
        _SERVERS.discard(self)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # start_new_session: the group id is the server's pid
    except (ProcessLookupError, PermissionError):
        pass


def condense(lines: list[str]) -> list[str]:
    """Server output without Python traceback frames: the exception line says what went wrong."""
    out: list[str] = []
    in_traceback = False
    for line in lines:
        if line.startswith("Traceback (most recent call last):"):
            in_traceback = True
            continue
        if in_traceback and (not line.strip() or line[:1].isspace()):
            continue
        in_traceback = False
        out.append(line)
    return out


def with_tail(head: str, tail: str) -> str:
    """An error message quoting the server's last output lines (the fix follows on the last line)."""
    if not tail:
        return head
    quoted = "\n".join(f"  | {line}" for line in tail.splitlines())
    return f"{head}; its last output:\n{quoted}\nwhat to do"


def _start_fix(tail: str) -> str:
    if "No module named" in tail:
        return f"install the server runtime: {install_command()}"
    if "server parameter" in tail:  # serve.py: an unknown name or a bad value in --set
        return "fix [plugins.backend-local] server_args (NAME=VALUE, llama.cpp server parameters)"
    if "Failed to load model" in tail or "failed to load model" in tail or "gguf" in tail.lower():
        return ("the model file is unreadable or corrupt: delete it from the rlm cache (it is reassembled) "
                "or fix [plugins.backend-local] model_path")
    return "see the server output above; `rlm doctor` checks the local model setup"


# --- the process-wide registry -----------------------------------------------------------------

_SERVERS: set[LlamaServer] = set()
_SHARED: dict[tuple[ServerSpec, float], LlamaServer] = {}
_SHARED_LOCK = threading.Lock()


def shared_server(spec: ServerSpec, *, startup_timeout: float) -> LlamaServer:
    """The process's server for ``spec`` (created, not started)."""
    with _SHARED_LOCK:
        server = _SHARED.get((spec, startup_timeout))
        if server is None:
            server = _SHARED[(spec, startup_timeout)] = LlamaServer(spec, startup_timeout=startup_timeout)
        return server


def stop_all() -> None:
    """Stop every server this process started (registered with atexit)."""
    for server in list(_SERVERS):
        try:
            server.stop(grace=2.0)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(stop_all)
