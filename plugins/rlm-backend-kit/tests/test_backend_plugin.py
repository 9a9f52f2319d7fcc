"""BackendPlugin: the hooks of a backend plugin on a fresh plugin manager, its doctor check, its import cost."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from rlm import hookimpl
from rlm_backend_kit.backend_options import RetryOptions
from rlm_backend_kit.backend_plugin import BackendPlugin
from rlm.config import RLMConfig
from rlm.plugins import create_plugin_manager
from rlm.registry import collect

DEMO = BackendPlugin(name="demo", provider="Demo", prefix="demo/", factory="rlm_backend_kit.backend_options:RetryOptions",
                     description="a demo backend", options=RetryOptions, sdk="json", requirement="json>=1",
                     key_env="RLM_TEST_DEMO_KEY", key_example="dk-...")


class CatchAll(BackendPlugin):
    @hookimpl(trylast=True)
    def rlm_resolve_backend(self, model, config):
        return self.name


@pytest.fixture
def pm():
    manager = create_plugin_manager(entry_points=False, default_plugins=False)
    manager.register(DEMO, name="demo")
    return manager


def _checks(config, monkeypatch, *, key=None, sdk=True):
    monkeypatch.delenv("RLM_TEST_DEMO_KEY", raising=False)
    if key:
        monkeypatch.setenv("RLM_TEST_DEMO_KEY", key)
    if not sdk:
        monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    return [(c.status, c.summary, c.fix) for c in DEMO.check(config)]


def test_registrations(pm):
    backend = collect(pm, "backend")["demo"]
    assert (backend.target, backend.plugin, backend.description) == (DEMO.factory, "demo", "a demo backend")
    section = collect(pm, "config_section")["backend-demo"]
    assert section.load() is RetryOptions and section.description == "the Demo backend"
    assert collect(pm, "doctor_check")["backend-demo"].load() == DEMO.check


def test_claims_its_prefix_first_and_a_catch_all_answers_last(pm):
    config = RLMConfig()
    assert pm.hook.rlm_resolve_backend(model="demo/m", config=config) == "demo"
    assert pm.hook.rlm_resolve_backend(model="other/m", config=config) is None
    pm.register(CatchAll(name="any", provider="Any", factory="m:A", description="", options=RetryOptions, sdk="json",
                         requirement="json"), name="any")
    assert pm.hook.rlm_resolve_backend(model="demo/m", config=config) == "demo", "the prefix still wins"
    assert pm.hook.rlm_resolve_backend(model="other/m", config=config) == "any"


def test_doctor_check_without_the_sdk(monkeypatch):
    assert _checks(RLMConfig(), monkeypatch, sdk=False) == [
        ("fail", "demo backend: json SDK is not installed", "pip install 'json>=1'")]


def test_doctor_check(monkeypatch):
    assert _checks(RLMConfig(), monkeypatch, key="dk-1") == [
        ("ok", "demo backend: json SDK installed", None), ("ok", "demo backend: RLM_TEST_DEMO_KEY is set", None)]
    assert _checks(RLMConfig(api_base="http://127.0.0.1:9/v1"), monkeypatch)[1] == (
        "ok", "demo backend: no key needed for api_base http://127.0.0.1:9/v1", None)
    assert _checks(RLMConfig(), monkeypatch)[1] == (
        "warn", "demo backend: RLM_TEST_DEMO_KEY is not set", "export RLM_TEST_DEMO_KEY=dk-... to use demo/ models")


def test_a_plugin_without_a_key_checks_the_sdk_only():
    plugin = BackendPlugin(name="lib", provider="lib", factory="m:A", description="", options=RetryOptions,
                           sdk="json", needs="json", requirement="json")
    assert [(c.status, c.summary) for c in plugin.check(RLMConfig())] == [("ok", "lib backend: json installed")]


def test_importing_it_imports_no_heavy_kernel_module():
    code = ("import sys, rlm_backend_kit.backend_plugin; "
            "print(sorted(m for m in ('rlm.backend', 'rlm.config', 'rlm.doctor', 'structlog') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
