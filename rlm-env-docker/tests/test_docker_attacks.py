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
    limit = "import resource\nresource.getrlimit(resource.RLIMIT_AS)"
    before = ok(env, limit).value
    result = run(env.execute("import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))"))
    assert result.error is not None, result
    assert ok(env, limit).value == before  # the limit really was not raised
    # setuid binaries gain nothing under no-new-privileges (and no capabilities)
    code = ("import subprocess\n"
            "r = subprocess.run(['su', '-c', 'id -u', 'root'], input=b'', capture_output=True, timeout=10)\n"
            "r.returncode, r.stdout")
    result = run(env.execute(code))
    assert result.error is not None or "b'0\\n'" not in (result.value or ""), result
    alive(env)


def test_container_escape_basics(env: DockerEnvironment, shared_dir: dict[str, Path]) -> None:
    for sock in ("/var/run/docker.sock", "/run/docker.sock"):
        assert ok(env, f"import os\nos.path.exists({sock!r})").value == "False"
    # PID 1 is the supervisor (rlm_repl.supervisor), the REPL its child; /proc/self/root is the container's root
    assert ok(env, "import os\nos.getpid() != 1 and os.getppid() == 1").value == "True"
    assert ok(env, "sorted(os.listdir('/proc/self/root')) == sorted(os.listdir('/'))").value == "True"
    # only the container's processes are visible: the supervisor and the REPL
    assert ok(env, "sorted(p for p in os.listdir('/proc') if p.isdigit()) == sorted(['1', str(os.getpid())])"
              ).value == "True"
    # '..' past the container's root stays in it: the host's files (the planted secret) are not there
    escape = f"open('/proc/self/root/../../..' + {str(shared_dir['secret'])!r}).read()"
    result = run(env.execute(escape))
    assert result.error is not None and "TOPSECRET" not in (result.value or "") + (result.output or ""), result
    assert ok(env, "import os\nos.listdir('/proc/self/root/../../..') == os.listdir('/')").value == "True"
    mounts = ok(env, "open('/proc/mounts').read()").value or ""
    root_line = next(line for line in mounts.split("\\n") if line.split(" ")[1:2] == ["/"])
    assert " ro," in root_line or root_line.split(" ")[3].startswith("ro"), root_line
    # a canary in /tmp: a mount over /tmp would hide it
    ok(env, "open('/tmp/mount_canary', 'w').write('still here')")
    fails(env, "import ctypes\nlibc = ctypes.CDLL(None)\n"
               "r = libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)\nassert r == 0, 'mount refused'",
          "mount refused")
    assert ok(env, "open('/tmp/mount_canary').read()").value == repr("still here")
    assert ok(env, "open('/proc/mounts').read()").value == mounts  # nothing was mounted


# --- network ------------------------------------------------------------------------------------

def _host_addresses() -> list[str]:
    """This host's IPv4 addresses a container on a bridge network could reach (the docker0 gateway
    among them), and loopback."""
    addresses = {"127.0.0.1", "172.17.0.1"}
    try:
        addresses.update(info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET))
    except OSError:
        pass
    return sorted(addresses)


def test_no_network(env: DockerEnvironment) -> None:
    # a listener planted on the host, on every interface: no connection may ever reach it
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        for host in _host_addresses() + ["host.docker.internal"]:
            code = (f"import socket\ntry:\n    socket.create_connection(({host!r}, {port}), timeout=3)\n"
                    "    reached = 'connected'\nexcept OSError:\n    reached = 'refused'\nreached")
            assert ok(env, code, timeout=15).value == repr("refused"), host
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    finally:
        listener.close()
    # nothing outside either, and no name resolution
    for target in (("1.1.1.1", 53), ("8.8.8.8", 443)):
        code = (f"import socket\ntry:\n    socket.create_connection({target!r}, timeout=3)\n    reached = 'connected'\n"
                "except OSError:\n    reached = 'refused'\nreached")
        assert ok(env, code, timeout=15).value == repr("refused"), target
    resolve = ("import socket\ntry:\n    resolved = repr(socket.getaddrinfo('example.com', 80))\n"
               "except OSError:\n    resolved = 'unresolved'\nresolved")
    assert ok(env, resolve).value == repr("unresolved")
    interfaces = ok(env, "import os\nsorted(os.listdir('/sys/class/net'))").value
    assert interfaces == "['lo']"
    alive(env)


# --- filesystem ---------------------------------------------------------------------------------

def test_root_filesystem_is_read_only(env: DockerEnvironment, shared_dir: dict[str, Path]) -> None:
    for path in ("/etc/pwned", "/pwned", "/usr/lib/pwned.py", "/var/pwned"):
        fails(env, f"open({path!r}, 'w').write('x')", "OSError", "PermissionError", "Read-only")
    run(env.execute(f"open({str(shared_dir['allowed'] / 'pwned')!r}, 'w').write('x')"))
    run(env.execute(f"open({str(shared_dir['allowed'] / 'data.txt')!r}, 'w').write('overwritten')"))
    assert not (shared_dir["allowed"] / "pwned").exists()  # the bound directory is read-only: checked on the host
    assert (shared_dir["allowed"] / "data.txt").read_text() == "line 1\nline 2\n"
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
    for _ in range(40):  # the supervisor kills the forked copies after the cell; the REPL reaps them
        if ok(env, count).value == "2":
            break
        run(asyncio.sleep(0.25))
    assert ok(env, count).value == "2"  # the supervisor (PID 1) and the REPL


def test_thread_bomb_is_contained(env: DockerEnvironment) -> None:
    code = ("import threading, time\nthreads = []\n"
            "while True:\n"
            "    t = threading.Thread(target=time.sleep, args=(5,), daemon=True)\n"
            "    t.start()\n"
            "    threads.append(t)")
    tasks = "import os\nlen(os.listdir('/proc/self/task'))"
    before = ok(env, tasks).value
    result = run(env.execute(code, timeout=15))
    assert result.error is not None, result  # the loop was stopped (threads refused, or its deadline)
    ok(env, "threads = None")
    # none of its threads outlived the cell (they are killed, or the session restarted)
    assert ok(env, tasks).value == before
    alive(env)


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


# --- nothing a cell starts outlives it (rlm_repl.supervisor, the container's PID 1) ---------------

@pytest.fixture
def writable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A host directory the sandbox user may write: where the attacks plant their canaries."""
    root = tmp_path_factory.mktemp("docker-writable")
    for d in (root.parent, root):
        os.chmod(d, 0o755)
    out = root / "out"
    out.mkdir()
    os.chmod(out, 0o777)
    return out


def writable_session(docker_settings: Any, writable: Path) -> DockerEnvironment:
    return DockerEnvironment(settings=docker_settings(
        allowed_paths=(str(writable),), writable_paths=(str(writable),), workdir=str(writable)))


#: Run by subprocess.Popen from a cell: waits until the cell is over, then writes its canary,
#: tries the host's channel (PID 1's fds) and stays alive.
LATE_PROCESS = (
    "import os, sys, time\n"
    "out = sys.argv[1]\n"
    "time.sleep(0.6)\n"
    "for path in ('/proc/1/fd/1', '/proc/1/fd/0'):\n"
    "    try:\n"
    "        os.write(os.open(path, os.O_WRONLY), b'{\"op\": \"done\", \"output\": \"forged\"}\\n')\n"
    "        open(os.path.join(out, 'reached-host-channel'), 'w').write(path)\n"
    "    except OSError:\n"
    "        pass\n"
    "open(os.path.join(out, 'popen'), 'w').write('late')\n"
    "while True:\n"
    "    time.sleep(0.05)\n"
)

#: Lists the pids in ``strays`` still running (zombies excluded: they wait for their parent to reap them).
RUNNING = ("import os\n"
           "def running(pid):\n"
           "    try:\n"
           "        with open('/proc/%d/stat' % pid) as f:\n"
           "            return f.read().rsplit(')', 1)[1].split()[0] not in ('Z', 'X')\n"
           "    except OSError:\n"
           "        return False\n"
           "[p for p in strays if running(p)]")


def test_processes_started_by_a_cell_do_not_outlive_it(docker_settings: Any, writable: Path) -> None:
    """A forked copy of the cell, a double-forked daemon (reparented to PID 1) and a separate
    interpreter all wait for the cell to end before writing their canary (the forked copy also
    forges protocol lines into a copy of the REPL's channel): they are killed when the cell ends,
    nothing is written, and the next results are exact."""
    code = (
        "import gc, json, os, subprocess, sys, time\n"
        f"out = {str(writable)!r}\n"
        "server = next(o for o in gc.get_objects() if type(o).__name__ == 'Server' and hasattr(o, 'request_id'))\n"
        "channel = os.dup(server.channel.wfile.fileno())\n"
        "forged = lambda rid: (json.dumps({'nonce': server.channel.nonce, 'id': rid, 'op': 'done', 'output': '',\n"
        "                                  'value': \"'FORGED'\", 'error': None, 'truncated': False,\n"
        "                                  'final': None}) + '\\n').encode()\n"
        "rid = server.request_id\n"
        "forked = os.fork()\n"
        "if forked == 0:\n"
        "    time.sleep(0.6)\n"
        "    for candidate in (rid, rid + 1, 0, None):\n"
        "        os.write(channel, forged(candidate))\n"
        "    open(os.path.join(out, 'forked'), 'w').write('late')\n"
        "    os._exit(0)\n"
        "middle = os.fork()\n"
        "if middle == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(0.6)\n"
        "        open(os.path.join(out, 'daemon'), 'w').write('late')\n"
        "        os._exit(0)\n"
        "    os._exit(0)\n"
        "os.waitpid(middle, 0)\n"
        f"late = subprocess.Popen([sys.executable, '-c', {LATE_PROCESS!r}, out])\n"
        "os.close(channel)\n"
        "time.sleep(0.1)\n"
        "strays = sorted(int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, os.getpid()))\n"
        "strays")

    async def body() -> None:
        env = writable_session(docker_settings, writable)
        try:
            await env.start()
            first = await env.execute(code)
            assert first.error is None, first
            strays = [int(p) for p in (first.value or "").strip("[]").split(",") if p.strip()]
            assert len(strays) >= 3, first  # the forked copy, the daemon, the interpreter
            await asyncio.sleep(1.5)  # past the moment they would act
            assert sorted(p.name for p in writable.iterdir()) == [], "a process outlived its cell"
            assert (await env.execute(f"strays = {strays}\n" + RUNNING)).value == "[]"
            assert (await env.execute("6 * 7")).value == "42"  # no forged line was taken for this answer
            gone = ("gone = []\n"
                    "for p in strays:\n"
                    "    try:\n"
                    "        os.kill(p, 0)\n"
                    "    except ProcessLookupError:\n"
                    "        gone.append(p)\n"
                    "gone == strays and not any(os.path.exists('/proc/%d' % p) for p in strays)")
            assert (await env.execute(gone)).value == "True"  # killed and reaped: no zombies pile up
            await asyncio.sleep(0.3)
            assert sorted(p.name for p in writable.iterdir()) == []
        finally:
            await env.close()
    run(body())


def test_a_thread_started_by_a_cell_restarts_the_session(docker_settings: Any, writable: Path) -> None:
    """A thread still running when its cell ends: the session is restarted (said in the result's
    notice), the thread never acts, the variables defined before are gone, and the session works."""
    canary = writable / "thread"
    code = ("import threading, time\n"
            "def late():\n"
            "    time.sleep(0.5)\n"
            f"    open({str(canary)!r}, 'w').write('late')\n"
            "threading.Thread(target=late, daemon=True).start()\n"
            "'started'")

    async def body() -> None:
        env = writable_session(docker_settings, writable)
        try:
            await env.start()
            assert (await env.execute("before = 41\nbefore + 1")).value == "42"
            started = await env.execute(code)
            assert started.error is None and started.value == "'started'", started
            assert "session was restarted" in (started.notice or ""), started
            assert "thread" in (started.notice or "")
            await asyncio.sleep(1.0)
            assert not canary.exists(), "the thread outlived its cell"
            gone = await env.execute("before")
            assert gone.error is not None and "NameError" in gone.error and gone.notice is None, gone
            again = await env.execute("before = 1\nbefore + 1")
            assert again.value == "2" and again.notice is None, again
            # a thread the cell joins is fine: no restart
            joined = await env.execute("import threading\nbox = []\n"
                                       "t = threading.Thread(target=box.append, args=(7,))\n"
                                       "t.start()\nt.join()\nbox[0] * before")
            assert joined.value == "7" and joined.notice is None, joined
            assert (await env.execute("before")).value == "1"
        finally:
            await env.close()
    run(body())


def test_the_host_channel_is_out_of_reach(env: DockerEnvironment) -> None:
    """The REPL's process holds copies of its own fds, but the host's channel is PID 1's (the
    supervisor, non-dumpable): /proc/1/fd/*, /proc/1/mem, pidfd_getfd and ptrace all fail, so a
    reply forged there never reaches the host; the answers stay exact."""
    code = (
        "import ctypes, gc, json, os\n"
        "server = next(o for o in gc.get_objects() if type(o).__name__ == 'Server' and hasattr(o, 'request_id'))\n"
        "forged = (json.dumps({'nonce': server.channel.nonce, 'id': server.request_id, 'op': 'done', 'output': '',\n"
        "                      'value': \"'FORGED'\", 'error': None, 'truncated': False, 'final': None})\n"
        "          + '\\n').encode()\n"
        "copies = []\n"
        "for name in os.listdir('/proc/self/fd'):\n"
        "    try:\n"
        "        copies.append(os.dup(int(name)))\n"
        "    except OSError:\n"
        "        pass\n"
        "reached = []\n"
        "def hit(how, fd):\n"
        "    reached.append(how)\n"
        "    try:\n"
        "        os.write(fd, forged)\n"
        "    except OSError:\n"
        "        pass\n"
        "paths = ['/proc/1/fd/0', '/proc/1/fd/1', '/proc/1/task/1/fd/1', '/proc/1/mem', '/proc/1/environ']\n"
        "try:\n"
        "    paths += ['/proc/1/fd/' + n for n in os.listdir('/proc/1/fd')]\n"
        "except OSError:\n"
        "    pass\n"
        "for path in paths:\n"
        "    try:\n"
        "        hit(path, os.open(path, os.O_RDWR if path.endswith('mem') else os.O_WRONLY))\n"
        "    except OSError:\n"
        "        pass\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "try:\n"
        "    pidfd = os.pidfd_open(1)\n"
        "except (OSError, AttributeError):\n"
        "    pidfd = -1\n"
        "if pidfd >= 0:\n"
        "    for target in (0, 1):\n"
        "        fd = libc.syscall(438, pidfd, target, 0)  # pidfd_getfd\n"
        "        if fd >= 0:\n"
        "            hit('pidfd_getfd %d' % target, fd)\n"
        "if libc.ptrace(16, 1, None, None) == 0:  # PTRACE_ATTACH\n"
        "    reached.append('ptrace')\n"
        "for fd in copies:\n"
        "    os.close(fd)\n"
        "'honest'")
    result = ok(env, code)
    assert result.value == "'honest'", result
    assert ok(env, "reached").value == "[]"
    assert ok(env, "sum(range(10))").value == "45"
    assert ok(env, "import os\nos.getppid()").value == "1"
    alive(env)
