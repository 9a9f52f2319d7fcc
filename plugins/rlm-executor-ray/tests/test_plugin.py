"""rlm-executor-ray's hooks: the ``ray`` executor and ``[plugins.executor-ray]``, cheap to import, and what
``open_executor`` makes of them."""

from __future__ import annotations

import subprocess
import sys

import pytest
from rlm.config import load_config
from rlm.errors import ConfigError
from rlm.executors import BatchExecutor, open_executor
from rlm.plugins import create_plugin_manager
from rlm.registry import collect
from rlm_executor_ray import plugin
from rlm_executor_ray.executor import RayExecutor
from rlm_executor_ray.plugin import RayOptions


@pytest.fixture
def pm():
    manager = create_plugin_manager(entry_points=False)
    manager.register(plugin, name="executor-ray")
    return manager


def _config(pm, env=None, **overrides):
    sections = {name: reg.load() for name, reg in collect(pm, "config_section").items()}
    return load_config(use_file=False, env=env or {}, sections=sections, **overrides)


def test_registers_the_ray_executor_and_its_settings(pm):
    found = collect(pm, "executor")
    assert sorted(found) == ["local", "ray"]
    assert found["ray"].target == "rlm_executor_ray.executor:RayExecutor"
    assert collect(pm, "config_section")["executor-ray"].load() is RayOptions


def test_importing_the_plugin_imports_no_ray():
    code = "import rlm_executor_ray.plugin, sys; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_open_executor_makes_a_ray_executor_with_the_configured_settings(pm):
    config = _config(pm, env={"RLM_PLUGINS__EXECUTOR_RAY__TASK_CPUS": "0.25",
                              "RLM_PLUGINS__EXECUTOR_RAY__ADDRESS": "auto"})
    executor = open_executor(pm, "ray", config)
    assert isinstance(executor, RayExecutor) and isinstance(executor, BatchExecutor)
    assert executor.options.task_cpus == 0.25 and executor.address == "auto"
    assert open_executor(pm, "ray", config, address="ray://head:10001").address == "ray://head:10001"  # the flag wins
    assert RayExecutor(config=None).options == RayOptions()  # defaults: a local cluster, one CPU per item


@pytest.mark.parametrize(("key", "value", "message"), [
    ("TASK_CPUS", "0", "task_cpus must be a number of CPUs more than 0"),
    ("TASK_CPUS", "nan", "must be a finite number"),
    ("NUM_CPUS", "1.5", "expected an integer"),
    ("MAX_ITEM_RETRIES", "11", "max_item_retries must be a whole number from 0 to 10"),
    ("ADDRESS", " ", "address must be auto, host:port or ray://host:10001"),
])
def test_bad_settings_are_one_clear_error_naming_the_variable(pm, key, value, message):
    with pytest.raises(ConfigError) as info:
        _config(pm, env={f"RLM_PLUGINS__EXECUTOR_RAY__{key}": value})
    assert f"RLM_PLUGINS__EXECUTOR_RAY__{key}" in str(info.value) and message in str(info.value)


def test_unknown_settings_are_refused(pm, tmp_path):
    (tmp_path / "rlm.toml").write_text("[plugins.executor-ray]\ntask_cpu = 1\n")
    sections = {name: reg.load() for name, reg in collect(pm, "config_section").items()}
    with pytest.raises(ConfigError, match="task_cpu"):
        load_config(path=tmp_path / "rlm.toml", env={}, sections=sections)
