"""``rlm env wasm warm``: compile the WASI CPython once and cache it, so the first session starts fast."""

from __future__ import annotations

import time


def warm() -> int:
    """Compile the wasm environment's interpreter now (cached under rlm's cache directory, ~/.cache/rlm/wasm on Linux)."""
    from rlm.cli import plugin_manager
    from rlm.config import load_config
    from rlm.registry import collect

    from rlm_env_wasm.cache import module_cache
    from rlm_env_wasm.config import SECTION, WasmEnvConfig
    from rlm_env_wasm.runtime import resolve

    try:
        sections = {name: reg.load() for name, reg in collect(plugin_manager(), "config_section", strict=False).items()}
        options = load_config(sections=sections).plugin(SECTION)
    except Exception:  # noqa: BLE001 - no usable config: the defaults
        options = None
    if not isinstance(options, WasmEnvConfig):
        options = WasmEnvConfig()
    cache = module_cache(resolve(options.wasm_path, options.wasm_sha256), options.cache_dir)
    started = time.perf_counter()
    how = cache.ensure()
    took = time.perf_counter() - started
    print(f"{'already cached' if how == 'cache' else 'compiled'}: {cache.path} ({took:.2f}s)")
    return 0
