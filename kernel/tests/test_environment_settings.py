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
