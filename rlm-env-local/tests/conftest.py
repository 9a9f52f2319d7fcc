"""Shared fixtures of the rlm-env-local tests: a sandbox directory tree and session helpers."""

from __future__ import annotations

import os
from typing import Any

import pytest

from rlm.environment import EnvironmentSettings
from rlm_env_local.session import LocalEnvironment

SECRET = "TOPSECRET-c0ffee"


@pytest.fixture(scope="module")
def sandbox_tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """root/secret.txt (outside), root/allowed (workdir, readable), root/allowed/out (writable),
    with symlinks inside the allowed tree that point outside it."""
    root = tmp_path_factory.mktemp("sandbox")
    allowed = root / "allowed"
    out = allowed / "out"
    out.mkdir(parents=True)
    (root / "secret.txt").write_text(SECRET)
    (allowed / "data.txt").write_text("line 1\nline 2\n")
    os.symlink(root / "secret.txt", allowed / "link_to_secret")
    os.symlink(root, out / "escape_dir")
    return {"root": root, "allowed": allowed, "out": out, "pwned": root / "PWNED", "secret": SECRET}


def make_env(tree: dict[str, Any], callbacks: Any = None, **overrides: Any) -> LocalEnvironment:
    values: dict[str, Any] = {
        "timeout": 10.0, "memory_limit_mb": 256, "output_limit": 10_000,
        "allowed_paths": (str(tree["allowed"]),), "writable_paths": (str(tree["out"]),),
        "workdir": str(tree["allowed"]),
    }
    disable_layers = overrides.pop("disable_layers", ())
    values.update(overrides)
    return LocalEnvironment(settings=EnvironmentSettings(**values), callbacks=callbacks,
                            disable_layers=disable_layers)


@pytest.fixture(scope="module")
def env_factory(sandbox_tree: dict[str, Any]) -> Any:
    """``env_factory(callbacks=None, **settings)``: a LocalEnvironment on the sandbox tree."""
    return lambda callbacks=None, **overrides: make_env(sandbox_tree, callbacks, **overrides)
