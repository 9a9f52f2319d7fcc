"""EnvironmentSettings: the write quota fields and their validation."""

from __future__ import annotations

import math

import pytest
from rlm.config import load_config
from rlm.environment import EnvironmentSettings


def test_write_quota_defaults():
    settings = EnvironmentSettings()
    assert (settings.write_quota_mb, settings.write_quota_files) == (100, 1000)


def test_write_quota_accepts_positive_numbers():
    settings = EnvironmentSettings(write_quota_mb=0.5, write_quota_files=1)
    assert (settings.write_quota_mb, settings.write_quota_files) == (0.5, 1)
    assert EnvironmentSettings(write_quota_mb=2048).write_quota_mb == 2048


@pytest.mark.parametrize("value", [0, -1, -0.5, math.nan, math.inf, -math.inf, True, False, "10", None])
def test_write_quota_mb_rejects(value):
    with pytest.raises(ValueError, match=r"EnvironmentSettings\.write_quota_mb: .*give a positive number"):
        EnvironmentSettings(write_quota_mb=value)


@pytest.mark.parametrize("value", [0, -3, 1.5, 10.0, math.nan, math.inf, True, "5", None])
def test_write_quota_files_rejects(value):
    with pytest.raises(ValueError, match=r"EnvironmentSettings\.write_quota_files: .*give an integer of 1 or more"):
        EnvironmentSettings(write_quota_files=value)


def test_config_keys_reach_the_defaults():
    config = load_config(use_file=False, env={})
    assert (config.env_write_quota_mb, config.env_write_quota_files) == (100.0, 1000)
    config = load_config(use_file=False, env={"RLM_ENV_WRITE_QUOTA_MB": "2.5", "RLM_ENV_WRITE_QUOTA_FILES": "7"})
    settings = EnvironmentSettings(write_quota_mb=config.env_write_quota_mb,
                                   write_quota_files=config.env_write_quota_files)
    assert (settings.write_quota_mb, settings.write_quota_files) == (2.5, 7)


# --- every field a user can set reaches an [rlm] key ------------------------------------------------


def test_rlm_toml_reaches_writable_paths_cpu_limit_and_workdir(tmp_path):
    import os

    from rlm.environment import settings_from_config

    (tmp_path / "out").mkdir()
    (tmp_path / "rlm.toml").write_text(
        '[rlm]\nenv_writable_paths = ["out"]\nenv_cpu_limit_s = 2.5\nenv_workdir = "out"\n'
        'env_timeout = 7\nenv_memory_mb = 256\n', encoding="utf-8")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        config = load_config(path=tmp_path / "rlm.toml", env={})
        settings = settings_from_config(config)
    finally:
        os.chdir(cwd)
    out = str(tmp_path / "out")
    assert settings.writable_paths == (out,)
    assert settings.cpu_limit_s == 2.5
    assert settings.workdir == out
    assert (settings.timeout, settings.memory_limit_mb) == (7, 256)
    assert settings.config is config


def test_unset_keys_keep_the_settings_defaults():
    from rlm.environment import settings_from_config

    settings = settings_from_config(load_config(use_file=False, env={}))
    default = EnvironmentSettings()
    assert (settings.writable_paths, settings.cpu_limit_s, settings.workdir) == ((), None, default.workdir)
    assert settings.allowed_paths == default.allowed_paths


def test_environment_variables_reach_them_too():
    config = load_config(use_file=False, env={"RLM_ENV_WRITABLE_PATHS": "/tmp/a, /tmp/b",
                                              "RLM_ENV_CPU_LIMIT_S": "3", "RLM_ENV_WORKDIR": "/tmp"})
    assert config.env_writable_paths == ("/tmp/a", "/tmp/b")
    assert (config.env_cpu_limit_s, config.env_workdir) == (3.0, "/tmp")


@pytest.mark.parametrize(("key", "value", "message"), [
    ("env_cpu_limit_s", "0", "RLM_ENV_CPU_LIMIT_S: must be more than 0 seconds"),
    ("env_cpu_limit_s", "-1", "RLM_ENV_CPU_LIMIT_S: must be more than 0 seconds"),
    ("env_cpu_limit_s", "nan", "RLM_ENV_CPU_LIMIT_S: must be a finite number"),
    ("env_workdir", " ", "RLM_ENV_WORKDIR: must name a directory"),
    ("env_writable_paths", "a,,b, ", None),  # empty parts of a comma list are dropped
])
def test_bad_values_are_refused_naming_the_key(key, value, message):
    from rlm.errors import ConfigError

    env = {"RLM_" + key.upper(): value}
    if message is None:
        assert load_config(use_file=False, env=env).env_writable_paths == ("a", "b")
        return
    with pytest.raises(ConfigError, match=message):
        load_config(use_file=False, env=env)
    # a keyword argument with an empty path is refused too
    if key == "env_workdir":
        with pytest.raises(ConfigError, match="env_workdir"):
            load_config(use_file=False, env={}, env_workdir="")


def test_toml_empty_writable_path_is_refused(tmp_path):
    from rlm.errors import ConfigError

    (tmp_path / "rlm.toml").write_text('[rlm]\nenv_writable_paths = [""]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[rlm\] env_writable_paths: must not contain an empty path"):
        load_config(path=tmp_path / "rlm.toml", env={})
