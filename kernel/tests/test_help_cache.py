"""The cache of ``rlm --help`` (:mod:`rlm.cli_help`): reused while valid, never stale.

The text is rebuilt when a plugin is installed or removed, when an installed
plugin's source changes (editable installs), when ``RLM_DISABLE_PLUGINS``
changes; a text naming a broken plugin is not stored, nor reused while a file it
depends on was modified in the last seconds (coarse timestamps).  On a cache hit,
``rlm --help`` imports neither pluggy, attrs nor structlog (checked through
``sys.modules`` in a subprocess, never by timing).  The watch list is checked
in process: a hit scans no entry point; every change it covers misses; the
``rlm`` script and ``python -m rlm`` keep one entry each.  ``rlm COMMAND`` is
dispatched from the cached commands without importing the plugins, except in
strict mode, and a command that no longer imports is reported as without cache.
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


def _age(*roots: Path, seconds: int = 60) -> None:
    """Set the mtime of everything under ``roots`` to ``seconds`` ago (a path modified in the last
    seconds keeps the text from being stored: the project folder is the ``sys.path`` entry of ``-c``)."""
    then = time.time() - seconds
    for root in roots:
        for path in [root, *root.rglob("*")]:
            os.utime(path, (then, then))


def _cache_files(project: Path) -> list[Path]:
    return sorted((project.parent / ".cache" / "rlm" / "help").glob("*.txt"))


def test_help_is_cached_and_rebuilt_when_a_plugin_is_added_or_removed(rlm_cli, subprocess_site, project):
    site = subprocess_site
    site.add("rlm-alpha", {"alpha": "alpha_mod"}, _plugin("alpha", "The alpha command."))
    _age(site.root, project)
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
    _age(site.root, project)
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
                                                                project, with_plugin):
    dirs = []
    if with_plugin:
        subprocess_site.add("rlm-alpha", {"alpha": "alpha_mod"}, _plugin("alpha", "The alpha command."))
        dirs = [subprocess_site.root]
    _age(subprocess_site.root, project)  # files written in the last seconds are never trusted
    code = hermetic_launcher.replace("sys.exit(main(sys.argv[1:]))", f"code = main(['--help'])\n{DUMP}\nsys.exit(code)")
    first = run_python(code, plugin_dirs=dirs)  # builds and stores the text
    assert first.returncode == 0, first.stderr
    second = run_python(code, plugin_dirs=dirs)  # served from the cache
    assert second.returncode == 0, second.stderr
    assert second.stdout.split("\nMODULES=")[0] == first.stdout.split("\nMODULES=")[0]
    assert second.stdout.startswith("Usage: rlm COMMAND")
    modules = set(json.loads(second.stdout.rsplit("MODULES=", 1)[1]))
    avoided = ("pluggy", "attrs", "attr", "structlog", "cyclopts", "cattrs", "rich", "importlib.metadata",
               "importlib_metadata", "alpha_mod", "importlib.machinery")
    assert sorted(m for m in modules if m.split(".")[0] in avoided or m in avoided) == []


# --- the watch list, in this process ------------------------------------------------------------

@pytest.fixture
def watched(fake_site, tmp_path, monkeypatch):
    """The help cache of this process, in ``tmp_path``, with ``sys.path`` reduced to the fake site."""
    from rlm import cli_help

    monkeypatch.setenv("RLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("RLM_HELP_CACHE", raising=False)
    monkeypatch.setattr("sys.path", [str(fake_site.root)])
    fake_site.add("rlm-alpha", {"alpha": "alpha_pkg.hooks"},
                  {"alpha_pkg.__init__": "", "alpha_pkg.hooks": _plugin("alpha", "A.")["alpha_mod"]})
    _age(fake_site.root)

    def stored(text: str = "the help") -> None:
        snap = cli_help.snapshot()
        assert snap.storable
        cli_help.store(snap, text)
        assert cli_help.load() == text

    return cli_help, stored


def test_a_cache_hit_scans_no_entry_point(watched, monkeypatch):
    cli_help, stored = watched
    stored()

    def no_scan(*args, **kwargs):
        raise AssertionError("a cache hit must not scan the entry points")

    monkeypatch.setattr("rlm.entrypoints.entry_points", no_scan)
    assert cli_help.load() == "the help"


@pytest.mark.parametrize("change", ["edit source", "new module", "new distribution", "entry points edited",
                                    "path entry", "disabled"])
def test_any_change_of_what_the_text_depends_on_misses(watched, fake_site, monkeypatch, tmp_path, change):
    cli_help, stored = watched
    stored()
    root = fake_site.root
    if change == "edit source":  # same size, another mtime (an editor saving in place)
        hooks = root / "alpha_pkg" / "hooks.py"
        hooks.write_text(hooks.read_text(encoding="utf-8").replace("A.", "B."), encoding="utf-8")
    elif change == "new module":
        (root / "alpha_pkg" / "more.py").write_text("", encoding="utf-8")
    elif change == "new distribution":  # a dependency installed: no rlm entry point of its own
        (root / "dep-1.0.dist-info").mkdir()
    elif change == "entry points edited":
        ep = next(root.glob("rlm_alpha-*.dist-info")) / "entry_points.txt"
        ep.write_text(ep.read_text(encoding="utf-8") + "beta = beta_mod\n", encoding="utf-8")
    elif change == "path entry":
        other = tmp_path / "other"
        other.mkdir()
        monkeypatch.setattr("sys.path", [str(other), str(root)])
    else:
        monkeypatch.setenv("RLM_DISABLE_PLUGINS", "alpha")
    assert cli_help.load() is None


def test_a_text_is_not_stored_while_a_watched_path_is_fresh(watched, fake_site):
    cli_help, stored = watched
    stored()
    (fake_site.root / "alpha_pkg" / "hooks.py").write_text("", encoding="utf-8")  # modified just now
    snap = cli_help.snapshot()
    assert not snap.storable
    cli_help.store(snap, "newer help")
    assert cli_help.load() is None  # neither the old text (its watch list changed) nor the new one


def test_the_script_and_python_m_rlm_keep_one_entry_each(watched, fake_site, monkeypatch, tmp_path):
    cli_help, stored = watched
    root = str(fake_site.root)
    bin_dir = tmp_path / "bin"  # sys.path[0] of the `rlm` script; `python -m rlm` has the current folder
    bin_dir.mkdir()
    _age(bin_dir)
    stored("from python -m rlm")
    monkeypatch.setattr("sys.path", [str(bin_dir), root])
    stored("from the script")
    assert cli_help.load() == "from the script"
    monkeypatch.setattr("sys.path", [root])
    assert cli_help.load() == "from python -m rlm"  # not overwritten by the other
    for n in range(cli_help.MAX_ENTRIES + 2):  # only the most recent few are kept
        other = tmp_path / f"other{n}"
        other.mkdir()
        _age(other)
        monkeypatch.setattr("sys.path", [str(other), root])
        stored(f"other {n}")
    monkeypatch.setattr("sys.path", [root])
    assert cli_help.load() is None


# --- rlm COMMAND dispatched from the cached commands ----------------------------------------------

BODY = """
import json, sys

def main():
    print("ALPHA " + json.dumps({"hooks_imported": "alpha_mod" in sys.modules, "pluggy": "pluggy" in sys.modules}))
"""


def _alpha_site(site, project) -> None:
    site.add("rlm-alpha", {"alpha": "alpha_mod"}, {**_plugin("alpha", "The alpha command."), "alpha_body": BODY})
    _age(site.root, project)


def _alpha_run(rlm_cli, site, **env) -> dict:
    result = rlm_cli("alpha", plugin_dirs=[site.root], env=env)
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("ALPHA "))
    return json.loads(line[len("ALPHA "):])


def test_a_command_runs_from_the_cache_without_importing_the_plugins(rlm_cli, subprocess_site, project):
    site = subprocess_site
    _alpha_site(site, project)
    assert _alpha_run(rlm_cli, site) == {"hooks_imported": True, "pluggy": True}  # no cache yet: stores it
    assert _alpha_run(rlm_cli, site) == {"hooks_imported": False, "pluggy": False}  # dispatched from the cache
    # strict mode bypasses the cache: discovery runs (and fails loudly for a broken plugin) first
    assert _alpha_run(rlm_cli, site, RLM_STRICT_PLUGINS="1") == {"hooks_imported": True, "pluggy": True}
    assert _alpha_run(rlm_cli, site, RLM_HELP_CACHE="0") == {"hooks_imported": True, "pluggy": True}


def test_a_removed_or_broken_command_is_not_run_from_the_cache(rlm_cli, subprocess_site, project):
    site = subprocess_site
    hooks = _plugin("alpha", "The alpha command.")["alpha_mod"].replace("alpha_body:main", "alpha_cmds.body:main")
    site.add("rlm-alpha", {"alpha": "alpha_mod"},
             {"alpha_mod": hooks, "alpha_cmds.__init__": "", "alpha_cmds.body": BODY})
    _age(site.root, project)
    _alpha_run(rlm_cli, site)
    assert _alpha_run(rlm_cli, site)["pluggy"] is False  # cached
    # the command's module is gone, in a folder the cache does not watch: the cache is valid, the import
    # fails, and the plugin manager's path reports it as it always did
    (site.root / "alpha_cmds" / "body.py").unlink()
    broken = rlm_cli("alpha", plugin_dirs=[site.root])
    assert broken.returncode == 3 and "cannot be imported" in broken.stderr, broken.stderr
    shutil.rmtree(next(site.root.glob("rlm_alpha-*.dist-info")))  # uninstalled
    gone = rlm_cli("alpha", plugin_dirs=[site.root])
    assert gone.returncode == 2 and "unknown command 'alpha'" in gone.stderr
