"""``rlm doctor`` checks of the wasm environment: wasmtime, the runtime's digest, the compile cache.

A missing piece is a failure when ``environment = "wasm"`` is configured, a
warning otherwise.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

from rlm.doctor import Check
from rlm.errors import SandboxError

from rlm_env_wasm.cache import module_cache
from rlm_env_wasm.config import SECTION, WasmEnvConfig
from rlm_env_wasm.engine import WASMTIME_HINT, wasmtime_version
from rlm_env_wasm.runtime import resolve


def _options(config: Any) -> WasmEnvConfig:
    options = config.plugin(SECTION) if config is not None else None
    return options if isinstance(options, WasmEnvConfig) else WasmEnvConfig()


def check(config: Any) -> Iterator[Check]:
    in_use = getattr(config, "environment", None) == "wasm"
    missing = "fail" if in_use else "warn"
    options = _options(config)

    if importlib.util.find_spec("wasmtime") is None:
        yield Check(status=missing, summary="wasm environment: wasmtime is not installed", fix=WASMTIME_HINT)
    else:
        version = wasmtime_version()
        if version.split(".")[0] != "50":
            yield Check(status="warn", summary=f"wasm environment: wasmtime {version} (tested with 50.x)",
                        fix=WASMTIME_HINT)
        else:
            yield Check(status="ok", summary=f"wasm environment: wasmtime {version}")

    try:
        runtime = resolve(options.wasm_path, options.wasm_sha256)
        runtime.read_verified()
    except SandboxError as exc:
        yield Check(status=missing, summary=f"wasm environment: {exc.message}", fix=exc.fix)
        return
    yield Check(status="ok", summary=f"wasm environment: runtime {runtime.path} (sha256 verified)")

    cache = module_cache(runtime, options.cache_dir)
    if cache.is_warm():
        yield Check(status="ok", summary=f"wasm environment: compiled module cached ({cache.path})")
    else:
        yield Check(status="warn",
                    summary="wasm environment: the interpreter is not compiled yet (the first session "
                            "compiles it: seconds to tens of seconds)",
                    fix="run `rlm env wasm warm` once")
