"""Tests of the example plugin, on a fresh plugin manager (no other installed plugin involved)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from rlm.config import RLMConfig, load_config
from rlm.errors import ConfigError
from rlm.plugins import create_plugin_manager
from rlm.registry import collect
from rlm_plugin_example_name import plugin
from rlm_plugin_example_name.settings import SECTION, ExampleSettings


@pytest.fixture
def pm():
    manager = create_plugin_manager(entry_points=False)  # the kernel's builtins, no installed plugins
    manager.register(plugin, name="example-name")
    return manager


def _config(pm, **env) -> RLMConfig:
    sections = {name: reg.load() for name, reg in collect(pm, "config_section").items()}
    return load_config(use_file=False, env=env, sections=sections)


def test_config_section_is_declared_and_validated(pm):
    assert collect(pm, "config_section")[SECTION].load() is ExampleSettings
    config = _config(pm, RLM_PLUGINS__EXAMPLE_NAME__GREETING="Hi")
    assert config.plugin(SECTION) == ExampleSettings(greeting="Hi")
    with pytest.raises(ConfigError, match="unknown key; did you mean greeting"):
        _config(pm, RLM_PLUGINS__EXAMPLE_NAME__GREETNG="Hi")


def test_tool_is_offered_only_when_enabled(pm):
    assert "example_greet" not in collect(pm, "tool", config=_config(pm))
    tools = collect(pm, "tool", config=_config(pm, RLM_PLUGINS__EXAMPLE_NAME__ENABLED="true"))
    assert tools["example_greet"].plugin == "example-name"


def test_tool_handler(pm):
    config = _config(pm, RLM_PLUGINS__EXAMPLE_NAME__ENABLED="1", RLM_PLUGINS__EXAMPLE_NAME__GREETING="Hey")
    spec = collect(pm, "tool", config=config)["example_greet"].load()
    assert spec.parameters["required"] == ["name"]
    assert asyncio.run(spec.handler(name="Ada")) == {"message": "Hey, Ada!"}


def test_command(pm, capsys):
    command = collect(pm, "command")["example-hello"]
    assert command.target == "rlm_plugin_example_name.plugin:hello"  # a string: imported when run
    assert command.load()(name="tests") == 0
    assert capsys.readouterr().out == "Hello, tests! (from rlm-plugin-example-name)\n"


def test_doctor_check(pm):
    run_check = collect(pm, "doctor_check")["example-name"].load()
    checks = list(run_check(config=_config(pm)))
    assert [(c.status, c.summary) for c in checks] == [("ok", "example plugin: example_greet tool off")]


def test_installed_entry_point_is_discovered():
    # needs the distribution installed (pip install -e .): the kernel finds it like any plugin
    manager = create_plugin_manager(disabled=set(), strict=False)
    record = manager.record_for("example-name")
    assert record is not None, "install the plugin first: pip install -e ."
    assert (record.status, record.distribution) == ("loaded", "rlm-plugin-example-name")


def test_importing_the_plugin_is_cheap():
    # the kernel imports plugin.py on every `rlm` run, `rlm --help` included
    code = ("import sys, rlm_plugin_example_name.plugin; "
            "print(sorted(m for m in ('attrs', 'cattrs', 'cyclopts', 'structlog', 'rlm.types', 'rlm.config', "
            "'rlm_plugin_example_name.settings') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
