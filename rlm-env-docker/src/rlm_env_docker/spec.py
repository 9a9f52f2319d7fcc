"""What one session's container looks like: :class:`ContainerSpec`, built from settings.

Pure values, no docker SDK: :func:`build_spec` resolves image and limits
(see :mod:`rlm_env_docker.config`), and :meth:`ContainerSpec.create_kwargs`
gives the keyword arguments of ``DockerClient.containers.create``.  The
hardening is here, in one place:

* ``network_mode="none"``: no interface but loopback, no DNS;
* ``user="65534:65534"`` (nobody), ``cap_drop=["ALL"]``,
  ``security_opt=["no-new-privileges"]`` (setuid binaries gain nothing);
* ``read_only=True`` root filesystem; ``/tmp`` a size-limited tmpfs mounted
  ``noexec,nosuid,nodev``; the container starts in ``/tmp`` and the guest
  enters the session's workdir when it is bound in (and searchable);
* ``pids_limit``, ``mem_limit`` = ``memswap_limit`` (no swap), ``nano_cpus``,
  ``nofile`` and ``core`` ulimits; the guest also caps its own address space;
* ``log_config`` ``none`` (the protocol traffic is not written to the host's
  disk), ``auto_remove`` and ``stdin_once`` (the container goes away when its
  host disconnects, even if the host dies without cleaning up);
* labels ``rlm.env=docker``, ``rlm.session``, ``rlm.owner-pid``,
  ``rlm.owner-host`` so that ``rlm env docker prune`` finds leftovers;
* the allowed paths bound read-only (writable paths read-write) at the same
  absolute paths, never ``/`` nor a path holding the docker socket.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

from attrs import define, field
from rlm.environment import EnvironmentSettings
from rlm.errors import SandboxError

from rlm_env_docker.config import (
    MIB,
    OVERHEAD_MB,
    options_of,
    parse_size,
    resolve_cpus,
    resolve_image,
    resolve_memory_mb,
)

LABEL_ENV = "rlm.env"
LABEL_SESSION = "rlm.session"
LABEL_OWNER_PID = "rlm.owner-pid"
LABEL_OWNER_HOST = "rlm.owner-host"
ENV_LABEL_VALUE = "docker"
TMP_DIR = "/tmp"
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")


@define(frozen=True, kw_only=True)
class Mount:
    """A host path bound into the container at the same path."""

    path: str
    read_only: bool = True


@define(frozen=True, kw_only=True)
class ContainerSpec:
    """Everything needed to create one session's container."""

    image: str
    command: tuple[str, ...]
    session: str
    memory_mb: int
    cpus: float
    pids_limit: int
    tmpfs_bytes: int
    user: str
    network: str
    max_open_files: int
    #: Where the guest chdirs at start (the session's workdir when it is bound in); else it stays in /tmp.
    guest_workdir: str | None = None
    mounts: tuple[Mount, ...] = ()
    labels: Mapping[str, str] = field(factory=dict)

    @property
    def container_memory_bytes(self) -> int:
        """The cgroup limit: the Python process's limit, the tmpfs and some headroom."""
        return (self.memory_mb + OVERHEAD_MB) * MIB + self.tmpfs_bytes

    def create_kwargs(self) -> dict[str, Any]:
        threads = str(max(int(self.cpus + 0.999), 1))
        return {
            "image": self.image,
            "command": list(self.command),
            "name": f"rlm-{self.session}",
            "labels": dict(self.labels),
            "stdin_open": True,  # with detach unset the SDK also sets StdinOnce and attaches the streams
            "tty": False,
            "user": self.user,
            "working_dir": TMP_DIR,  # the guest then enters guest_workdir when the user may
            "environment": {"HOME": TMP_DIR, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
                            "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads},
            "network_mode": self.network,
            "read_only": True,
            "tmpfs": {TMP_DIR: f"rw,noexec,nosuid,nodev,size={self.tmpfs_bytes},mode=1777"},
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "pids_limit": self.pids_limit,
            "mem_limit": self.container_memory_bytes,
            "memswap_limit": self.container_memory_bytes,
            "nano_cpus": int(self.cpus * 1e9),
            "ulimits": [{"Name": "nofile", "Soft": self.max_open_files, "Hard": self.max_open_files},
                        {"Name": "core", "Soft": 0, "Hard": 0}],
            "ipc_mode": "private",
            "log_config": {"Type": "none", "Config": {}},
            "auto_remove": True,
            "volumes": {m.path: {"bind": m.path, "mode": "ro" if m.read_only else "rw"} for m in self.mounts},
        }


def _refuse_mount(path: str) -> None:
    real = os.path.realpath(path)
    if real == os.sep:
        raise SandboxError("the allowed path / would expose the whole host filesystem to the docker sandbox",
                           fix="list the directories the code needs in allowed_paths instead")
    for sock in DOCKER_SOCKETS:
        if sock == real or sock.startswith(real.rstrip(os.sep) + os.sep):
            raise SandboxError(f"the allowed path {path} holds the docker socket ({sock}): binding it would let "
                               "the code control the docker engine", fix="allow narrower directories")


def plan_mounts(settings: EnvironmentSettings) -> tuple[Mount, ...]:
    """The bind mounts of the session's allowed (read-only) and writable (read-write) paths."""
    mounts: dict[str, Mount] = {}
    for path, read_only in [(p, True) for p in settings.allowed_paths] + [(p, False) for p in settings.writable_paths]:
        _refuse_mount(path)
        if not os.path.exists(path):
            continue
        if path in mounts and not read_only:
            mounts[path] = Mount(path=path, read_only=False)
        mounts.setdefault(path, Mount(path=path, read_only=read_only))
    return tuple(mounts.values())


def _within(path: str, roots: tuple[Mount, ...]) -> bool:
    return any(path == m.path or path.startswith(m.path.rstrip(os.sep) + os.sep) for m in roots)


def build_spec(settings: EnvironmentSettings, *, session: str, command: tuple[str, ...]) -> ContainerSpec:
    """The container of one session with these settings."""
    options = options_of(settings)
    config = settings.config
    if options.user.split(":")[0] in ("0", "root", ""):
        raise SandboxError("[plugins.env-docker] user must not be root", fix='use e.g. "65534:65534" (nobody)')
    mounts = plan_mounts(settings) if options.mount_allowed_paths else ()
    return ContainerSpec(
        image=resolve_image(options, config),
        command=command,
        session=session,
        memory_mb=resolve_memory_mb(options, config, settings.memory_limit_mb),
        cpus=resolve_cpus(options, config),
        pids_limit=options.pids_limit,
        tmpfs_bytes=parse_size(options.tmpfs_size),
        user=options.user,
        network=options.network,
        max_open_files=max(int(settings.max_open_files), 32),
        guest_workdir=settings.workdir if _within(settings.workdir, mounts) else None,
        mounts=mounts,
        labels={LABEL_ENV: ENV_LABEL_VALUE, LABEL_SESSION: session, LABEL_OWNER_PID: str(os.getpid()),
                LABEL_OWNER_HOST: socket.gethostname()},
    )
