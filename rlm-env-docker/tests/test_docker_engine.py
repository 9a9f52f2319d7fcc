"""With an engine: images, leftovers (prune, status, a host that dies), the CLI and the doctor check."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest
from rlm.errors import SandboxError
from rlm_env_docker import engine
from rlm_env_docker.session import DockerEnvironment
from rlm_env_docker.spec import (
    ENV_LABEL_VALUE,
    LABEL_ENV,
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_SESSION,
)

pytestmark = pytest.mark.usefixtures("docker_engine")
IMAGE = os.environ.get("RLM_DOCKER_IMAGE") or "rlm-sandbox:ci"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def orphan(session: str) -> str:
    """A sandbox-labelled container whose owner process is dead."""
    c = engine.client().containers.create(
        IMAGE, ["python3", "-c", "import time; time.sleep(120)"], network_mode="none", user="65534:65534",
        labels={LABEL_ENV: ENV_LABEL_VALUE, LABEL_SESSION: session, LABEL_OWNER_PID: str(dead_pid()),
                LABEL_OWNER_HOST: socket.gethostname()})
    c.start()
    return c.id


def ids() -> set[str]:
    return {c.id for c in engine.containers()}


def test_a_missing_image_says_how_to_provide_one(docker_settings: Any) -> None:
    env = DockerEnvironment(settings=docker_settings(options={"image": "rlm-test-no-such-image:never",
                                                              "pull": False}))

    async def main() -> None:
        with pytest.raises(SandboxError) as info:
            await env.start()
        await env.close()
        text = str(info.value)
        assert "rlm-test-no-such-image:never" in text and "not present locally" in text
        assert "scripts/docker-ci-setup.sh" in text and "docker import" in text and "docker_image" in text

    asyncio.run(main())


def test_an_image_that_cannot_be_pulled_says_how_to_provide_one(docker_settings: Any) -> None:
    env = DockerEnvironment(settings=docker_settings(options={"image": "localhost:1/rlm-test-none:never"}))

    async def main() -> None:
        with pytest.raises(SandboxError) as info:
            await env.start()
        await env.close()
        assert "could not be pulled" in str(info.value) and "scripts/docker-ci-setup.sh" in str(info.value)

    asyncio.run(main())


def test_an_image_without_python_is_a_clear_error(docker_settings: Any) -> None:
    env = DockerEnvironment(settings=docker_settings(options={"python": "no-such-python3"}))

    async def main() -> None:
        with pytest.raises(SandboxError, match="no-such-python3"):
            await env.start()
        await env.close()

    asyncio.run(main())


def test_prune_removes_orphans_and_spares_live_sessions(docker_settings: Any) -> None:
    from rlm_env_docker.cli import env as env_app

    async def main() -> None:
        live = DockerEnvironment(settings=docker_settings())
        await live.start()
        stale = await asyncio.to_thread(orphan, "orphan-test")
        try:
            listed = {c.id: c for c in engine.containers()}
            assert listed[stale].orphaned and not listed[live.container_id].orphaned
            assert env_app(["docker", "prune", "--dry-run"], result_action="return_value") == 0
            assert stale in ids()
            assert env_app(["docker", "prune"], result_action="return_value") == 0
            assert stale not in ids() and live.container_id in ids()
            assert (await live.execute("1 + 1")).value == "2"
        finally:
            await asyncio.to_thread(engine.remove, stale)
            await live.close()

    asyncio.run(main())


def test_status_lists_the_sandbox_containers(docker_settings: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from rlm_env_docker.cli import env as env_app

    async def main() -> None:
        live = DockerEnvironment(settings=docker_settings())
        await live.start()
        try:
            assert env_app(["docker", "status", "--json"], result_action="return_value") == 0
            rows = json.loads(capsys.readouterr().out)
            mine = [r for r in rows if r["id"] == (live.container_id or "")[:12]]
            assert mine and mine[0]["owner_pid"] == os.getpid() and mine[0]["orphaned"] is False
        finally:
            await live.close()

    asyncio.run(main())


def test_the_env_command_is_reachable_through_rlm(tmp_path: Any) -> None:
    result = subprocess.run([sys.executable, "-m", "rlm", "env", "docker", "status"], capture_output=True,
                            text=True, cwd=tmp_path, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "container" in result.stdout


def test_the_container_goes_away_when_its_host_process_dies(tmp_path: Any) -> None:
    """No atexit, no close: the attach connection drops, stdin closes, the guest exits, docker removes it."""
    script = textwrap.dedent(f"""
        import asyncio, sys, time
        from rlm.environment import EnvironmentSettings
        from rlm_env_docker.config import DockerEnvConfig
        from rlm_env_docker.session import DockerEnvironment

        async def main():
            env = DockerEnvironment(settings=EnvironmentSettings(
                allowed_paths=(), options=DockerEnvConfig(image={IMAGE!r})))
            await env.start()
            print(env.container_id, flush=True)
            time.sleep(600)

        asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        container = proc.stdout.readline().strip()
        assert container and container in ids()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 20
    while container in ids() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert container not in ids()


def test_atexit_removes_open_sessions(tmp_path: Any) -> None:
    """A session never closed is removed by the atexit handler, before the interpreter is gone."""
    script = textwrap.dedent(f"""
        import asyncio, atexit
        from rlm.environment import EnvironmentSettings
        from rlm_env_docker import engine
        from rlm_env_docker.config import DockerEnvConfig
        from rlm_env_docker.session import DockerEnvironment

        box = {{}}

        def after_the_plugin():  # registered first, so it runs after the plugin's handler
            alive = [c.id for c in engine.containers()]
            print("still there" if box["id"] in alive else "removed", flush=True)

        atexit.register(after_the_plugin)

        async def main():
            env = DockerEnvironment(settings=EnvironmentSettings(
                allowed_paths=(), options=DockerEnvConfig(image={IMAGE!r})))
            await env.start()
            box["id"] = env.container_id

        asyncio.run(main())
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "removed"


def test_doctor_check_reports_engine_and_image() -> None:
    from rlm_env_docker.doctor import check_docker

    class Config:
        environment = "docker"
        docker_image = IMAGE

        def plugin(self, section: str) -> None:
            return None

    checks = list(check_docker(Config()))
    assert [c.status for c in checks] == ["ok", "ok"], checks
    Config.docker_image = "rlm-test-no-such-image:never"
    checks = list(check_docker(Config()))
    assert checks[-1].status == "fail" and "docker-ci-setup.sh" in (checks[-1].fix or "")
