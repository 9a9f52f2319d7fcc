"""The plugin: cheap to import, command and config section registered, exact hint when mcp is missing."""

from __future__ import annotations

import subprocess
import sys

import pytest
from rlm.errors import PluginError


def test_plugin_import_does_not_import_mcp():
    code = ("import sys, rlm_mcp.plugin, rlm_mcp.config, rlm_mcp.install, rlm_mcp.client_config\n"
            "assert 'mcp' not in sys.modules and 'rlm_mcp.server' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_command_and_section_are_registered():
    from rlm.plugins import create_plugin_manager
    from rlm.registry import collect

    pm = create_plugin_manager()
    commands = collect(pm, "command")
    assert commands["mcp-serve"].target == "rlm_mcp.cli:serve"
    assert commands["mcp install"].target == "rlm_mcp.install:install"  # `rlm mcp install` (group "mcp")
    assert "mcp" in collect(pm, "config_section")


def test_config_section_is_validated(tmp_path):
    from rlm.config import load_config
    from rlm.errors import ConfigError
    from rlm_mcp.config import MCPConfig

    (tmp_path / "rlm.toml").write_text("[plugins.mcp]\nidle_timeout = 5\nmax_sessions = 2\n")
    config = load_config(path=tmp_path / "rlm.toml", env={}, sections={"mcp": MCPConfig})
    assert config.plugin("mcp") == MCPConfig(idle_timeout=5.0, max_sessions=2)
    (tmp_path / "rlm.toml").write_text("[plugins.mcp]\nidle_timout = 5\n")
    with pytest.raises(ConfigError, match="idle_timout"):
        load_config(path=tmp_path / "rlm.toml", env={}, sections={"mcp": MCPConfig})


def test_missing_mcp_names_the_exact_pip_command(monkeypatch):
    from importlib import metadata

    from rlm_mcp import cli

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(cli, "installed_mcp_version", lambda: None)
    with pytest.raises(PluginError) as info:
        cli.require_mcp()
    assert info.value.fix == 'pip install "mcp>=2.3,<3"'
    monkeypatch.setattr(cli, "installed_mcp_version", lambda: "1.27.0")
    with pytest.raises(PluginError, match="mcp 1.27.0 is installed"):
        cli.require_mcp()
    monkeypatch.undo()
    assert cli.installed_mcp_version() == metadata.version("mcp")  # the dist-info shortcut reads the same
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(metadata, "version", missing)
    assert cli.installed_mcp_version() is None


def test_unknown_environment_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "rlm", "mcp-serve", "--env", "nosuch"], cwd=tmp_path,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, check=False)
    assert result.returncode == 3
    assert result.stdout == ""
    assert "environment 'nosuch' is not installed" in result.stderr and "Traceback" not in result.stderr
