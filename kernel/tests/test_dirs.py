"""rlm.dirs: the one cache (and data) directory, its overrides and its per-platform defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import platformdirs
import pytest
from platformdirs import macos, windows
from rlm import dirs
from rlm.dirs import cache_dir, data_dir


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("RLM_CACHE_DIR", "RLM_DATA_DIR", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    return home


def test_rlm_cache_dir_comes_first(clean_env, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("RLM_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    assert cache_dir("models") == tmp_path / "mine" / "models"  # no extra "rlm" level under RLM_CACHE_DIR
    assert cache_dir("wasm", "x.bin") == tmp_path / "mine" / "wasm" / "x.bin"


def test_rlm_cache_dir_expands_the_home_directory(clean_env, monkeypatch):
    monkeypatch.setenv("RLM_CACHE_DIR", "~/rc")
    assert cache_dir("models") == clean_env / "rc" / "models"


def test_xdg_cache_home_is_next(clean_env, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("models") == tmp_path / "xdg" / "rlm" / "models"
    monkeypatch.setenv("RLM_CACHE_DIR", "")  # empty: unset
    assert cache_dir() == tmp_path / "xdg" / "rlm"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux default")
def test_linux_default_is_the_old_path(clean_env):
    """~/.cache/rlm, as before: models and compiled modules cached by older versions are found."""
    assert cache_dir() == clean_env / ".cache" / "rlm"
    assert cache_dir("models") == Path(clean_env, ".cache", "rlm", "models")
    assert data_dir() == clean_env / ".local" / "share" / "rlm"


def test_macos_default(clean_env, monkeypatch):
    monkeypatch.setattr(platformdirs, "user_cache_dir",
                        lambda name, appauthor=None: macos.MacOS(name, appauthor=appauthor).user_cache_dir)
    assert cache_dir("models") == clean_env / "Library" / "Caches" / "rlm" / "models"


def test_windows_default(clean_env, monkeypatch, tmp_path):
    local = tmp_path / "AppData" / "Local"
    monkeypatch.setattr(windows, "get_win_folder", lambda csidl: str(local))
    monkeypatch.setattr(platformdirs, "user_cache_dir",
                        lambda name, appauthor=None: windows.Windows(name, appauthor=appauthor).user_cache_dir)
    assert cache_dir("wasm") == local / "rlm" / "Cache" / "wasm"  # no "author" level


def test_overrides_win_on_every_platform(clean_env, monkeypatch, tmp_path):
    monkeypatch.setattr(platformdirs, "user_cache_dir", lambda *a, **k: pytest.fail("platformdirs consulted"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "rlm"
    monkeypatch.setenv("RLM_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_data_dir_overrides(clean_env, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert data_dir("x") == tmp_path / "data" / "rlm" / "x"
    monkeypatch.setenv("RLM_DATA_DIR", str(tmp_path / "d"))
    assert data_dir("x") == tmp_path / "d" / "x"


def test_nothing_is_created(clean_env):
    path = cache_dir("models")
    assert not path.exists() and not clean_env.exists()


def test_platformdirs_is_imported_on_first_use_only():
    code = ("import sys, rlm.dirs; print('platformdirs' in sys.modules); "
            "rlm.dirs.cache_dir(); print('platformdirs' in sys.modules)")
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["False", "True"]
    assert dirs.APP_NAME == "rlm"
