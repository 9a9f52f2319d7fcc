"""The docker environment's parts that need no engine: spec, config, stream, errors, plugin."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from typing import Any

import pytest
from rlm.environment import EnvironmentSettings
from rlm.errors import SandboxError
from rlm_env_docker import engine
from rlm_env_docker.config import (
    DockerEnvConfig,
    parse_size,
    resolve_image,
    resolve_memory_mb,
)
from rlm_env_docker.spec import LABEL_ENV, LABEL_OWNER_PID, LABEL_SESSION, build_spec
from rlm_env_docker.stream import AttachStream

COMMAND = ("python3", "-c", "pass")


class Config:
    """Stands in for RLMConfig's docker keys."""

    def __init__(self, **values: Any) -> None:
        self.docker_image = values.get("docker_image", "python:3.11-slim")
        self.docker_cpus = values.get("docker_cpus", 1.0)
        self.docker_memory = values.get("docker_memory", "512m")


def settings(**overrides: Any) -> EnvironmentSettings:
    values: dict[str, Any] = {"allowed_paths": (), "workdir": "/tmp"}
    values.update(overrides)
    return EnvironmentSettings(**values)


def test_the_container_is_hardened_by_default() -> None:
    spec = build_spec(settings(memory_limit_mb=300, max_open_files=100), session="abc", command=COMMAND)
    kw = spec.create_kwargs()
    assert kw["network_mode"] == "none"
    assert kw["user"] == "65534:65534"
    assert kw["read_only"] is True
    assert kw["cap_drop"] == ["ALL"]
    assert kw["security_opt"] == ["no-new-privileges"]
    assert kw["pids_limit"] == 64
    assert kw["tmpfs"] == {"/tmp": f"rw,noexec,nosuid,nodev,size={64 * 1024 * 1024},mode=1777"}
    assert kw["mem_limit"] == kw["memswap_limit"] == (300 + 64 + 64) * 1024 * 1024
    assert kw["nano_cpus"] == 1_000_000_000
    assert {"Name": "nofile", "Soft": 100, "Hard": 100} in kw["ulimits"]
    assert kw["log_config"]["Type"] == "none"
    assert kw["auto_remove"] is True and kw["stdin_open"] is True and kw["tty"] is False
    assert kw["labels"][LABEL_ENV] == "docker" and kw["labels"][LABEL_SESSION] == "abc"
    assert kw["labels"][LABEL_OWNER_PID] == str(os.getpid())
    assert kw["volumes"] == {}
    assert kw["working_dir"] == "/tmp" and kw["environment"]["HOME"] == "/tmp"
    assert spec.memory_mb == 300 and spec.image == (os.environ.get("RLM_DOCKER_IMAGE") or "python:3.11-slim")


def test_allowed_paths_are_bound_read_only_and_writable_paths_read_write(tmp_path: Any) -> None:
    (tmp_path / "out").mkdir()
    s = settings(allowed_paths=(str(tmp_path),), writable_paths=(str(tmp_path / "out"),), workdir=str(tmp_path))
    spec = build_spec(s, session="s", command=COMMAND)
    assert spec.create_kwargs()["volumes"] == {
        str(tmp_path): {"bind": str(tmp_path), "mode": "ro"},
        str(tmp_path / "out"): {"bind": str(tmp_path / "out"), "mode": "rw"},
    }
    assert spec.guest_workdir == str(tmp_path)
    missing = build_spec(settings(allowed_paths=(str(tmp_path / "nope"),)), session="s", command=COMMAND)
    assert missing.mounts == () and missing.guest_workdir is None
    off = build_spec(settings(allowed_paths=(str(tmp_path),), options=DockerEnvConfig(mount_allowed_paths=False)),
                     session="s", command=COMMAND)
    assert off.mounts == ()


@pytest.mark.parametrize("path", ["/", "/var/run", "/run", "/var"])
def test_the_root_and_the_docker_socket_are_never_bound(path: str) -> None:
    with pytest.raises(SandboxError, match="allowed path"):
        build_spec(settings(allowed_paths=(path,)), session="s", command=COMMAND)


def test_root_user_is_refused() -> None:
    with pytest.raises(SandboxError, match="root"):
        build_spec(settings(options=DockerEnvConfig(user="0:0")), session="s", command=COMMAND)


def test_image_cpus_and_memory_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RLM_DOCKER_IMAGE", raising=False)
    plain = DockerEnvConfig()
    assert resolve_image(plain, None) == "python:3.11-slim"
    monkeypatch.setenv("RLM_DOCKER_IMAGE", "from-env:1")
    assert resolve_image(plain, None) == "from-env:1"
    assert resolve_image(plain, Config(docker_image="from-config:1")) == "from-config:1"
    assert resolve_image(DockerEnvConfig(image="from-section:1"), Config(docker_image="x")) == "from-section:1"
    # memory: the section, then [rlm] docker_memory when changed, then env_memory_mb
    assert resolve_memory_mb(plain, None, 300) == 300
    assert resolve_memory_mb(plain, Config(), 300) == 300
    assert resolve_memory_mb(plain, Config(docker_memory="2g"), 300) == 2048
    assert resolve_memory_mb(DockerEnvConfig(memory="1g"), Config(docker_memory="2g"), 300) == 1024
    spec = build_spec(settings(config=Config(docker_cpus=2.5), options=plain), session="s", command=COMMAND)
    assert spec.create_kwargs()["nano_cpus"] == 2_500_000_000


def test_sizes() -> None:
    assert parse_size("512m") == 512 * 1024 * 1024
    assert parse_size("2g") == 2 * 1024 ** 3
    assert parse_size("64MiB") == 64 * 1024 * 1024
    assert parse_size("1048576") == 1048576
    with pytest.raises(ValueError):
        parse_size("lots")
    with pytest.raises(ValueError):
        DockerEnvConfig(memory="1m")


def test_attach_stream_demultiplexes_stdout_and_stderr() -> None:
    def frame(kind: int, data: bytes) -> bytes:
        return bytes([kind, 0, 0, 0]) + len(data).to_bytes(4, "big") + data

    async def main() -> None:
        ours, theirs = socket.socketpair()
        stream = AttachStream(ours)
        theirs.sendall(frame(1, b'{"a"') + frame(2, b"warning: x\n") + frame(1, b': 1}\n{"b": 2}\npart'))
        assert await stream.readline() == b'{"a": 1}\n'
        assert await stream.readline() == b'{"b": 2}\n'
        # a frame split across reads, and a read cancelled half-way loses nothing
        theirs.sendall(frame(1, b"ial\n")[:5])
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(stream.readline(), 0.1)
        theirs.sendall(frame(1, b"ial\n")[5:])
        assert await stream.readline() == b"partial\n"
        stream.write(b"to stdin\n")
        await stream.drain()
        assert theirs.recv(100) == b"to stdin\n"
        assert "warning: x" in stream.stderr_tail
        theirs.close()
        assert await stream.readline() == b""
        stream.close()

    asyncio.run(main())


def test_an_unreachable_engine_gives_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setattr(engine, "_client", None)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    with pytest.raises(SandboxError) as info:
        engine.client(timeout=2)
    assert str(info.value) == "Docker is not running: start it (systemctl start docker) or use --env local"
    assert engine.reachable(timeout=2) is not None


def test_a_missing_sdk_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)
    with pytest.raises(SandboxError, match=r"pip install 'docker>=7,<8'"):
        engine.sdk()


def test_environment_start_without_engine_raises_sandbox_error(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Any) -> None:
    from rlm_env_docker.session import DockerEnvironment

    monkeypatch.setattr(engine, "_client", None)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    env = DockerEnvironment(settings=settings())

    async def main() -> None:
        with pytest.raises(SandboxError, match="Docker is not running"):
            await env.start()
        await env.close()

    asyncio.run(main())


def test_plugin_registers_strings_only() -> None:
    from rlm_env_docker import plugin

    seen: dict[str, Any] = {}
    plugin.rlm_register_environments(lambda name, factory, **kw: seen.setdefault("env", (name, factory)))
    plugin.rlm_register_config_sections(lambda name, cls: seen.setdefault("section", (name, cls)))
    plugin.rlm_register_commands(lambda name, target, **kw: seen.setdefault("command", (name, target)))
    plugin.rlm_register_doctor_checks(lambda name, check: seen.setdefault("doctor", (name, check)))
    assert seen["env"] == ("docker", "rlm_env_docker.session:DockerEnvironment")
    assert seen["section"] == ("env-docker", "rlm_env_docker.config:DockerEnvConfig")
    assert seen["command"] == ("env docker", "rlm_env_docker.cli:docker")
    assert seen["doctor"] == ("env-docker", "rlm_env_docker.doctor:check_docker")


def test_importing_the_plugin_imports_no_sdk() -> None:
    import subprocess

    code = ("import sys, rlm_env_docker.plugin\n"
            "heavy = [m for m in sys.modules if m == 'docker' or m.startswith(('docker.', 'cyclopts', 'rlm_repl'))]\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
