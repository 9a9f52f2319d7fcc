"""The server child process: its command line, health wait, reuse, clear start failures (no hang), no orphans.

Most tests run tests/fake_llama_server.py in place of the server (``ServerSpec.command``); test_serve.py
runs the real command line (serve.py with a stand-in xllamacpp)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from rlm.errors import BackendError
from rlm_backend_local.server import (
    RUNTIME,
    RUNTIME_VERSION,
    SERVE_SCRIPT,
    SERVER_MODULES,
    LlamaServer,
    ServerSpec,
    install_command,
    shared_server,
    stop_all,
)

FAKE_SERVER = str(Path(__file__).parent / "fake_llama_server.py")


def _spec(command, **kw) -> ServerSpec:
    return ServerSpec(model_path="/models/m.gguf", alias="m", n_ctx=2048, n_threads=2, command=command, **kw)


def test_argv_of_the_real_server():
    spec = ServerSpec(model_path="/m.gguf", alias="qwen", n_ctx=8192, n_threads=2, python="/py",
                      extra_args=("n_batch=256", "ctx_shift=true"))
    assert spec.argv(1234, "key") == [
        "/py", SERVE_SCRIPT, "--model=/m.gguf", "--alias=qwen", "--host=127.0.0.1", "--port=1234",
        "--n-ctx=8192", "--n-threads=2", "--set=n_batch=256", "--set=ctx_shift=true",
    ]
    assert not any("key" in part for part in spec.argv(1234, "s3cret-key"))  # the key goes by environment
    assert Path(SERVE_SCRIPT).is_file() and Path(SERVE_SCRIPT).name == "serve.py"


def test_no_value_can_be_read_as_an_option():
    """Every value is attached to its flag: a key, a path or an alias beginning with '-' stays a value
    (serve.py's own parser reads them back: tests/test_serve.py)."""
    spec = ServerSpec(model_path="-m.gguf", alias="-qwen", n_ctx=8192, n_threads=2, python="/py")
    argv = spec.argv(1234, "-secret")
    assert "--model=-m.gguf" in argv and "--alias=-qwen" in argv and not any("-secret" in a for a in argv)
    flags = argv[2:]
    assert all(part.startswith("--") and "=" in part for part in flags), flags


def test_starts_waits_for_health_and_is_reused(fake_command, pid_alive):
    server = LlamaServer(_spec(fake_command("slow_start")), startup_timeout=20)
    try:
        url = server.ensure_started()
        assert url == f"http://127.0.0.1:{server.port}/v1"
        assert server.startup_s is not None and server.startup_s >= 0.5
        pid = server.pid
        assert server.ensure_started() == url and server.pid == pid  # reused, not restarted
        assert server._healthy()
    finally:
        server.stop()
    assert not pid_alive(pid)
    assert server.pid is None and server.log_tail() == ""


def test_a_server_that_exits_is_a_clear_error_with_its_output(fake_command):
    server = LlamaServer(_spec(fake_command("crash")), startup_timeout=30)
    started = time.monotonic()
    with pytest.raises(BackendError) as info:
        server.ensure_started()
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "exited with code 1 while starting" in message
    assert "Failed to load model from file" in message  # the server's own output
    assert "unreadable or corrupt" in message  # the fix
    assert info.value.permanent
    assert server.pid is None


def test_a_server_that_never_answers_times_out_and_is_killed(fake_command, pid_alive):
    server = LlamaServer(_spec(fake_command("hang")), startup_timeout=1.5)
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"(?s)did not answer within 1.5 s.*  \| fake llama server: mode hang\nwhat to do: raise"):
        server.ensure_started()
    assert time.monotonic() - started < 8
    assert server.pid is None


def test_a_missing_python_is_a_clear_error():
    spec = ServerSpec(model_path="/models/m.gguf", alias="m", n_ctx=512, n_threads=1, python="/nonexistent/python")
    server = LlamaServer(spec, startup_timeout=5)
    with pytest.raises(BackendError, match="cannot start the local llama.cpp server.*nonexistent") as info:
        server.ensure_started()
    assert "a Python with xllamacpp installed" in str(info.value)


def test_a_dead_server_is_restarted(fake_command, pid_alive):
    server = LlamaServer(_spec(fake_command()), startup_timeout=20)
    try:
        server.ensure_started()
        first = server.pid
        os.killpg(first, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while server.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not server.alive()
        server.ensure_started()
        assert server.pid != first and server.alive()
    finally:
        server.stop()


def test_shared_server_is_one_per_spec(fake_command):
    spec = _spec(fake_command())
    assert shared_server(spec, startup_timeout=5) is shared_server(spec, startup_timeout=5)
    assert shared_server(_spec(fake_command("hang")), startup_timeout=5) is not shared_server(spec, startup_timeout=5)


def test_condense_drops_traceback_frames():
    from rlm_backend_local.server import condense

    lines = ["llama_model_load: error", "Traceback (most recent call last):", '  File "x.py", line 1, in <module>',
             "    main()", "    ^^^^", "ValueError: Failed to load model from file: m.gguf", "after"]
    assert condense(lines) == ["llama_model_load: error", "ValueError: Failed to load model from file: m.gguf",
                               "after"]


def test_install_command_installs_the_prebuilt_runtime():
    assert (RUNTIME, RUNTIME_VERSION, SERVER_MODULES) == ("xllamacpp", "2026.10.11549", ("xllamacpp",))
    assert install_command("/venv/bin/python") == "/venv/bin/python -m pip install 'xllamacpp==2026.10.11549'"
    assert install_command().startswith(f"{sys.executable} -m pip install ")
    assert "CMAKE" not in install_command()  # nothing is compiled


def test_missing_server_modules_checks_xllamacpp_only(monkeypatch):
    import importlib.util

    from rlm_backend_local.server import missing_server_modules

    looked_up = []

    def find_spec(name):
        looked_up.append(name)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert missing_server_modules() == ["xllamacpp"] and looked_up == ["xllamacpp"]


def _run_owner(tmp_path, body: str) -> int:
    """Run a Python process that starts a fake server, prints its pid, then does ``body``; returns the pid."""
    script = tmp_path / "owner.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, sys, time
        from rlm_backend_local.server import LlamaServer, ServerSpec
        spec = ServerSpec(model_path="m", alias="m", n_ctx=512, n_threads=1,
                          command=({sys.executable!r}, {FAKE_SERVER!r}, "--port={{port}}", "--api_key={{api_key}}"))
        server = LlamaServer(spec, startup_timeout=20)
        server.ensure_started()
        print(server.pid, flush=True)
    """) + textwrap.dedent(body))
    proc = subprocess.run([sys.executable, str(script)], check=False, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip(), proc.stderr
    return int(proc.stdout.split()[0])


def _gone(pid: int, pid_alive, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_server_stops_when_the_process_exits(tmp_path, pid_alive):
    pid = _run_owner(tmp_path, "sys.exit(0)\n")
    assert _gone(pid, pid_alive), "atexit did not stop the server"


def test_server_dies_with_a_killed_parent(tmp_path, pid_alive):
    # SIGKILL skips atexit: the kernel's parent-death signal must take the server down
    pid = _run_owner(tmp_path, "os.kill(os.getpid(), signal.SIGKILL)\n")
    try:
        assert _gone(pid, pid_alive), "the server outlived its killed parent"
    finally:
        if pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)


def test_stop_all_is_idempotent():
    stop_all()
    stop_all()


def test_the_api_key_never_looks_like_an_option():
    spec = ServerSpec(model_path="m", alias="m", n_ctx=512, n_threads=1)
    keys = {LlamaServer(spec).api_key for _ in range(500)}
    assert len(keys) == 500 and not any(k.startswith("-") for k in keys)
