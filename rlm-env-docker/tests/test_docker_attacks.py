"""Attacks on the docker sandbox: each fails safely, and the session still works (or restarts cleanly).

Most tests share one module-scoped session (driven from a fresh event loop per
test, which the environment supports); the ones that kill the container use
their own.  The session runs with the default hardening of
:mod:`rlm_env_docker.spec`.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rlm.types import REPLResult
from rlm_env_docker.session import DockerEnvironment

pytestmark = pytest.mark.usefixtures("docker_engine")


def run(coro: Any) -> Any:
    async def wrapper() -> Any:
        return await coro

    return asyncio.run(wrapper())


@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An allowed directory the sandbox user can read, and a secret outside it."""
    root = tmp_path_factory.mktemp("docker-attacks")
    for d in (root.parent, root):
        os.chmod(d, 0o755)
    allowed = root / "allowed"
    allowed.mkdir(mode=0o755)
    os.chmod(allowed, 0o755)
    (allowed / "data.txt").write_text("line 1\nline 2\n")
    os.chmod(allowed / "data.txt", 0o644)
    (root / "secret.txt").write_text("TOPSECRET")
    os.chmod(root / "secret.txt", 0o644)
    os.symlink(root / "secret.txt", allowed / "link_to_secret")
    return {"root": root, "allowed": allowed, "secret": root / "secret.txt"}


@pytest.fixture(scope="module")
def env(docker_engine: None, docker_settings: Any, shared_dir: dict[str, Path]) -> Iterator[DockerEnvironment]:
    environment = DockerEnvironment(settings=docker_settings(
        timeout=20.0, allowed_paths=(str(shared_dir["allowed"]),), workdir=str(shared_dir["allowed"]),
        options={"pids_limit": 32, "tmpfs_size": "32m", "interrupt_grace": 1.0}))
    run(environment.start())
    yield environment
    run(environment.close())


def ok(env: DockerEnvironment, code: str, **kwargs: Any) -> REPLResult:
    result = run(env.execute(code, **kwargs))
    assert result.error is None, f"unexpected error for {code!r}:\n{result.error}"
    return result


def fails(env: DockerEnvironment, code: str, *needles: str, **kwargs: Any) -> REPLResult:
    result = run(env.execute(code, **kwargs))
    assert result.error is not None, f"expected an error for {code!r}, got {result}"
    assert any(n in result.error for n in needles), result.error
    return result


def alive(env: DockerEnvironment) -> None:
    assert ok(env, "alive_check = 40 + 2\nalive_check").value == "42"


# --- identity and privileges --------------------------------------------------------------------

def test_code_runs_as_nobody_without_capabilities(env: DockerEnvironment) -> None:
    value = ok(env, "import os\nos.getuid(), os.getgid(), os.geteuid()").value
    assert value == "(65534, 65534, 65534)"
    status = ok(env, "open('/proc/self/status').read()").value or ""
    for field in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
        assert f"{field}:\\t0000000000000000" in status, status
    assert "NoNewPrivs:\\t1" in status


def test_privilege_escalation_fails(env: DockerEnvironment) -> None:
    fails(env, "import os\nos.setuid(0)", "PermissionError")
    fails(env, "import os\nos.setgid(0)", "PermissionError")
    fails(env, "import os\nos.chown('/tmp', 0, 0)", "PermissionError")
    fails(env, "import os\nos.chroot('/tmp')", "PermissionError")
    fails(env, "import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))", "ValueError", "Error")
    # setuid binaries gain nothing under no-new-privileges (and no capabilities)
    code = ("import subprocess\n"
            "r = subprocess.run(['su', '-c', 'id -u', 'root'], input=b'', capture_output=True, timeout=10)\n"
            "r.returncode, r.stdout")
    result = run(env.execute(code))
    assert result.error is not None or "b'0\\n'" not in (result.value or ""), result
    alive(env)


def test_container_escape_basics(env: DockerEnvironment) -> None:
    for sock in ("/var/run/docker.sock", "/run/docker.sock"):
        assert ok(env, f"import os\nos.path.exists({sock!r})").value == "False"
    # PID 1 is the REPL itself: /proc/1/root is the container's own root
    assert ok(env, "import os\nos.getpid()").value == "1"
    assert ok(env, "sorted(os.listdir('/proc/1/root')) == sorted(os.listdir('/'))").value == "True"
    # only the container's processes are visible
    assert ok(env, "[p for p in os.listdir('/proc') if p.isdigit()]").value == "['1']"
    fails(env, "import os\nos.listdir('/proc/1/root/../../..' + '/root')", "Error")
    mounts = ok(env, "open('/proc/mounts').read()").value or ""
    root_line = next(line for line in mounts.split("\\n") if line.split(" ")[1:2] == ["/"])
    assert " ro," in root_line or root_line.split(" ")[3].startswith("ro"), root_line
    fails(env, "import ctypes\nlibc = ctypes.CDLL(None)\n"
               "r = libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)\nassert r == 0, 'mount refused'",
          "mount refused", "Error")


# --- network ------------------------------------------------------------------------------------

def test_no_network(env: DockerEnvironment) -> None:
    fails(env, "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=3)", "OSError", "Error")
    fails(env, "import socket\nsocket.create_connection(('8.8.8.8', 443), timeout=3)", "OSError", "Error")
    fails(env, "import socket\nsocket.getaddrinfo('example.com', 80)", "gaierror", "Error")
    interfaces = ok(env, "import os\nsorted(os.listdir('/sys/class/net'))").value
    assert interfaces == "['lo']"
    alive(env)


# --- filesystem ---------------------------------------------------------------------------------

def test_root_filesystem_is_read_only(env: DockerEnvironment, shared_dir: dict[str, Path]) -> None:
    for path in ("/etc/pwned", "/pwned", "/usr/lib/pwned.py", "/var/pwned"):
        fails(env, f"open({path!r}, 'w').write('x')", "OSError", "PermissionError", "Read-only")
    fails(env, f"open({str(shared_dir['allowed'] / 'pwned')!r}, 'w').write('x')", "Read-only", "Error")
    assert not (shared_dir["allowed"] / "pwned").exists()
    assert ok(env, "open('/tmp/scratch.txt', 'w').write('fine')").value == "4"
    alive(env)


def test_tmp_is_noexec(env: DockerEnvironment) -> None:
    code = ("import os, subprocess\n"
            "open('/tmp/run.sh', 'w').write('#!/bin/sh\\necho ran\\n')\n"
            "os.chmod('/tmp/run.sh', 0o755)\n"
            "subprocess.run(['/tmp/run.sh'], capture_output=True)")
    fails(env, code, "PermissionError")


def test_filling_tmp_stops_at_its_size(env: DockerEnvironment) -> None:
    code = ("chunk = b'x' * (1024 * 1024)\n"
            "with open('/tmp/fill.bin', 'wb') as f:\n"
            "    for _ in range(200):\n"
            "        f.write(chunk)\n")
    fails(env, code, "No space left", "OSError")
    ok(env, "import os\nos.remove('/tmp/fill.bin')")
    alive(env)


def test_host_files_are_not_reachable(env: DockerEnvironment, shared_dir: dict[str, Path]) -> None:
    assert ok(env, "open('data.txt').read()").value == repr("line 1\nline 2\n")  # the workdir is bound in
    fails(env, f"open({str(shared_dir['secret'])!r}).read()", "FileNotFoundError")
    fails(env, "open('link_to_secret').read()", "FileNotFoundError")
    fails(env, "open('/work/main/pyproject.toml').read()", "FileNotFoundError")
    assert "TOPSECRET" not in (ok(env, "open('/etc/hostname').read()").value or "")


# --- resources ----------------------------------------------------------------------------------

def test_fork_bomb_is_contained(env: DockerEnvironment) -> None:
    result = run(env.execute("import os\nwhile True:\n    os.fork()", timeout=15))
    assert result.error is not None
    alive(env)
    count = "import os\nlen([p for p in os.listdir('/proc') if p.isdigit()])"
    for _ in range(40):  # the forked copies stop at their next failing fork; PID 1 reaps them
        if ok(env, count).value == "1":
            break
        run(asyncio.sleep(0.25))
    assert ok(env, count).value == "1"


def test_thread_bomb_is_contained(env: DockerEnvironment) -> None:
    code = ("import threading, time\nthreads = []\n"
            "while True:\n"
            "    t = threading.Thread(target=time.sleep, args=(5,), daemon=True)\n"
            "    t.start()\n"
            "    threads.append(t)")
    fails(env, code, "RuntimeError", "can't start new thread", "MemoryError", "Error", timeout=15)
    ok(env, "threads = None")


def test_memory_bomb_is_a_memory_error(env: DockerEnvironment) -> None:
    ok(env, "kept = 'still here'")
    fails(env, "blob = bytearray(8 * 1024 * 1024 * 1024)", "MemoryError")
    fails(env, "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 * 1024))", "MemoryError")
    ok(env, "chunks = None")
    assert ok(env, "kept").value == "'still here'"


def test_infinite_loop_is_interrupted_and_state_kept(env: DockerEnvironment) -> None:
    ok(env, "kept_loop = 1")
    result = run(env.execute("while True:\n    pass", timeout=1.0))
    assert result.error is not None and "timeout" in result.error.lower() and "kept" in result.error
    assert ok(env, "kept_loop").value == "1"


def test_long_sleep_is_interrupted(env: DockerEnvironment) -> None:
    result = run(env.execute("import time\nprint('going to sleep')\ntime.sleep(3600)", timeout=1.0))
    assert result.error is not None and "timeout" in result.error.lower()
    assert result.output == "going to sleep\n"
    assert result.execution_time_ms < 5000
    alive(env)


def test_output_flood_is_capped(env: DockerEnvironment) -> None:
    result = ok(env, "for i in range(200000):\n    print('flood line', i)")
    assert result.truncated and len(result.output) <= 10_000
    # raw writes to fd 1 go to /dev/null; fd 2 is read and only a short tail kept
    ok(env, "import os\nfor _ in range(2000):\n    os.write(1, b'{\"op\": \"done\"}\\n' * 100)")
    ok(env, "import os\nfor _ in range(200):\n    os.write(2, b'e' * 100000)")
    result = run(env.execute("while True:\n    print('x' * 1000)", timeout=1.5))
    assert result.error is not None and "timeout" in result.error.lower()
    assert len(result.output) <= 10_000
    alive(env)


# --- sessions that must restart -----------------------------------------------------------------

def test_code_ignoring_the_interrupt_restarts_the_session(docker_settings: Any) -> None:
    async def body() -> None:
        env = DockerEnvironment(settings=docker_settings(options={"interrupt_grace": 0.5}))
        try:
            await env.start()
            first = env.container_id
            await env.execute("lost = 1")
            code = ("import time\nwhile True:\n    try:\n        time.sleep(10)\n"
                    "    except BaseException:\n        pass")
            result = await env.execute(code, timeout=1.0)
            assert result.error is not None and "restarted" in result.error
            assert env.container_id not in (None, first)
            gone = await env.execute("lost")
            assert gone.error is not None and "NameError" in gone.error
            assert (await env.execute("1 + 1")).value == "2"
        finally:
            await env.close()
    run(body())


def test_killed_container_restarts_cleanly(docker_settings: Any) -> None:
    async def body() -> None:
        from rlm_env_docker import engine

        env = DockerEnvironment(settings=docker_settings())
        try:
            await env.start()
            await env.execute("lost = 1")
            first = env.container_id
            assert first is not None
            await asyncio.to_thread(engine.remove, first)  # killed from outside (OOM killer, docker kill)
            result = await env.execute("1")
            assert result.error is not None and "stopped" in result.error, result
            assert (await env.execute("1 + 1")).value == "2"
        finally:
            await env.close()
    run(body())


def test_no_host_socket_is_inherited(env: DockerEnvironment) -> None:
    code = ("import os\nkinds = set()\n"
            "for fd in os.listdir('/proc/self/fd'):\n"
            "    try:\n        kinds.add(os.readlink('/proc/self/fd/' + fd).split(':')[0])\n"
            "    except OSError:\n        pass\n"
            "sorted(kinds)")
    value = ok(env, code).value or ""
    assert "socket" not in value, value
    assert socket.gethostname() not in (ok(env, "import socket\nsocket.gethostname()").value or "")


def test_the_guest_exiting_restarts_the_session(env: DockerEnvironment) -> None:
    ok(env, "doomed = 1")
    for code in ("import os\nos._exit(3)", "import sys\nsys.stdout.flush()\nimport os\nos.close(0)\nos.abort()"):
        result = run(env.execute(code))
        assert result.error is not None and "stopped" in result.error and "restarted" in result.error, result
        alive(env)
    assert "NameError" in (run(env.execute("doomed")).error or "")
    result = run(env.execute("raise SystemExit(0)"))
    assert result.error is not None and "SystemExit" in result.error
    alive(env)
