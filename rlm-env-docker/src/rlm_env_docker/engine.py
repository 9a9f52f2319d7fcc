"""The docker engine, through the docker SDK (imported here, on first use only).

Every function is synchronous (the SDK is); the environment calls them with
``asyncio.to_thread``.  SDK and engine failures become
:class:`rlm.errors.SandboxError` naming the cause and the fix.  Containers this
process creates are tracked and removed at interpreter exit (``atexit``);
:func:`prune` removes those left behind by processes that died.
"""

from __future__ import annotations

import atexit
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from attrs import define
from rlm.errors import SandboxError
from rlm.logging import get_logger

from rlm_env_docker.spec import (
    ENV_LABEL_VALUE,
    LABEL_ENV,
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_SESSION,
    ContainerSpec,
)

log = get_logger(__name__)

NOT_RUNNING = SandboxError("Docker is not running", fix="start it (systemctl start docker) or use --env local")
SDK_FIX = "pip install 'docker>=7,<8' (or reinstall rlm-env-docker)"
IMAGE_FIX = ("pull it where a registry is reachable (docker pull {image}), or build a local image without a "
             "registry: RLM_DOCKER_IMAGE={image} bash scripts/docker-ci-setup.sh (debootstrap --variant=minbase "
             "--include=python3 bookworm <dir> && tar -C <dir> -c . | docker import - {image}), then set "
             "[rlm] docker_image (or RLM_DOCKER_IMAGE) to it")

_lock = threading.Lock()
_client: Any = None
_present_images: set[str] = set()
_live: dict[str, Any] = {}  # container id -> client, removed at exit
_atexit_registered = False


def sdk() -> Any:
    """The ``docker`` package, or a SandboxError with the install command."""
    try:
        import docker
    except ImportError as exc:
        raise SandboxError(f"the docker environment needs the docker SDK ({exc})", fix=SDK_FIX) from None
    return docker


def client(*, timeout: float = 60.0) -> Any:
    """A connected ``DockerClient`` (shared by this process), or ``Docker is not running``."""
    global _client
    with _lock:
        if _client is not None:
            return _client
        docker = sdk()
        try:
            made = docker.from_env(timeout=int(max(timeout, 1)))
            made.ping()
        except docker.errors.DockerException as exc:
            log.info("docker_unreachable", error=str(exc))
            raise SandboxError(NOT_RUNNING.message, fix=NOT_RUNNING.fix) from None
        except OSError as exc:
            log.info("docker_unreachable", error=str(exc))
            raise SandboxError(NOT_RUNNING.message, fix=NOT_RUNNING.fix) from None
        _client = made
        return made


def reachable(*, timeout: float = 3.0) -> str | None:
    """None when an engine answers, else why not (for tests and the doctor; never raises)."""
    try:
        docker = sdk()
    except SandboxError as exc:
        return str(exc)
    try:
        probe = docker.from_env(timeout=int(max(timeout, 1)))
        try:
            probe.ping()
        finally:
            probe.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"{type(exc).__name__}: {exc}"
    return None


def image_present(image: str) -> bool:
    docker = sdk()
    try:
        client().images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def ensure_image(image: str, *, pull: bool) -> None:
    """Make sure ``image`` is present locally, pulling it when allowed; else a SandboxError with the recipe."""
    if image in _present_images:
        return
    docker = sdk()
    if image_present(image):
        _present_images.add(image)
        return
    if not pull:
        raise SandboxError(f"the docker image {image!r} is not present locally (pulling is disabled)",
                           fix=IMAGE_FIX.format(image=image))
    log.info("docker_image_pull", image=image)
    repository, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    try:
        client().images.pull(repository or image, tag=tag or None)
    except docker.errors.DockerException as exc:
        raise SandboxError(f"the docker image {image!r} is not present locally and could not be pulled "
                           f"({_short(exc)})", fix=IMAGE_FIX.format(image=image)) from None
    _present_images.add(image)


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "explanation", None) or exc)
    return text if len(text) < 300 else text[:297] + "..."


@define(frozen=True, kw_only=True)
class Launched:
    """A created and started container with its attach socket."""

    id: str
    socket: socket.socket
    raw: Any  # the SDK's socket object: kept so that nothing closes the connection under us


def _plain_socket(raw: Any) -> socket.socket:
    sock = getattr(raw, "_sock", raw)
    if not isinstance(sock, socket.socket) or type(sock).__name__ == "SSLSocket":
        raise SandboxError("the docker engine is reached over TLS or ssh, which the docker environment does not "
                           "support yet", fix="use the local engine socket (unset DOCKER_HOST) or --env local")
    return sock.dup()


def launch(spec: ContainerSpec) -> Launched:
    """Create the container, attach to its stdin/stdout/stderr, then start it."""
    docker = sdk()
    engine = client()
    try:
        container = engine.containers.create(**spec.create_kwargs())
    except docker.errors.ImageNotFound:
        _present_images.discard(spec.image)
        raise SandboxError(f"the docker image {spec.image!r} disappeared", fix=IMAGE_FIX.format(image=spec.image)) \
            from None
    except docker.errors.DockerException as exc:
        raise SandboxError(f"docker could not create the sandbox container: {_short(exc)}",
                           fix="check the [plugins.env-docker] settings and `docker info`") from None
    track(container.id)
    try:
        raw = engine.api.attach_socket(container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
        sock = _plain_socket(raw)
        try:
            container.start()
        except docker.errors.DockerException as exc:
            sock.close()
            text = _short(exc)
            if "executable file not found" in text or "no such file" in text.lower():
                raise SandboxError(f"the docker image {spec.image!r} has no {spec.command[0]} ({text})",
                                   fix="use an image with Python 3.8+ (e.g. python:3.11-slim) or set "
                                       "[plugins.env-docker] python") from None
            raise SandboxError(f"docker could not start the sandbox container: {text}",
                               fix="check `docker info` and the [plugins.env-docker] limits") from None
    except BaseException:
        remove(container.id)
        raise
    return Launched(id=container.id, socket=sock, raw=raw)


def signal_container(container_id: str, signal_name: str) -> None:
    """Send a signal to the container's main process (the guest server)."""
    docker = sdk()
    try:
        client().api.kill(container_id, signal=signal_name)
    except docker.errors.DockerException as exc:
        log.info("docker_signal_failed", container=container_id[:12], error=_short(exc))


def remove(container_id: str, *, wait: float = 5.0) -> None:
    """Kill and remove a container; a container already gone is fine.  When docker is already
    removing it (``auto_remove``), wait up to ``wait`` seconds until it is gone."""
    docker = sdk()
    try:
        client().api.remove_container(container_id, force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code == 409 or "in progress" in str(exc):
            _wait_gone(container_id, wait)
        else:
            log.warning("docker_remove_failed", container=container_id[:12], error=_short(exc))
    except docker.errors.DockerException as exc:
        log.warning("docker_remove_failed", container=container_id[:12], error=_short(exc))
    finally:
        _live.pop(container_id, None)


def _wait_gone(container_id: str, wait: float) -> None:
    docker = sdk()
    deadline = time.monotonic() + wait
    delay = 0.01
    while time.monotonic() < deadline:
        try:
            client().api.inspect_container(container_id)
        except docker.errors.NotFound:
            return
        except docker.errors.DockerException:
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    log.warning("docker_remove_slow", container=container_id[:12], wait=wait)


def state(container_id: str) -> dict[str, Any] | None:
    """The container's State (None when it is gone)."""
    docker = sdk()
    try:
        return client().api.inspect_container(container_id).get("State")
    except docker.errors.DockerException:
        return None


# --- leftovers -------------------------------------------------------------------------------

def track(container_id: str) -> None:
    global _atexit_registered
    with _lock:
        _live[container_id] = True
        if not _atexit_registered:
            atexit.register(remove_all_live)
            _atexit_registered = True


def remove_all_live() -> None:
    """Remove every container this process created and still holds (registered with atexit)."""
    for container_id in list(_live):
        remove(container_id)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@define(frozen=True, kw_only=True)
class SandboxContainer:
    """One container made by this plugin, as ``docker ps`` sees it."""

    id: str
    name: str
    status: str
    image: str
    session: str
    owner_pid: int | None
    owner_host: str
    created: str

    @property
    def orphaned(self) -> bool:
        """Its owner process is gone (known only for containers of this host)."""
        if self.owner_host != socket.gethostname() or self.owner_pid is None:
            return False
        return not _pid_alive(self.owner_pid)


def containers() -> Iterator[SandboxContainer]:
    """Every container labelled ``rlm.env=docker``, running or not."""
    for c in client().api.containers(all=True, filters={"label": f"{LABEL_ENV}={ENV_LABEL_VALUE}"}):
        labels = c.get("Labels") or {}
        pid = labels.get(LABEL_OWNER_PID, "")
        yield SandboxContainer(
            id=c["Id"], name=(c.get("Names") or ["?"])[0].lstrip("/"), status=c.get("Status", ""),
            image=c.get("Image", ""), session=labels.get(LABEL_SESSION, ""),
            owner_pid=int(pid) if pid.isdigit() else None, owner_host=labels.get(LABEL_OWNER_HOST, ""),
            created=str(c.get("Created", "")),
        )


def prune(*, everything: bool = False, dry_run: bool = False) -> list[SandboxContainer]:
    """Remove leftover sandbox containers: those whose owner process (on this host) died; every one with
    ``everything`` (also those of live processes and other hosts sharing the engine)."""
    removed = []
    for c in containers():
        if everything or c.orphaned:
            if not dry_run:
                remove(c.id)
            removed.append(c)
    return removed


_pruned_once = False


def prune_orphans_once() -> None:
    """At the first session of a process: remove what dead processes of this host left behind."""
    global _pruned_once
    if _pruned_once:
        return
    _pruned_once = True
    try:
        gone = [c for c in containers() if c.orphaned]
        for c in gone:
            remove(c.id)
        if gone:
            log.info("docker_orphans_removed", count=len(gone))
    except Exception as exc:  # noqa: BLE001 - best effort
        log.info("docker_orphan_prune_failed", error=str(exc))
