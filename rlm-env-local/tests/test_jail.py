"""The OS jail holds even when the Python layer is bypassed.

Every attack runs through the real worker process with the RestrictedPython
layer switched off (raw Python: real builtins, ``import os``, ``ctypes``...),
with every OS layer on, then with each OS layer alone.  Each test plants a
real secret, canary file, listener or host process and asserts on it: the
secret never comes back, the canary file is never created, the listener never
accepts, the host process is still alive and its environment and memory never
appear in what the cell returns.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rlm.errors import SandboxError
from rlm_env_local import jail
from rlm_env_local.session import LocalEnvironment

pytestmark = pytest.mark.skipif(any(jail.probe(()).values()), reason="this machine lacks an OS layer of the jail")

HOST_CANARY = "sk-HOSTCANARY-5ee2c0de"
MEMORY_CANARY = "MEMCANARY-7a11f00d"
ALL_OS = frozenset(jail.OS_LAYERS)


class Listener:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


@pytest.fixture(scope="module")
def host_process() -> Iterator[dict[str, Any]]:
    """A process of the host (same user, outside the jail) with a key in its environment and a
    secret in its memory; prints the address of that secret."""
    code = (f"import sys, time\nsecret = b'{MEMORY_CANARY}' + bytes(16)\n"
            "print(id(secret), flush=True)\ntime.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            env={"PATH": os.defpath, "OPENAI_API_KEY": HOST_CANARY})
    assert proc.stdout is not None
    address = int(proc.stdout.readline())
    yield {"pid": proc.pid, "address": address, "proc": proc}
    proc.kill()
    proc.wait()


def _own_environ_head() -> bytes:
    with open(f"/proc/{os.getpid()}/environ", "rb") as f:
        return f.read(200)


def attacks(tree: dict[str, Any], listener: Listener, host: dict[str, Any]) -> dict[str, str]:
    """name -> raw Python that tries to do harm and prints whatever it got."""
    secret, pwned = tree["root"] / "secret.txt", tree["pwned"]
    hostpid, ppid = host["pid"], os.getpid()
    return {
        "read_secret_file": f"print(open({str(secret)!r}).read())",
        "read_secret_os_open": f"import os\nprint(os.read(os.open({str(secret)!r}, os.O_RDONLY), 100))",
        "read_secret_via_symlink": "print(open('link_to_secret').read())",
        "write_outside": f"open({str(pwned)!r}, 'w').write('x')",
        "write_outside_os_level": (
            f"import os\nfd = os.open({str(pwned)!r}, os.O_WRONLY | os.O_CREAT)\nos.write(fd, b'x')"),
        "run_shell_os_system": f"import os\nrc = os.system('touch {pwned}')\nif rc != 0:\n    raise OSError(rc)",
        "run_shell_subprocess": (
            f"import subprocess\nsubprocess.run(['/bin/sh', '-c', 'touch {pwned}'])"),
        "run_shell_execv": f"import os\nos.execv('/bin/sh', ['sh', '-c', 'touch {pwned}'])",
        "run_program_posix_spawn": f"import os\nos.posix_spawn('/usr/bin/touch', ['touch', '{pwned}'], {{}})",
        "fork_a_process": (
            "import os, time\npid = os.fork()\nif pid == 0:\n    time.sleep(30)\n    os._exit(0)\nprint('forked', pid)"),
        "tcp_to_host_listener": (
            f"import socket\ns = socket.create_connection(('127.0.0.1', {listener.port}), timeout=2)\n"
            "print('connected')"),
        "udp_and_unix_sockets": (
            "import socket\nfor fam, kind in ((socket.AF_INET, socket.SOCK_DGRAM), (socket.AF_UNIX, socket.SOCK_STREAM)):\n"
            "    socket.socket(fam, kind)\nprint('sockets')"),
        "read_host_environ": (
            f"for pid in ({hostpid}, {ppid}, 1):\n    print(open(f'/proc/{{pid}}/environ', 'rb').read())"),
        "read_host_memory_proc_mem": (
            f"f = open('/proc/{hostpid}/mem', 'rb')\nf.seek({host['address']})\nprint(f.read(200))"),
        "read_host_memory_process_vm_readv": (
            "import ctypes\nclass IOV(ctypes.Structure):\n"
            "    _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]\n"
            "buf = ctypes.create_string_buffer(200)\nlocal = IOV(ctypes.addressof(buf), 200)\n"
            f"remote = IOV({host['address']}, 200)\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            f"n = libc.process_vm_readv({hostpid}, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)\n"
            "if n < 0:\n    raise OSError(ctypes.get_errno(), 'process_vm_readv')\nprint(n, buf.raw)"),
        "signal_host_process": f"import os, signal\nos.kill({hostpid}, signal.SIGKILL)",
        "provider_keys_in_environ": "import os\nprint(dict(os.environ))\nprint(open('/proc/self/environ','rb').read())",
    }


def _worker_children(pid: int) -> list[int]:
    """Processes of the worker's process group other than the worker itself."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != pid:
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pid:  # pgrp
                found.append(int(entry))
    return found


def _run_attack(env: LocalEnvironment, name: str, code: str, tree: dict[str, Any], listener: Listener,
                host: dict[str, Any]) -> None:
    async def body() -> None:
        await env.start()
        worker_pid = env.pid
        assert worker_pid is not None
        before = listener.accepted
        marked = name != "provider_keys_in_environ"  # that one is meant to run to its end
        result = await env.execute(code + ("\nprint('REACHED-' + 'THE-END')" if marked else ""))
        if marked:
            assert "REACHED-THE-END" not in result.output, f"{name}: the harmful step did not fail"
        text = " ".join(str(t) for t in (result.output, result.value, result.error,
                                         result.final and result.final.value))
        assert tree["secret"] not in text, f"{name}: the secret file was read"
        assert not tree["pwned"].exists(), f"{name}: a file was written outside the writable paths"
        assert listener.accepted == before, f"{name}: a TCP connection reached the host"
        assert HOST_CANARY not in text, f"{name}: a provider key of the host was read"
        assert _own_environ_head()[:60].decode("utf-8", "replace") not in text, f"{name}: the host's environ leaked"
        assert MEMORY_CANARY not in text, f"{name}: the host's memory was read"
        assert host["proc"].poll() is None, f"{name}: a host process was signalled"
        assert _worker_children(worker_pid) == [], f"{name}: a process was started"
        alive = await env.execute("x = 6*7\nx")
        assert alive.error is None and alive.value == "42", f"session broken after {name}: {alive}"

    asyncio.run(body())


ATTACK_NAMES = sorted([
    "read_secret_file", "read_secret_os_open", "read_secret_via_symlink", "write_outside",
    "write_outside_os_level", "run_shell_os_system", "run_shell_subprocess", "run_shell_execv",
    "run_program_posix_spawn", "fork_a_process", "tcp_to_host_listener", "udp_and_unix_sockets",
    "read_host_environ", "read_host_memory_proc_mem", "read_host_memory_process_vm_readv",
    "signal_host_process", "provider_keys_in_environ"])


@pytest.fixture(scope="module")
def provider_key_in_host() -> Iterator[None]:
    previous = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = HOST_CANARY
    yield
    if previous is None:
        os.environ.pop("OPENAI_API_KEY", None)
    else:
        os.environ["OPENAI_API_KEY"] = previous


def _session(env_factory: Any, off: frozenset[str]) -> LocalEnvironment:
    return env_factory(timeout=10.0, memory_limit_mb=512, disable_layers=off)


@pytest.fixture(scope="module")
def raw_jail(env_factory: Any, provider_key_in_host: None) -> Iterator[LocalEnvironment]:
    """Raw Python (no RestrictedPython, no audit hook) inside every OS layer."""
    env = _session(env_factory, frozenset({"python-guards"}))
    yield env
    asyncio.run(env.close())


@pytest.fixture(scope="module")
def both_layers(env_factory: Any, provider_key_in_host: None) -> Iterator[LocalEnvironment]:
    env = _session(env_factory, frozenset())
    yield env
    asyncio.run(env.close())


def test_every_attack_is_listed(sandbox_tree, listener, host_process) -> None:
    assert sorted(attacks(sandbox_tree, listener, host_process)) == ATTACK_NAMES


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_raw_python_in_the_jail_cannot(name, raw_jail, sandbox_tree, listener, host_process) -> None:
    code = attacks(sandbox_tree, listener, host_process)[name]
    _run_attack(raw_jail, name, code, sandbox_tree, listener, host_process)


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_both_layers_on_the_attacks_fail(name, both_layers, sandbox_tree, listener, host_process) -> None:
    code = attacks(sandbox_tree, listener, host_process)[name]
    _run_attack(both_layers, name, code, sandbox_tree, listener, host_process)


def test_the_raw_switch_really_turns_the_python_layer_off(raw_jail) -> None:
    """Without this the raw tests above would prove nothing: raw code must get real os and ctypes."""
    async def body() -> None:
        result = await raw_jail.execute("import os, ctypes, sys\nprint(os.getpid(), sys.version_info[0])")
        assert result.error is None, result.error
        assert result.output.split() == [str(raw_jail.pid), "3"]
        assert raw_jail.layers["python-guards"].startswith("off")

    asyncio.run(body())


def test_every_layer_is_active_and_reported(both_layers) -> None:
    asyncio.run(both_layers.start())
    for layer in (*jail.OS_LAYERS, "python-guards", "rlimits", "scrubbed-env"):
        assert both_layers.layers[layer].startswith("active"), (layer, both_layers.layers[layer])
    assert "ABI" in both_layers.layers["landlock"]


# --- each OS layer alone (python guards off, the other OS layers off) --------------------------------

#: layer -> attacks that this layer stops on its own
ALONE = {
    "landlock": ["read_secret_file", "read_secret_os_open", "read_secret_via_symlink", "write_outside",
                 "write_outside_os_level", "run_shell_execv", "run_program_posix_spawn", "tcp_to_host_listener",
                 "read_host_environ", "read_host_memory_proc_mem", "signal_host_process"],
    "seccomp": ["run_shell_os_system", "run_shell_subprocess", "run_shell_execv", "run_program_posix_spawn",
                "fork_a_process", "tcp_to_host_listener", "udp_and_unix_sockets",
                "read_host_memory_process_vm_readv", "signal_host_process"],
    "namespaces": ["tcp_to_host_listener", "read_host_environ", "read_host_memory_proc_mem"],
}


@pytest.fixture(scope="module")
def alone_sessions(env_factory: Any, provider_key_in_host: None) -> Iterator[dict[str, LocalEnvironment]]:
    envs = {layer: _session(env_factory, frozenset({"python-guards"}) | (ALL_OS - {layer})) for layer in ALONE}
    yield envs
    for env in envs.values():
        asyncio.run(env.close())


@pytest.mark.parametrize(("layer", "name"), [(layer, name) for layer, names in ALONE.items() for name in names])
def test_each_os_layer_alone_stops(layer, name, alone_sessions, sandbox_tree, listener, host_process) -> None:
    env = alone_sessions[layer]
    code = attacks(sandbox_tree, listener, host_process)[name]
    _run_attack(env, name, code, sandbox_tree, listener, host_process)
    assert env.layers[layer].startswith("active")
    assert all(env.layers[o].startswith("off") for o in ALL_OS - {layer})


def test_scrubbed_environment_alone(env_factory, provider_key_in_host) -> None:
    """Every other layer off: the worker still starts without any variable of the host."""
    env = _session(env_factory, ALL_OS | {"python-guards"})

    async def body() -> None:
        result = await env.execute("import os\nprint(sorted(os.environ))")
        assert HOST_CANARY not in result.output
        assert "OPENAI_API_KEY" not in result.output
        await env.close()

    asyncio.run(body())


# --- platforms without a layer --------------------------------------------------------------------


def test_a_missing_layer_refuses_to_start(env_factory, monkeypatch) -> None:
    monkeypatch.setenv(jail.PRETEND_MISSING_ENV, "landlock")
    env = env_factory()

    async def body() -> None:
        with pytest.raises(SandboxError) as info:
            await env.execute("1")
        message = str(info.value)
        assert "landlock" in message and "unavailable" in message
        assert "require_os_sandbox = false" in (info.value.fix or "")
        assert env.pid is None  # nothing runs
        await env.close()

    asyncio.run(body())


def test_the_opt_out_runs_with_fewer_layers_and_says_so(sandbox_tree, monkeypatch) -> None:
    from rlm.environment import EnvironmentSettings
    from rlm_env_local.config import LocalEnvConfig

    monkeypatch.setenv(jail.PRETEND_MISSING_ENV, "seccomp")
    tree = sandbox_tree
    settings = EnvironmentSettings(allowed_paths=(str(tree["allowed"]),), workdir=str(tree["allowed"]),
                                   options=LocalEnvConfig(require_os_sandbox=False))
    env = LocalEnvironment(settings=settings)

    async def body() -> None:
        result = await env.execute("6 * 7")
        assert result.value == "42"
        assert env.layers["seccomp"].startswith("unavailable") and "RLM_ENV_LOCAL_PRETEND_MISSING" in env.layers["seccomp"]
        assert env.layers["landlock"].startswith("active")
        await env.close()

    asyncio.run(body())


def test_unknown_layer_names_are_refused(env_factory) -> None:
    with pytest.raises(ValueError, match="unknown layer"):
        env_factory(disable_layers={"landlok"})


def test_confine_in_a_child_process_reports_each_layer(tmp_path) -> None:
    """confine() in a forked child (not the worker): the statuses it returns are the truth."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read)
        status = jail.confine(read=[], write=[str(tmp_path)])
        ok = all(jail.is_active(status[layer]) for layer in jail.OS_LAYERS)
        try:
            open("/etc/hostname").read()
            ok = False
        except OSError:
            pass
        os.write(write, b"ok" if ok else repr(status).encode())
        os._exit(0)
    os.close(write)
    got = os.read(read, 4096)
    os.waitpid(pid, 0)
    assert got == b"ok"


def test_seccomp_filter_is_well_formed() -> None:
    for arch in ("x86_64", "aarch64"):
        prog = jail.build_seccomp_filter(1234, arch)
        assert len(prog) < 4096
        for index, (code, jt, jf, _k) in enumerate(prog):
            if code in (0x15, 0x45, 0x35):  # conditional jumps stay inside the program
                assert index + 1 + max(jt, jf) < len(prog)
        assert prog[-1][0] == 0x06  # ends with a return


def test_probe_explains_pretended_absence(monkeypatch) -> None:
    monkeypatch.setenv(jail.PRETEND_MISSING_ENV, "namespaces")
    assert "RLM_ENV_LOCAL_PRETEND_MISSING" in (jail.probe()["namespaces"] or "")


def test_the_process_check_sees_a_forked_child() -> None:
    """The check used above is real: it finds the child a process forks into its own group."""
    code = "import os, time\nos.setpgid(0, 0)\nif os.fork() == 0:\n    time.sleep(30)\nelse:\n    time.sleep(30)\n"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while not _worker_children(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        children = _worker_children(proc.pid)
        assert len(children) == 1
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
