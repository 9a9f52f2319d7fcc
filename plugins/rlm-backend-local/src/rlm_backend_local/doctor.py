"""``rlm doctor``'s checks for the local model: the llama.cpp runtime, the model, when it is used.

Missing pieces are warnings (the local model is optional when a provider
key is set) with the exact commands to install them (``pip install
rlm-backend-local[model]`` installs all of it: prebuilt wheels, nothing is
compiled).  Nothing is imported or started: the checks look at
distribution metadata and the cache only.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlm_backend_local.server import RUNTIME, RUNTIME_VERSION, install_command, missing_server_modules
from rlm_backend_local.settings import SECTION, settings_from


def check(config: Any) -> Iterator[Any]:
    from rlm.doctor import Check

    local = settings_from(config.plugin(SECTION))
    yield from _check_runtime(local, Check)
    yield from _check_model(local, Check)
    yield from _check_use(config, Check)


def _check_runtime(local: Any, Check: Any) -> Iterator[Any]:
    from importlib import metadata

    if local.python and local.python != sys.executable:
        ok = os.access(local.python, os.X_OK)
        yield Check(status="ok" if ok else "fail",
                    summary=f"local model: the llama.cpp server runs with {local.python}"
                            + ("" if ok else " (not an executable)"),
                    fix=None if ok else "fix [plugins.backend-local] python")
        return
    if missing_server_modules():
        yield Check(status="warn", summary=f"local model: the llama.cpp runtime {RUNTIME} is not installed",
                    fix=f"{install_command()}  (a prebuilt wheel; or scripts/install-local-model.sh)")
        return
    try:
        version = metadata.version(RUNTIME)
    except metadata.PackageNotFoundError:
        version = "unknown"
    if version != RUNTIME_VERSION:
        yield Check(status="warn", summary=f"local model: {RUNTIME} {version} (tested with {RUNTIME_VERSION})",
                    fix=install_command())
    else:
        yield Check(status="ok", summary=f"local model: llama.cpp runtime {RUNTIME} {version}")


def _check_model(local: Any, Check: Any) -> Iterator[Any]:
    from rlm.errors import ModelNotFoundError

    from rlm_backend_local.models import CATALOG, is_verified, locate_parts, model_file

    if local.model_path:
        from rlm_backend_local.models import check_gguf

        try:
            check_gguf(Path(local.model_path).expanduser())
        except ModelNotFoundError as exc:
            yield Check(status="fail", summary=f"local model: {exc.message}", fix=exc.fix)
            return
        yield Check(status="ok", summary=f"local model: {local.model_path} (model_path)")
        return
    spec = CATALOG.get(local.model)
    if spec is None:
        yield Check(status="fail", summary=f"local model: unknown model {local.model!r}",
                    fix=f"set [plugins.backend-local] model to one of {', '.join(sorted(CATALOG))}")
        return
    path = model_file(spec)
    if is_verified(path, spec):
        yield Check(status="ok", summary=f"local model: {spec.description}, assembled and verified at {path}")
        return
    status = locate_parts(spec)
    if status.complete:
        yield Check(status="ok", summary=f"local model: {spec.description}; its wheels are installed, "
                                         f"it is assembled into {path} on first use")
    else:
        yield Check(status="warn", summary=f"local model: {spec.name} is not installed ({'; '.join(status.missing)})",
                    fix=spec.install_command(sys.executable))


def _check_use(config: Any, Check: Any) -> Iterator[Any]:
    from rlm_backend_local.resolve import local_model_name, provider_configured

    local = settings_from(config.plugin(SECTION))
    reason = provider_configured(config.model, config, os.environ)
    if config.backend == "local" or config.model.startswith("local/"):
        yield Check(status="ok", summary=f"local model: used for model {config.model!r}")
    elif "model" in getattr(config, "explicit", ()):
        yield Check(status="ok", summary=f"local model: not used for the model you named, {config.model!r} "
                                         "(it stands in only when no model was named; local/... models use it)")
    elif reason is None and local.default_when_no_key:
        yield Check(status="ok", summary=f"local model: no provider key set, so runs use the local model "
                                         f"{local_model_name(config)} (model strings local/... always do)")
    else:
        why = reason or "default_when_no_key = false"
        yield Check(status="ok", summary=f"local model: used for local/... models only ({why})")
