"""The cache of ``rlm --help`` (:mod:`rlm.cli_help`): reused while valid, never stale.

The text is rebuilt when a plugin is installed or removed, when an installed
plugin's source changes (editable installs), when ``RLM_DISABLE_PLUGINS``
changes; a text naming a broken plugin is not stored, nor reused while a file it
depends on was modified in the last seconds (coarse timestamps).  On a cache hit,
``rlm --help`` imports neither pluggy, attrs nor structlog (checked through
``sys.modules`` in a subprocess, never by timing).
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
import time
from pathlib import Path

import pytest

DUMP = "import json, sys; sys.__stdout__.write('\\nMODULES=' + json.dumps(sorted(sys.modules)))"


def _plugin(command: str, help_text: str) -> dict[str, str]:
    return {f"{command}_mod": f"""
        from rlm import hookimpl

        @hookimpl
        def rlm_register_commands(register):
            register("{command}", "{command}_body:main", help="{help_text}")
        """}


def _age(root: Path, seconds: int = 60) -> None:
    """Set the mtime of everything under ``root`` to ``seconds`` ago."""
    then = time.time() - seconds
    for path in [root, *root.rglob("*")]:
        os.utime(path, (then, then))


def _cache_files(project: Path) -> list[Path]:
    return sorted((project.parent / ".cache" / "rlm" / "help").glob("*.txt"))


def test_help_is_cached_and_rebuilt_when_a_plugin_is_added_or_removed(rlm_cli, subprocess_site, project):
    site = subprocess_site
    site.add("rlm-alpha", {"alpha": "alpha_mod"}, _plugin("alpha", "The alpha command."))
    _age(site.root)
    first = rlm_cli("--help", plugin_dirs=[site.root])
    assert first.returncode == 0 and "The alpha command." in first.stdout
    (cache,) = _cache_files(project)  # stored
    stored = cache.stat().st_ino  # a store replaces the file: another inode

    again = rlm_cli("--help", plugin_dirs=[site.root])
    assert again.stdout == first.stdout
    assert cache.stat().st_ino == stored  # served from the cache, not rebuilt and stored again

    beta = site.add("rlm-beta", {"beta": "beta_mod"}, _plugin("beta", "The beta command."))
    added = rlm_cli("--help", plugin_dirs=[site.root])
    assert "The alpha command." in added.stdout and "The beta command." in added.stdout

    shutil.rmtree(beta)  # uninstalled: its metadata folder is gone
    removed = rlm_cli("--help", plugin_dirs=[site.root])
    assert "The alpha command." in removed.stdout and "The beta command." not in removed.stdout
    assert removed.stdout == first.stdout
    assert len(_cache_files(project)) == 1  # one file per interpreter, overwritten


def test_help_is_rebuilt_when_a_plugin_upgrades_or_its_source_changes(rlm_cli, subprocess_site):
    site = subprocess_site
    info = site.add("rlm-alpha", {"alpha": "alpha_mod"}, _plugin("alpha", "The alpha command."))
    assert "The alpha command." in rlm_cli("--help", plugin_dirs=[site.root]).stdout

    # an editable install: the source changes, the version does not
    source = site.root / "alpha_mod.py"
    source.write_text(textwrap.dedent(_plugin("alpha", "The new alpha command, longer.")["alpha_mod"]),
                      encoding="utf-8")
    assert "The new alpha command, longer." in rlm_cli("--help", plugin_dirs=[site.root]).stdout

    # an upgrade: another version, and the entry point moves to another module
    shutil.rmtree(info)
    site.add("rlm-alpha", {"alpha": "alpha2_mod"}, {"alpha2_mod": _plugin("alpha", "Alpha 2.")["alpha_mod"]},
             version="2.0")
    out = rlm_cli("--help", plugin_dirs=[site.root]).stdout
    assert "Alpha 2." in out and "The new alpha command" not in out


def test_disabling_a_plugin_rebuilds_the_help(rlm_cli, subprocess_site):
    site = subprocess_site
    site.add("rlm-alpha", {"alpha": "alpha_mod"}, _plugin("alpha", "The alpha command."))
    assert "The alpha command." in rlm_cli("--help", plugin_dirs=[site.root]).stdout
    disabled = rlm_cli("--help", plugin_dirs=[site.root], env={"RLM_DISABLE_PLUGINS": "alpha"})
    assert "The alpha command." not in disabled.stdout
    assert "The alpha command." in rlm_cli("--help", plugin_dirs=[site.root]).stdout


def test_a_help_naming_a_broken_plugin_is_not_cached(rlm_cli, subprocess_site, project):
    site = subprocess_site
    site.add("rlm-broken", {"broken": "broken_mod"}, {"broken_mod": "raise RuntimeError('no dependency')\n"})
    result = rlm_cli("--help", plugin_dirs=[site.root])
    assert "Broken plugins (see `rlm plugins`): broken" in result.stdout
    assert _cache_files(project) == []
    # the dependency appears (nothing about the distributions changed): the help says so at once
    (site.root / "broken_mod.py").write_text("", encoding="utf-8")
    assert "Broken plugins" not in rlm_cli("--help", plugin_dirs=[site.root]).stdout


def test_an_unusable_cache_is_ignored(rlm_cli, subprocess_site, project):
    site = subprocess_site
    site.add("rlm-alpha", {"alpha": "alpha_mod"}, _plugin("alpha", "The alpha command."))
    expected = rlm_cli("--help", plugin_dirs=[site.root]).stdout
    (cache,) = _cache_files(project)
    cache.write_bytes(b"\xff\xfe garbage")
    assert rlm_cli("--help", plugin_dirs=[site.root]).stdout == expected
    assert rlm_cli("--help", plugin_dirs=[site.root], env={"RLM_HELP_CACHE": "0"}).stdout == expected
    # a cache directory that cannot be written: the help is still printed
    blocked = project.parent / "blocked"
    blocked.write_text("a file, not a directory", encoding="utf-8")
    result = rlm_cli("--help", plugin_dirs=[site.root], env={"RLM_CACHE_DIR": str(blocked)})
    assert result.returncode == 0 and result.stdout == expected


@pytest.mark.parametrize("with_plugin", [False, True])
def test_cached_help_imports_neither_pluggy_attrs_nor_structlog(run_python, hermetic_launcher, subprocess_site,
                                                                with_plugin):
    dirs = []
    if with_plugin:
        subprocess_site.add("rlm-alpha", {"alpha": "alpha_mod"}, _plugin("alpha", "The alpha command."))
        dirs = [subprocess_site.root]
        _age(subprocess_site.root)  # files written in the last seconds never give a reusable key
    code = hermetic_launcher.replace("sys.exit(main(sys.argv[1:]))", f"code = main(['--help'])\n{DUMP}\nsys.exit(code)")
    first = run_python(code, plugin_dirs=dirs)  # builds and stores the text
    assert first.returncode == 0, first.stderr
    second = run_python(code, plugin_dirs=dirs)  # served from the cache
    assert second.returncode == 0, second.stderr
    assert second.stdout.split("\nMODULES=")[0] == first.stdout.split("\nMODULES=")[0]
    assert second.stdout.startswith("Usage: rlm COMMAND")
    modules = set(json.loads(second.stdout.rsplit("MODULES=", 1)[1]))
    avoided = ("pluggy", "attrs", "attr", "structlog", "cyclopts", "cattrs", "rich", "importlib.metadata",
               "importlib_metadata", "alpha_mod")
    assert sorted(m for m in modules if m.split(".")[0] in avoided or m in avoided) == []
