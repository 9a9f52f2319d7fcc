"""``[plugins.env-docker]`` of rlm.toml and how the effective limits are chosen.

The limits every environment shares (timeout, memory, output, paths) arrive
in :class:`rlm.environment.EnvironmentSettings`; the product's docker keys
(``docker_image``, ``docker_cpus``, ``docker_memory``) live in ``[rlm]`` and
reach the environment through ``settings.config``.  This section can override
them per plugin and holds the hardening knobs.

Precedence (first set wins):

* image: ``[plugins.env-docker] image`` > ``[rlm] docker_image`` (when a run's
  config is given) > ``RLM_DOCKER_IMAGE`` > ``python:3.11-slim``.
* cpus: ``cpus`` > ``[rlm] docker_cpus`` > 1.0.
* memory: ``memory`` > ``[rlm] docker_memory`` when changed from its default
  (``512m``) > ``settings.memory_limit_mb`` (``[rlm] env_memory_mb``).  It is
  the address-space limit of the Python process (a bigger allocation is a
  ``MemoryError`` and the session survives); the container's cgroup limit
  adds the tmpfs size and 64 MiB of headroom.
"""

from __future__ import annotations

import os
import re
from typing import Any

from attrs import define, field, validators

SECTION = "env-docker"
DEFAULT_IMAGE = "python:3.11-slim"
DEFAULT_MEMORY = "512m"
MIB = 1024 * 1024
#: Headroom of the cgroup memory limit over the Python process's address-space limit.
OVERHEAD_MB = 64

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmg]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": MIB, "g": 1024 * MIB}


def parse_size(text: str) -> int:
    """Bytes of a docker-style size: ``512m``, ``2g``, ``65536k``, ``1048576`` (bytes)."""
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a size (use e.g. 512m or 2g)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _size_validator(_instance: object, attribute: Any, value: str) -> None:
    if value:
        try:
            if parse_size(value) < 16 * MIB:
                raise ValueError(f"{value!r} is below 16m")
        except ValueError as exc:
            raise ValueError(f"{attribute.name}: {exc}") from None


@define(frozen=True, kw_only=True)
class DockerEnvConfig:
    """Settings of the docker environment (``[plugins.env-docker]``)."""

    image: str = field(default="", metadata={
        "help": "image of the sandbox (empty: [rlm] docker_image); it needs python3 (3.8+)"})
    cpus: float = field(default=0.0, validator=validators.ge(0), metadata={
        "help": "CPUs of the container (0: [rlm] docker_cpus)"})
    memory: str = field(default="", validator=_size_validator, metadata={
        "help": "memory of the Python process, e.g. 512m (empty: [rlm] docker_memory / env_memory_mb)"})
    pids_limit: int = field(default=64, validator=validators.ge(8), metadata={
        "help": "processes and threads the container may have at once"})
    tmpfs_size: str = field(default="64m", validator=_size_validator, metadata={
        "help": "size of the writable /tmp (tmpfs, noexec); the rest of the filesystem is read-only"})
    user: str = field(default="65534:65534", metadata={"help": "uid:gid the code runs as (never root)"})
    network: str = field(default="none", metadata={
        "help": 'docker network mode; "none" (default) cuts every network access'})
    mount_allowed_paths: bool = field(default=True, metadata={
        "help": "bind allowed_paths read-only (and writable_paths read-write) at the same paths"})
    pull: bool = field(default=True, metadata={"help": "pull the image when it is not present locally"})
    start_timeout: float = field(default=60.0, validator=validators.gt(0), metadata={
        "help": "seconds a container may take to start and answer"})
    interrupt_grace: float = field(default=1.0, validator=validators.ge(0), metadata={
        "help": "seconds an execution past its timeout gets to stop after SIGINT before the container is killed"})
    python: str = field(default="python3", metadata={"help": "the Python interpreter inside the image"})


def options_of(settings: Any) -> DockerEnvConfig:
    options = getattr(settings, "options", None)
    return options if isinstance(options, DockerEnvConfig) else DockerEnvConfig()


def resolve_image(options: DockerEnvConfig, config: Any) -> str:
    if options.image:
        return options.image
    if config is not None and getattr(config, "docker_image", None):
        return str(config.docker_image)
    return os.environ.get("RLM_DOCKER_IMAGE") or DEFAULT_IMAGE


def resolve_cpus(options: DockerEnvConfig, config: Any) -> float:
    if options.cpus:
        return float(options.cpus)
    if config is not None and getattr(config, "docker_cpus", None):
        return float(config.docker_cpus)
    return 1.0


def resolve_memory_mb(options: DockerEnvConfig, config: Any, memory_limit_mb: int) -> int:
    if options.memory:
        return max(parse_size(options.memory) // MIB, 16)
    docker_memory = getattr(config, "docker_memory", None) if config is not None else None
    if docker_memory and str(docker_memory).strip().lower() != DEFAULT_MEMORY:
        return max(parse_size(docker_memory) // MIB, 16)
    return int(memory_limit_mb)
