"""BackendSettings.max_retries is set by ``[rlm] max_retries``."""

from __future__ import annotations

import pytest
from rlm.config import load_config
from rlm.errors import ConfigError
from rlm.hookspecs import hookimpl
from rlm.plugins import create_plugin_manager


def test_max_retries_key_defaults_and_validates(tmp_path):
    assert load_config(use_file=False, env={}).max_retries == 3
    (tmp_path / "rlm.toml").write_text("[rlm]\nmax_retries = 0\n", encoding="utf-8")
    assert load_config(path=tmp_path / "rlm.toml", env={}).max_retries == 0
    with pytest.raises(ConfigError, match="RLM_MAX_RETRIES: must be 0 or more"):
        load_config(use_file=False, env={"RLM_MAX_RETRIES": "-1"})


def test_max_retries_reaches_the_backend_settings(tmp_path, monkeypatch):
    from rlm import RLM

    seen = []

    class Plugin:
        @hookimpl
        def rlm_register_backends(self, register):
            register("capture", lambda settings: seen.append(settings) or object(), description="test")

    monkeypatch.chdir(tmp_path)
    pm = create_plugin_manager(entry_points=False)
    pm.register(Plugin(), name="capture-plugin")
    rlm = RLM(backend="capture", model="m", plugin_manager=pm, max_retries=7, log_dir=str(tmp_path))
    rlm._get_backend()
    assert seen[0].max_retries == 7
