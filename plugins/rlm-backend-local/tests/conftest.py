"""Shared fixtures: a fresh notice flag, an isolated rlm cache, and a check that no server outlives the tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
FAKE_SERVER = str(HERE / "fake_llama_server.py")
#: holds a stand-in ``xllamacpp`` package (tests/stub_xllamacpp/xllamacpp) that runs the fake server
STUB_XLLAMACPP = HERE / "stub_xllamacpp"


@pytest.fixture(autouse=True)
def _fresh_notice():
    from rlm_backend_local import resolve

    resolve.reset_notice()
    yield
    resolve.reset_notice()


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """An empty rlm cache (RLM_CACHE_DIR) for the test."""
    path = tmp_path / "rlm-cache"
    monkeypatch.setenv("RLM_CACHE_DIR", str(path))
    return path


@pytest.fixture
def no_keys(monkeypatch):
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "RLM_API_BASE", "RLM_BACKEND", "RLM_MODEL"):
        monkeypatch.delenv(name, raising=False)


def _fake_command(mode: str = "ok", record: str | None = None) -> tuple[str, ...]:
    # values attached to their flags, as ServerSpec.argv does for the real server
    command = (sys.executable, FAKE_SERVER, "--port={port}", "--api_key={api_key}", f"--mode={mode}")
    return command + ((f"--record={record}",) if record else ())


@pytest.fixture
def fake_command():
    """``fake_command(mode, record=None)``: a ServerSpec.command running tests/fake_llama_server.py."""
    return _fake_command


@pytest.fixture
def stub_xllamacpp(tmp_path, monkeypatch):
    """Server processes started from now on import the stand-in ``xllamacpp`` (PYTHONPATH); returns the
    file it records the server parameters in (JSON, written when a server starts)."""
    record = tmp_path / "xllamacpp-params.json"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(STUB_XLLAMACPP), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("FAKE_XLLAMACPP_RECORD", str(record))
    return record


@pytest.fixture
def pid_alive():
    return _pid_alive


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie counts as dead
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def _no_orphan_servers():
    """Every llama.cpp server a test started is gone when the session ends."""
    yield
    from rlm_backend_local import server

    pids = [s.pid for s in list(server._SERVERS) if s.pid]
    server.stop_all()
    leftover = [pid for pid in pids if _pid_alive(pid)]
    assert not leftover, f"llama.cpp servers survived the tests: {leftover}"
