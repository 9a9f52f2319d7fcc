"""The hook implementations of rlm-env-docker (imported on every ``rlm`` run: keep it cheap).

Everything is registered as ``"module:attr"`` strings: the docker SDK, the
guest client and cyclopts are imported only when a session starts, the
``env`` command runs or ``rlm doctor`` checks the engine.
"""

from __future__ import annotations

from rlm import hookimpl



@hookimpl
def rlm_register_environments(register):
    register("docker", "rlm_env_docker.session:DockerEnvironment",
             description="a long-lived, hardened docker container per session (no network, read-only, non-root)")


@hookimpl
def rlm_register_config_sections(register):
    register("env-docker", "rlm_env_docker.config:DockerEnvConfig")  # imported when a config is built


@hookimpl
def rlm_register_commands(register):
    register("env docker", "rlm_env_docker.cli:docker", help="The docker sandbox's containers: status, prune.")


@hookimpl
def rlm_register_doctor_checks(register):
    register("env-docker", "rlm_env_docker.doctor:check_docker")
