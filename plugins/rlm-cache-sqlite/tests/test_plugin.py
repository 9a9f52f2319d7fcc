"""rlm-cache-sqlite's hooks: the ``sqlite`` cache, ``[plugins.cache-sqlite]``, the doctor check, and
that the kernel opens it from ``[rlm] cache = "sqlite"``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from rlm.cache import open_cache
from rlm.config import load_config
from rlm.errors import ConfigError
from rlm.plugins import create_plugin_manager
from rlm.registry import collect
from rlm_cache_sqlite import plugin
from rlm_cache_sqlite.cache import SqliteCache, doctor_check, from_config
from rlm_cache_sqlite.plugin import SqliteCacheOptions


@pytest.fixture
def pm():
    manager = create_plugin_manager(entry_points=False)
    manager.register(plugin, name="cache-sqlite")
    return manager


def _config(pm, env=None, **overrides):
    sections = {name: reg.load() for name, reg in collect(pm, "config_section").items()}
    return load_config(use_file=False, env=env or {}, sections=sections, **overrides)


def test_registers_the_sqlite_cache(pm):
    found = collect(pm, "cache")
    assert list(found) == ["sqlite"]
    assert found["sqlite"].target == "rlm_cache_sqlite.cache:from_config"
    assert found["sqlite"].load() is from_config
    assert collect(pm, "config_section")["cache-sqlite"].load() is SqliteCacheOptions
    assert "cache-sqlite" in collect(pm, "doctor_check")


def test_the_entry_point_names_the_plugin_module():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="rlm") if e.name == "cache-sqlite"]
    assert ep.value == "rlm_cache_sqlite.plugin"


def test_importing_the_plugin_is_cheap():
    code = ("import sys, json; import rlm_cache_sqlite.plugin; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('sqlite3', 'rlm_cache_sqlite.cache', "
            "'structlog', 'cattrs')))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(result.stdout) == []


def test_the_kernel_opens_it_from_the_config(pm, tmp_path):
    path = tmp_path / "sub" / "c.sqlite3"
    config = _config(pm, env={"RLM_CACHE": "sqlite", "RLM_PLUGINS__CACHE_SQLITE__PATH": str(path),
                              "RLM_PLUGINS__CACHE_SQLITE__MAX_ENTRIES": "10"})
    cache = open_cache(pm, config)
    assert isinstance(cache, SqliteCache)
    assert cache.path == path and cache.max_entries == 10
    assert not path.exists(), "the factory opens nothing"
    cache.close()


def test_the_default_path_is_in_the_rlm_cache_dir(pm, tmp_path, monkeypatch):
    monkeypatch.setenv("RLM_CACHE_DIR", str(tmp_path / "cachedir"))
    cache = open_cache(pm, _config(pm, cache="sqlite"))
    assert cache.path == tmp_path / "cachedir" / "responses.sqlite3"
    assert cache.max_entries == 100_000 and cache.max_bytes == 512 * 2**20 and cache.max_entry_bytes == 4 * 2**20


def test_a_home_relative_path_is_expanded(pm, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    cache = from_config(config=_config(pm, env={"RLM_PLUGINS__CACHE_SQLITE__PATH": "~/c.db"}))
    assert cache.path == tmp_path / "c.db"


@pytest.mark.parametrize(("key", "value", "message"), [
    ("MAX_ENTRIES", "0", "max_entries must be a whole number of at least 1"),
    ("MAX_BYTES", "-1", "max_bytes must be a whole number of at least 1"),
    ("MAX_ENTRY_BYTES", "many", "expected an integer"),
    ("BUSY_TIMEOUT", "0", "busy_timeout must be a number of seconds more than 0"),
    ("PATH", " ", "path must name a file"),
])
def test_bad_settings_are_config_errors(pm, key, value, message):
    with pytest.raises(ConfigError, match=message):
        _config(pm, env={f"RLM_PLUGINS__CACHE_SQLITE__{key}": value})


def test_unknown_setting_is_a_config_error(pm, tmp_path):
    toml = tmp_path / "rlm.toml"
    toml.write_text('[plugins.cache-sqlite]\nmax_entrys = 3\n', encoding="utf-8")
    sections = {name: reg.load() for name, reg in collect(pm, "config_section").items()}
    with pytest.raises(ConfigError, match="unknown key; did you mean max_entries"):
        load_config(path=toml, env={}, sections=sections)


def test_doctor_check(pm, tmp_path):
    path = tmp_path / "c.sqlite3"
    env = {"RLM_PLUGINS__CACHE_SQLITE__PATH": str(path)}
    assert list(doctor_check(_config(pm, env=env))) == [], "silent when another cache or none is configured"
    config = _config(pm, env={**env, "RLM_CACHE": "sqlite"})
    (check,) = doctor_check(config)
    assert check.status == "ok" and "no file yet" in check.summary and not path.exists()
    SqliteCache(path).clear()
    cache = SqliteCache(path)
    cache.put_sync("k", _response())
    cache.close()
    (check,) = doctor_check(config)
    assert check.status == "ok" and check.summary.startswith("sqlite cache: 1 entries")
    path.write_bytes(b"this is not a database" * 100)
    (check,) = doctor_check(config)
    assert check.status == "fail" and "cannot open" in check.summary and check.fix


def _response():
    from rlm.backend import LLMResponse
    from rlm.types import Message

    return LLMResponse(message=Message.assistant("hi"))


def test_readme_names_the_settings():
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    import attrs

    for field in attrs.fields(SqliteCacheOptions):
        assert field.name in readme
