"""What the local sandbox tells users about its isolation layers: ``rlm plugins``, ``rlm doctor``, run_start.

:func:`isolation` is the cheap answer (a probe of the kernel, nothing
started) used by ``rlm plugins`` and recorded in each run's ``run_start``
event; :func:`doctor_check` starts a real worker and reports the layers it
actually applied, with the fix for each one missing.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from typing import Any

from rlm_env_local import jail
from rlm_env_local.config import SECTION, LocalEnvConfig


def _options(config: Any) -> LocalEnvConfig:
    options = getattr(config, "plugins", {}).get(SECTION) if config is not None else None
    return options if isinstance(options, LocalEnvConfig) else LocalEnvConfig()


def isolation(config: Any = None) -> dict[str, str]:
    """Layer -> status the next session will have (``active``/``unavailable: why``)."""
    options = _options(config)
    out: dict[str, str] = {}
    for layer, problem in jail.probe().items():
        if problem is None:
            out[layer] = "active" + (f" (ABI {jail.landlock_abi()})" if layer == "landlock" else "")
        elif options.require_os_sandbox:
            out[layer] = f"unavailable, sessions refuse to start: {problem}"
        else:
            out[layer] = f"unavailable: {problem}"
    out["rlimits"] = "active"
    out["scrubbed-env"] = "active"
    out["python-guards"] = "active"
    return out


def doctor_check(config: Any = None) -> Iterator[Any]:
    """``rlm doctor``: start a worker and report each layer it applied."""
    from rlm.doctor import Check
    from rlm.environment import EnvironmentSettings
    from rlm.errors import RLMError

    from rlm_env_local.session import LocalEnvironment

    options = _options(config)
    probe_options = LocalEnvConfig(python=options.python, extra_modules=options.extra_modules,
                                   startup_timeout=options.startup_timeout, require_os_sandbox=False,
                                   spare_workers=0)  # one worker, no spare kept for later
    with tempfile.TemporaryDirectory(prefix="rlm-doctor-") as workdir:
        env = LocalEnvironment(settings=EnvironmentSettings(workdir=workdir, allowed_paths=(workdir,),
                                                            options=probe_options))

        async def start() -> dict[str, str]:
            try:
                await env.start()
                return dict(env.layers)
            finally:
                await env.close()

        try:
            layers = asyncio.run(start())
        except RLMError as exc:
            yield Check(status="fail", summary=f"local sandbox: the worker does not start: {exc}",
                        fix=getattr(exc, "fix", None))
            return
    for layer, status in layers.items():
        if jail.is_active(status):
            yield Check(status="ok", summary=f"local sandbox layer {layer}: {status}")
            continue
        refuses = options.require_os_sandbox and layer in jail.OS_LAYERS
        yield Check(
            status="fail" if refuses else "warn",
            summary=f"local sandbox layer {layer}: {status}" + (" (sessions refuse to start)" if refuses else ""),
            fix="enable it in the kernel (Linux >= 5.13 with Landlock in lsm=, seccomp, user namespaces), use "
                "environment = \"docker\" or \"wasm\", or accept the weaker jail with [plugins.env-local] "
                "require_os_sandbox = false")
