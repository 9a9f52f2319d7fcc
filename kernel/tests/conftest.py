"""Shared fixtures of the kernel's tests: fake installed plugins and a hermetic CLI runner.

A *fake distribution* is what an installer leaves behind: a module on a
``sys.path`` entry plus ``<dist>-<version>.dist-info/entry_points.txt``
declaring it in the ``rlm`` group.  The kernel's entry-point reader finds it
exactly as it finds a pip-installed plugin.

The development venv may hold real plugins (other distributions of this
repository, installed editable).  To keep these tests about the kernel,
discovery is limited to the directories a test provides: in-process by
patching :func:`rlm.entrypoints.entry_points` to scan only them, in
subprocesses by a tiny launcher that scans only the ``sys.path`` entries that
came from ``PYTHONPATH`` (where the test puts its fake distributions).  The
slow test in ``test_pip_installed_plugin.py`` checks the unpatched thing in a
fresh venv.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

#: Runs ``rlm.cli.main`` with entry-point discovery limited to the ``PYTHONPATH`` entries.
HERMETIC_LAUNCHER = textwrap.dedent(
    """
    import os, sys
    import rlm.entrypoints as _ep
    _allowed = {os.path.realpath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p}
    _scan = _ep.entry_points
    def entry_points(group, *, paths=None):
        if paths is None:
            paths = [p for p in sys.path if p and os.path.realpath(p) in _allowed]
        return _scan(group, paths=paths)
    _ep.entry_points = entry_points
    from rlm.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: builds and pip-installs distributions (tens of seconds)")


class FakeSite:
    """A directory of fake installed distributions (module + ``*.dist-info``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: list[str] = []

    def add(
        self,
        dist: str,
        entry_points: Mapping[str, str],
        modules: Mapping[str, str] | None = None,
        *,
        version: str = "1.0",
        group: str = "rlm",
    ) -> Path:
        """Install ``dist``: write each module's source and its ``entry_points.txt``."""
        for module, source in (modules or {}).items():
            target = self.root / (module.replace(".", "/") + ".py")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(source), encoding="utf-8")
            self.modules.append(module)
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
        lines = [f"[{group}]", *(f"{name} = {value}" for name, value in entry_points.items())]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        importlib.invalidate_caches()
        return info


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSite]:
    """Fake distributions visible in this process, and no other ``rlm`` entry point."""
    import rlm.entrypoints

    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    scan = rlm.entrypoints.entry_points
    monkeypatch.setattr(
        rlm.entrypoints, "entry_points", lambda group, *, paths=None: scan(group, paths=[str(root)])
    )
    for var in ("RLM_STRICT_PLUGINS", "RLM_DISABLE_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    site = FakeSite(root)
    yield site
    for module in site.modules:
        sys.modules.pop(module, None)


@pytest.fixture
def subprocess_site(tmp_path: Path) -> FakeSite:
    """Fake distributions for subprocesses (pass ``site.root`` as a plugin dir to ``rlm_cli``)."""
    root = tmp_path / "psite"
    root.mkdir()
    return FakeSite(root)


def clean_env(home: Path, extra: Mapping[str, str] | None = None, pythonpath: Sequence[Path] = ()) -> dict[str, str]:
    """A minimal environment: no RLM_* or provider variables, HOME in the test's tmp dir."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "NO_COLOR": "1",
        "COLUMNS": "100",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    env.update(extra or {})
    return env


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project directory under a fake HOME (so no rlm.toml is found above it)."""
    path = tmp_path / "home" / "project"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def rlm_cli(project: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``rlm ARGS`` in a subprocess with a clean environment, cwd = ``project``.

    ``plugin_dirs`` go on ``PYTHONPATH``; installed third-party plugins are hidden
    (see the module docstring).  Returns the completed process (text mode).
    """

    def run(
        *args: str,
        env: Mapping[str, str] | None = None,
        plugin_dirs: Sequence[Path] = (),
        cwd: Path | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", HERMETIC_LAUNCHER, *args],
            cwd=cwd or project,
            env=clean_env(project.parent, env, plugin_dirs),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def run_python(project: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python -c CODE`` of this interpreter with a clean environment, cwd = ``project``."""

    def run(code: str, *, env: Mapping[str, str] | None = None, plugin_dirs: Sequence[Path] = ()) -> (
        subprocess.CompletedProcess[str]
    ):
        return subprocess.run(
            [sys.executable, "-c", code],
            cwd=project,
            env=clean_env(project.parent, env, plugin_dirs),
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


@pytest.fixture
def hermetic_launcher() -> str:
    """The source of the launcher ``rlm_cli`` runs (for tests that run it themselves)."""
    return HERMETIC_LAUNCHER
