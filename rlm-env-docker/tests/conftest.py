"""Shared fixtures of the rlm-env-docker tests.

Tests that need an engine use the ``docker_engine`` fixture: it skips (saying
why) only when no docker engine can be reached; CI provides one with
``scripts/docker-ci-setup.sh``, which also builds the image named by
``RLM_DOCKER_IMAGE`` (default ``rlm-sandbox:ci``) without a registry.  At the
end of the session no container made by this test process may be left.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from rlm.environment import EnvironmentSettings

IMAGE = os.environ.get("RLM_DOCKER_IMAGE") or "rlm-sandbox:ci"
_problem: list[str | None] = []


def engine_problem() -> str | None:
    """None when a docker engine answers, else why not (probed once)."""
    if not _problem:
        from rlm_env_docker import engine

        _problem.append(engine.reachable(timeout=5))
    return _problem[0]


@pytest.fixture(scope="session")
def docker_engine() -> None:
    problem = engine_problem()
    if problem is not None:
        pytest.skip(f"no docker engine can be reached ({problem}); CI starts one with scripts/docker-ci-setup.sh")


def own_containers() -> list[Any]:
    from rlm_env_docker import engine

    return [c for c in engine.containers() if c.owner_pid == os.getpid()]


@pytest.fixture(scope="session", autouse=True)
def no_leaked_containers() -> Iterator[None]:
    """After every test of this distribution: no container of this process is left."""
    yield
    if engine_problem() is not None:
        return
    from rlm_env_docker import engine

    deadline = time.monotonic() + 10  # docker may still be removing auto-removed containers
    while (leaked := own_containers()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for c in leaked:
        engine.remove(c.id)
    assert leaked == [], f"sandbox containers leaked by the tests: {[c.name for c in leaked]}"


@pytest.fixture(scope="session")
def docker_settings() -> Any:
    """``docker_settings(**overrides)``: settings of a test session on the test image
    (``options={...}`` overrides DockerEnvConfig fields)."""
    from rlm_env_docker.config import DockerEnvConfig

    def make(**overrides: Any) -> EnvironmentSettings:
        options = {"image": IMAGE, **overrides.pop("options", {})}
        values: dict[str, Any] = {"timeout": 20.0, "memory_limit_mb": 256, "output_limit": 10_000,
                                  "allowed_paths": (), "workdir": "/tmp"}
        values.update(overrides)
        return EnvironmentSettings(**values, options=DockerEnvConfig(**options))

    return make
