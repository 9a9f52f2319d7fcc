"""wasmtime itself: importing it (with the exact install hint), its version, and Engines.

Every session gets its own :class:`wasmtime.Engine`, because an epoch
increment interrupts every store of an engine.  All engines are built from the
same Config, so one serialized module (see :mod:`rlm_env_wasm.cache`) fits them all.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

from rlm.errors import SandboxError

WASMTIME_HINT = "pip install 'wasmtime>=50,<51'"

#: Names the Config below; part of the cache key (a serialized module only loads under the same Config).
CONFIG_TAG = "epoch"


def import_wasmtime() -> ModuleType:
    """The ``wasmtime`` module, or SandboxError with the pip command that installs it."""
    try:
        import wasmtime
    except ImportError as exc:
        raise SandboxError(f"the wasm environment needs the wasmtime package ({exc})", fix=WASMTIME_HINT) from exc
    return wasmtime


@functools.cache
def wasmtime_version() -> str:
    """The installed wasmtime version ("" when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wasmtime")
    except PackageNotFoundError:
        return ""


def new_engine() -> Any:
    """A fresh Engine with epoch interruption on (the Config behind :data:`CONFIG_TAG`)."""
    wasmtime = import_wasmtime()
    config = wasmtime.Config()
    config.epoch_interruption = True
    return wasmtime.Engine(config)
