"""``rlm doctor``'s docker check: the SDK, the engine and the image.

A missing engine or image is a warning (the docker environment is optional)
unless ``[rlm] environment = "docker"``, when it is a failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rlm.doctor import Check

from rlm_env_docker.config import SECTION, DockerEnvConfig, resolve_image


def check_docker(config: Any) -> Iterator[Check]:
    from rlm.errors import SandboxError

    from rlm_env_docker import engine

    needed = getattr(config, "environment", "") == "docker"
    bad = "fail" if needed else "warn"
    try:
        engine.sdk()
    except SandboxError as exc:
        yield Check(status=bad, summary=f"docker environment: {exc.message}", fix=exc.fix)
        return
    why = engine.reachable(timeout=3)
    if why is not None:
        yield Check(status=bad, summary=f"docker environment: {engine.NOT_RUNNING.message} ({why[:120]})",
                    fix=engine.NOT_RUNNING.fix)
        return
    yield Check(status="ok", summary="docker engine reachable")
    options = config.plugin(SECTION) if hasattr(config, "plugin") else None
    image = resolve_image(options if isinstance(options, DockerEnvConfig) else DockerEnvConfig(), config)
    try:
        present = engine.image_present(image)
    except SandboxError as exc:
        yield Check(status=bad, summary=f"docker image {image}: {exc.message}", fix=exc.fix)
        return
    if present:
        yield Check(status="ok", summary=f"docker image {image} present")
    else:
        yield Check(status="warn" if not needed else "fail",
                    summary=f"docker image {image} is not present locally (the first session pulls it)",
                    fix=engine.IMAGE_FIX.format(image=image))
