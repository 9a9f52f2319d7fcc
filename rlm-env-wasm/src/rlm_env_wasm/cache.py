"""Compiled-module cache: compile the runtime once, ``deserialize_file`` it afterwards.

Compiling the 26 MB CPython takes seconds; loading a serialized module takes
about a millisecond.  A serialized module only loads under the same wasmtime
version and Config, so the file name carries both (plus the runtime's digest
and the machine).  Files are written atomically (temporary file + rename) in
a directory only the current user may write: loading a serialized module runs
its native code, so a directory others can write is not used (the module is
then compiled in memory every time, with a warning).  ``deserialize_file``
maps the file into memory, so a cache file is never rewritten in place (a
mapped file truncated under a running session crashes the process with
SIGBUS): it is only ever replaced by a rename.
"""

from __future__ import annotations

import os
import platform
import stat
import threading
from pathlib import Path
from typing import Any

from attrs import define
from rlm.atomic import replace_file
from rlm.dirs import cache_dir as rlm_cache_dir
from rlm.errors import SandboxError
from rlm.logging import get_logger

from rlm_env_wasm.engine import CONFIG_TAG, import_wasmtime, wasmtime_version
from rlm_env_wasm.runtime import Runtime

log = get_logger(__name__)

_compile_lock = threading.Lock()


def default_cache_dir() -> Path:
    """``wasm`` in rlm's cache directory (:func:`rlm.dirs.cache_dir`: ``$RLM_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/rlm``, else the platform's, e.g. ``~/.cache/rlm`` on Linux)."""
    return rlm_cache_dir("wasm")


def cache_dir(configured: str = "") -> Path:
    return Path(configured).expanduser() if configured else default_cache_dir()


@define(frozen=True, kw_only=True)
class ModuleCache:
    """Where the serialized module of ``runtime`` lives, and how to get a Module for an Engine."""

    directory: Path
    runtime: Runtime

    @property
    def path(self) -> Path:
        version = wasmtime_version() or "unknown"
        name = f"{self.runtime.label}-{self.runtime.sha256[:16]}-wasmtime{version}-{CONFIG_TAG}-{platform.machine()}"
        return self.directory / f"{name}.cwasm"

    def is_warm(self) -> bool:
        return self.path.is_file()

    def _directory_is_private(self) -> bool:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            info = self.directory.stat()
        except OSError as exc:
            log.warning("wasm_cache_unavailable", directory=str(self.directory), error=str(exc))
            return False
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            log.warning("wasm_cache_not_owned", directory=str(self.directory))
            return False
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            log.warning("wasm_cache_writable_by_others", directory=str(self.directory),
                        fix="chmod go-w the directory")
            return False
        return True

    def load(self, engine: Any) -> tuple[Any, str]:
        """A Module for ``engine`` and how it was obtained (``"cache"`` or ``"compiled"``)."""
        wasmtime = import_wasmtime()
        usable = self._directory_is_private()
        path = self.path
        if usable and path.is_file():
            try:
                return wasmtime.Module.deserialize_file(engine, str(path)), "cache"
            except wasmtime.WasmtimeError as exc:  # another wasmtime build or CPU: compile again
                log.info("wasm_cache_stale", path=str(path), error=str(exc))
        with _compile_lock:
            if usable and path.is_file():  # another session compiled it meanwhile
                try:
                    return wasmtime.Module.deserialize_file(engine, str(path)), "cache"
                except wasmtime.WasmtimeError:
                    pass
            module = self.compile(engine)
            if usable:
                self._store(module, path)
        return module, "compiled"

    def compile(self, engine: Any) -> Any:
        wasmtime = import_wasmtime()
        data = self.runtime.read_verified()
        log.info("wasm_compile_started", runtime=self.runtime.path, size=len(data))
        try:
            return wasmtime.Module(engine, data)
        except wasmtime.WasmtimeError as exc:
            raise SandboxError(f"wasmtime cannot compile {self.runtime.path}: {exc}",
                               fix="use the bundled runtime (leave [plugins.env-wasm] wasm_path empty)") from exc

    def _store(self, module: Any, path: Path) -> None:
        try:
            blob = module.serialize()
            replace_file(path, blob, sync=True)
        except (OSError, import_wasmtime().WasmtimeError) as exc:
            log.warning("wasm_cache_write_failed", path=str(path), error=str(exc))
            return
        log.info("wasm_cache_written", path=str(path), size=len(blob))

    def ensure(self) -> str:
        """Compile and cache now unless cached already; returns ``"cache"`` or ``"compiled"``."""
        from rlm_env_wasm.engine import new_engine

        _module, how = self.load(new_engine())
        return how


def module_cache(runtime: Runtime, configured_dir: str = "") -> ModuleCache:
    return ModuleCache(directory=cache_dir(configured_dir), runtime=runtime)


__all__ = ["ModuleCache", "SandboxError", "cache_dir", "default_cache_dir", "module_cache"]
