"""Fixtures of rlm-env-wasm's tests: a host directory tree to attack, and wasm sessions.

Sessions use the real compile cache (``~/.cache/rlm/wasm`` unless RLM_CACHE_DIR
says otherwise): the first test run compiles the interpreter once (seconds to
tens of seconds), later runs load it in about a millisecond.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rlm.environment import EnvironmentSettings
from rlm_env_wasm.config import WasmEnvConfig
from rlm_env_wasm.session import WasmEnvironment
from rlm_testing.environment_suite import FakeHostCallbacks, run

SECRET = "host-secret-3f9a"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``allowed/`` (what the guest may read) next to ``outside.txt`` (what it must not)."""
    root = tmp_path_factory.mktemp("wasm-tree")
    (root / "outside.txt").write_text(SECRET)
    allowed = root / "allowed"
    (allowed / "sub").mkdir(parents=True)
    (allowed / "in.txt").write_text("hello")
    os.symlink(root / "outside.txt", allowed / "file_link")
    os.symlink(root, allowed / "dir_link")
    (root / "writable").mkdir()
    return root


def make_env(tree: Path, *, callbacks: Any = None, options: WasmEnvConfig | None = None,
             **overrides: Any) -> WasmEnvironment:
    values: dict[str, Any] = {"timeout": 20.0, "allowed_paths": (str(tree / "allowed"),),
                              "workdir": str(tree / "allowed"), "options": options}
    values.update(overrides)
    return WasmEnvironment(settings=EnvironmentSettings(**values), callbacks=callbacks)


@pytest.fixture(scope="module")
def secret() -> str:
    return SECRET


@pytest.fixture(scope="module")
def new_env(tree: Path) -> Any:
    """``new_env(**settings)``: a WasmEnvironment over ``tree`` (the caller closes it)."""
    return lambda **kwargs: make_env(tree, **kwargs)


@pytest.fixture(scope="module")
def env(tree: Path) -> Iterator[WasmEnvironment]:
    """One session shared by a module's tests (each test drives it with its own event loop)."""
    environment = make_env(tree, callbacks=FakeHostCallbacks())
    run(environment.start())
    yield environment
    run(environment.close())
