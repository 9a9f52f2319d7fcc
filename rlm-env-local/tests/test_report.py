"""What users are told about the jail: ``rlm doctor``, ``rlm plugins``, the run's isolation record."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rlm.config import load_config
from rlm.plugins import create_plugin_manager
from rlm.registry import collect
from rlm_env_local import jail, plugin, report

pytestmark = pytest.mark.skipif(any(jail.probe(()).values()), reason="this machine lacks an OS layer of the jail")
LAYERS = ("namespaces", "landlock", "seccomp", "rlimits", "python-guards", "scrubbed-env")


def _config(**env: str):
    pm = create_plugin_manager(entry_points=False)
    pm.register(plugin, name="env-local")
    sections = {name: reg.load() for name, reg in collect(pm, "config_section").items()}
    return pm, load_config(use_file=False, env=env, sections=sections)


def test_doctor_reports_every_layer_active_on_this_machine(monkeypatch):
    monkeypatch.delenv(jail.PRETEND_MISSING_ENV, raising=False)
    checks = list(report.doctor_check(config=None))
    by_layer = {layer: c for c in checks for layer in LAYERS if f"layer {layer}:" in c.summary}
    assert set(by_layer) == set(LAYERS)
    assert all(c.status == "ok" for c in by_layer.values()), [c.summary for c in checks if c.status != "ok"]


def test_doctor_names_a_missing_layer_and_the_opt_out(monkeypatch):
    monkeypatch.setenv(jail.PRETEND_MISSING_ENV, "seccomp")
    checks = {c.summary.split(":")[0]: c for c in report.doctor_check(config=None)}
    seccomp = checks["local sandbox layer seccomp"]
    assert seccomp.status == "fail" and "sessions refuse to start" in seccomp.summary
    assert "require_os_sandbox = false" in (seccomp.fix or "")
    assert checks["local sandbox layer landlock"].status == "ok"


def test_with_the_opt_out_a_missing_layer_is_a_warning(monkeypatch):
    monkeypatch.setenv(jail.PRETEND_MISSING_ENV, "namespaces")
    _pm, config = _config(RLM_PLUGINS__ENV_LOCAL__REQUIRE_OS_SANDBOX="false")
    checks = {c.summary.split(":")[0]: c for c in report.doctor_check(config=config)}
    assert checks["local sandbox layer namespaces"].status == "warn"


def test_isolation_describer_is_registered_and_truthful(monkeypatch):
    monkeypatch.delenv(jail.PRETEND_MISSING_ENV, raising=False)
    pm, config = _config()
    layers = collect(pm, "environment")["local"].isolation_layers(config)
    assert layers is not None and set(layers) == set(LAYERS)
    assert all(status.startswith("active") for status in layers.values())
    monkeypatch.setenv(jail.PRETEND_MISSING_ENV, "landlock")
    assert report.isolation(config)["landlock"].startswith("unavailable, sessions refuse to start")


def test_rlm_doctor_command_lists_the_layers_and_fails_on_a_missing_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != jail.PRETEND_MISSING_ENV}
    env["RLM_DISABLE_PLUGINS"] = ""
    ok = subprocess.run([sys.executable, "-m", "rlm", "doctor"], capture_output=True, text=True, env=env,
                        cwd=tmp_path, timeout=120)
    for layer in LAYERS:
        assert f"[ok  ] local sandbox layer {layer}: active" in ok.stdout, ok.stdout + ok.stderr
    env[jail.PRETEND_MISSING_ENV] = "landlock"
    bad = subprocess.run([sys.executable, "-m", "rlm", "doctor"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=120)
    assert bad.returncode == 1
    assert "[FAIL] local sandbox layer landlock: unavailable" in bad.stdout
    assert "require_os_sandbox = false" in bad.stdout
