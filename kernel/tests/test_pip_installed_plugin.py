"""A real third-party plugin distribution, pip-installed into a fresh venv next to the kernel.

The distribution declares two ``rlm`` entry points: one whose import raises
and one that works (a command).  The venv's own ``rlm`` script must list the
broken one, keep ``--help`` and the good command working, and turn the broken
one into a one-line error (exit 3) under ``RLM_STRICT_PLUGINS=1``.

Slow (builds two distributions, installs the kernel's dependencies): marked
``slow`` but meant to run in CI too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

KERNEL = Path(__file__).resolve().parents[1]

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "rlm-thirdparty-demo"
version = "0.4.2"
requires-python = ">=3.11"
dependencies = ["rlm-kernel"]

[project.entry-points.rlm]
demo-broken = "rlm_thirdparty_demo.broken"
demo-good = "rlm_thirdparty_demo.good"

[tool.setuptools]
packages = ["rlm_thirdparty_demo"]
"""

BROKEN = "import rlm_thirdparty_demo_missing_dependency  # not installed: the plugin is broken\n"

GOOD = '''\
"""A working plugin from the same distribution."""
from rlm import hookimpl


@hookimpl
def rlm_register_commands(register):
    register("demo-hello", "rlm_thirdparty_demo.good:hello", help="Hello from a pip-installed plugin.")


def hello() -> int:
    print("hello from demo")
    return 0
'''


def _run(cmd: list[str], *, env: dict[str, str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> tuple[Path, dict[str, str], Path]:
    root = tmp_path_factory.mktemp("pipplugin")
    dist = root / "dist-src"
    (dist / "rlm_thirdparty_demo").mkdir(parents=True)
    (dist / "pyproject.toml").write_text(PYPROJECT, encoding="utf-8")
    (dist / "rlm_thirdparty_demo" / "__init__.py").write_text('"""Demo plugins."""\n', encoding="utf-8")
    (dist / "rlm_thirdparty_demo" / "broken.py").write_text(BROKEN, encoding="utf-8")
    (dist / "rlm_thirdparty_demo" / "good.py").write_text(GOOD, encoding="utf-8")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("RLM_", "PYTHON", "VIRTUAL_ENV", "PIP_REQUIRE"))}
    env["HOME"] = str(root)
    env["NO_COLOR"] = "1"
    target = root / "venv"
    created = _run([sys.executable, "-m", "venv", str(target)], env=env, cwd=root)
    assert created.returncode == 0, created.stderr
    bin_dir = target / ("Scripts" if os.name == "nt" else "bin")
    install = _run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q", str(KERNEL), str(dist)],
        env=env, cwd=root,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    project = root / "project"
    project.mkdir()
    return bin_dir, env, project


@pytest.mark.slow
def test_pip_installed_broken_plugin(venv):
    bin_dir, env, project = venv
    rlm = str(bin_dir / "rlm")

    result = _run([rlm, "plugins", "--json"], env=env, cwd=project)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["demo-broken"]["status"] == "broken"
    assert rows["demo-broken"]["distribution"] == "rlm-thirdparty-demo"
    assert rows["demo-broken"]["version"] == "0.4.2"
    assert "rlm_thirdparty_demo_missing_dependency" in rows["demo-broken"]["error"]
    assert rows["demo-good"]["status"] == "loaded"
    assert rows["demo-good"]["provides"] == {"command": ["demo-hello"]}
    assert "plugin_broken" in result.stderr

    result = _run([rlm, "plugins"], env=env, cwd=project)
    assert result.returncode == 0
    assert "demo-broken  [broken]  rlm-thirdparty-demo 0.4.2" in result.stdout

    result = _run([rlm, "--help"], env=env, cwd=project)
    assert result.returncode == 0, result.stderr
    assert "Hello from a pip-installed plugin." in result.stdout
    assert "Broken plugins (see `rlm plugins`): demo-broken" in result.stdout

    result = _run([rlm, "demo-hello"], env=env, cwd=project)
    assert (result.returncode, result.stdout) == (0, "hello from demo\n")

    result = _run([rlm, "doctor"], env=env, cwd=project)
    assert result.returncode == 1
    assert "plugin demo-broken is broken" in result.stdout

    result = _run([rlm, "--help"], env={**env, "RLM_STRICT_PLUGINS": "1"}, cwd=project)
    assert result.returncode == 3
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("rlm: error: plugin 'demo-broken' (rlm-thirdparty-demo) failed to load: ")
    assert "Traceback" not in result.stderr

    result = _run([rlm, "doctor"], env={**env, "RLM_DISABLE_PLUGINS": "demo-broken", "RLM_STRICT_PLUGINS": "1",
                                        "OPENAI_API_KEY": "x"}, cwd=project)
    assert "plugin demo-broken is disabled" in result.stdout
    assert "FAIL" not in result.stdout


@pytest.mark.slow
def test_pip_installed_kernel_help_imports_nothing_heavy(venv):
    bin_dir, env, project = venv
    code = textwrap.dedent(
        """
        import io, json, sys, contextlib
        from rlm.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            main(["--help"])
        print(json.dumps(sorted(sys.modules)))
        """
    )
    result = _run([str(bin_dir / "python"), "-c", code], env={**env, "RLM_DISABLE_PLUGINS": "demo-broken"},
                  cwd=project)
    assert result.returncode == 0, result.stderr
    modules = set(json.loads(result.stdout))
    assert "rlm_thirdparty_demo.good" in modules
    heavy = ("litellm", "openai", "anthropic", "docker", "wasmtime", "streamlit", "mcp", "structlog", "cyclopts")
    assert sorted(m for m in modules if m.split(".")[0] in heavy) == []
