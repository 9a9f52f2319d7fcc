"""The plugin wiring: hooks, entry point, config section, cheap import."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from rlm.config import load_config
from rlm.environment import Environment, EnvironmentSettings
from rlm.errors import ConfigError
from rlm.plugins import create_plugin_manager
from rlm.registry import collect
from rlm_env_local import plugin
from rlm_env_local.config import SECTION, LocalEnvConfig
from rlm_env_local.session import LocalEnvironment


@pytest.fixture
def pm():
    manager = create_plugin_manager(entry_points=False)
    manager.register(plugin, name="env-local")
    return manager


def _config(pm, **env):
    sections = {name: reg.load() for name, reg in collect(pm, "config_section").items()}
    return load_config(use_file=False, env=env, sections=sections)


def test_registers_the_local_environment_lazily(pm, tmp_path):
    registration = collect(pm, "environment")["local"]
    assert registration.target == "rlm_env_local.session:LocalEnvironment"
    assert registration.plugin == "env-local"
    factory = registration.load()
    assert factory is LocalEnvironment

    async def body():
        env = factory(settings=EnvironmentSettings(workdir=str(tmp_path), allowed_paths=(str(tmp_path),)),
                      callbacks=None)
        assert isinstance(env, Environment)
        assert (await env.execute("6 * 7")).value == "42"
        await env.close()

    asyncio.run(body())


def test_config_section(pm):
    assert collect(pm, "config_section")[SECTION].load() is LocalEnvConfig
    config = _config(pm, RLM_PLUGINS__ENV_LOCAL__MAX_FILE_SIZE_MB="3")
    assert config.plugin(SECTION) == LocalEnvConfig(max_file_size_mb=3)
    with pytest.raises(ConfigError):
        _config(pm, RLM_PLUGINS__ENV_LOCAL__MAX_FILE_SZE_MB="3")


def test_config_refuses_dangerous_extra_modules():
    for name in ("os", "sys", "subprocess", "importlib.util", "os.path", "not a module"):
        with pytest.raises(ValueError):
            LocalEnvConfig(extra_modules=(name,))
    assert LocalEnvConfig(extra_modules=["colorsys"]).extra_modules == ("colorsys",)


def test_entry_point_is_installed():
    names = {ep.name: ep.value for ep in entry_points(group="rlm")}
    assert names.get("env-local") == "rlm_env_local.plugin"


def test_plugin_import_is_cheap():
    code = ("import sys, rlm_env_local.plugin\n"
            "heavy = [m for m in ('RestrictedPython', 'rlm_env_local.session', 'rlm_env_local.process', 'asyncio')"
            " if m in sys.modules]\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
