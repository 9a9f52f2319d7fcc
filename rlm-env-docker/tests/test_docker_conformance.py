"""The docker environment passes the shared environment conformance suite."""

from __future__ import annotations

import os

import attrs
import pytest
from rlm.environment import Environment, EnvironmentSettings, HostCallbacks
from rlm_env_docker.config import DockerEnvConfig
from rlm_env_docker.session import DockerEnvironment
from rlm_testing.environment_suite import GUEST_FORGE, GUEST_FORGE_RAW, EnvironmentConformance

pytestmark = pytest.mark.usefixtures("docker_engine")
IMAGE = os.environ.get("RLM_DOCKER_IMAGE") or "rlm-sandbox:ci"


class TestDockerConformance(EnvironmentConformance):
    supports_memory_limit = True
    default_timeout_s = 30.0
    forge_code = GUEST_FORGE
    forge_raw_code = GUEST_FORGE_RAW

    def make_environment(self, settings: EnvironmentSettings, callbacks: HostCallbacks | None) -> Environment:
        settings = attrs.evolve(settings, options=DockerEnvConfig(image=IMAGE))
        return DockerEnvironment(settings=settings, callbacks=callbacks)

    def kill_session(self, env: Environment) -> None:
        from rlm_env_docker import engine

        engine.client().containers.get(env._box.id).kill()
