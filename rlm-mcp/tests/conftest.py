"""Fixtures of rlm-mcp's tests: a project directory (rlm.toml) and the real server in a subprocess.

The server is started as ``python -m rlm mcp-serve`` and driven with the
official MCP client (``mcp.client.stdio`` / ``mcp.client.streamable_http``).
Agent runs reach a :class:`rlm_testing.server.ScriptedLLMServer` through the
openai backend (``[rlm] api_base``, model ``openai/...``, ``OPENAI_API_KEY=sk-test``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

pytest.importorskip("mcp")
pytest.importorskip("rlm_env_local")

from rlm_testing.server import ScriptedLLMServer

MODEL = "openai/mcp-test-model"


@pytest.fixture
def llm() -> ScriptedLLMServer:
    with ScriptedLLMServer() as server:
        yield server


@pytest.fixture
def project(tmp_path: Path, llm: ScriptedLLMServer) -> Path:
    (tmp_path / "rlm.toml").write_text(
        "[rlm]\n"
        f'api_base = "{llm.openai_base_url}"\n'
        f'model = "{MODEL}"\n'
        'environment = "local"\n'
        'protocol = "tools"\n'
        f'log_dir = "{tmp_path / "logs"}"\n'
        f'[pricing."{MODEL}"]\n'
        "input_per_mtok = 1.0\n"
        "output_per_mtok = 2.0\n"
        "[plugins.mcp]\n"
        "idle_timeout = 600\n"
    )
    return tmp_path


def server_env(project: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLM_") and k != "OPENAI_BASE_URL"}
    env.update({"OPENAI_API_KEY": "sk-test", "RLM_CONFIG": str(project / "rlm.toml"), "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


@contextlib.asynccontextmanager
async def stdio_session(project: Path, *args: str, command: list[str] | None = None,
                        **env: str) -> AsyncIterator[object]:
    """An initialized official-client session with ``rlm mcp-serve`` over stdio."""
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    argv = command or [sys.executable, "-m", "rlm", "mcp-serve", *args]
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=server_env(project, **env), cwd=str(project))
    with open(project / "server-stderr.log", "a") as errlog:  # noqa: ASYNC230 - a log file handed to the SDK
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


@pytest.fixture
def connect(project: Path):
    """``connect(*args, command=None, **env)``: an async context manager yielding an initialized session."""
    return lambda *args, **kw: stdio_session(project, *args, **kw)


@pytest.fixture
def make_env(project: Path):
    """``make_env(**extra)``: the environment of a server subprocess."""
    return lambda **extra: server_env(project, **extra)


@pytest.fixture
def port() -> int:
    return free_port()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def http_server(project: Path, port: int):
    """``http_server(*args, **env)``: a context manager starting ``rlm mcp-serve --transport http``;
    yields ``(proc, url)`` (stderr goes to ``project/server-stderr.log``); the server is stopped after."""

    @contextlib.contextmanager
    def start(*args: str, **env: str) -> Iterator[tuple[subprocess.Popen, str]]:
        with open(project / "server-stderr.log", "ab") as errlog:
            proc = subprocess.Popen([sys.executable, "-m", "rlm", "mcp-serve", "--transport", "http", "--port",
                                     str(port), *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=errlog, cwd=project, env=server_env(project, **env))
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                assert proc.poll() is None, (project / "server-stderr.log").read_text()[-2000:]
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.1)
            else:
                raise AssertionError("the HTTP server did not start")
            yield proc, f"http://127.0.0.1:{port}/mcp"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    return start


def trajectories(project: Path) -> list[list[dict]]:
    """Every JSONL trajectory in the project's log_dir, each as its list of events."""
    out = []
    for path in sorted((project / "logs").glob("*.jsonl")):
        out.append([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
    return out


@pytest.fixture
def read_trajectories(project: Path):
    """``read_trajectories()``: the project's trajectories (see :func:`trajectories`)."""
    return lambda: trajectories(project)
