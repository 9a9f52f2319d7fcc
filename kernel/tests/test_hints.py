"""Install hints name only first-party distributions that exist; typos get "did you mean"."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from rlm import RLM
from rlm.errors import PluginError
from rlm.hints import FIRST_PARTY, missing_plugin_fix

REPO = Path(__file__).resolve().parents[2]


def test_every_first_party_distribution_named_is_one_this_repository_publishes():
    published = set()
    for pyproject in [*REPO.glob("*/pyproject.toml"), *REPO.glob("plugins/*/pyproject.toml")]:
        published.add(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["name"])
    named = {dist for kind in FIRST_PARTY.values() for dist in kind.values()}
    assert named <= published, named - published


@pytest.mark.parametrize(("kind", "typed", "suggested"), [
    ("environment", "dokcer", "docker"), ("environment", "wasm2", "wasm"), ("backend", "anthropc", "anthropic"),
    ("backend", "openia", "openai"),
])
def test_a_typo_gets_did_you_mean_and_no_made_up_package(kind, typed, suggested):
    fix = missing_plugin_fix(kind, typed, ["docker", "local", "wasm", "anthropic", "openai"])
    assert f"did you mean {suggested!r}" in fix
    assert f"rlm-env-{typed}" not in fix and f"rlm-backend-{typed}" not in fix


def test_a_first_party_plugin_that_is_missing_names_its_real_distribution():
    fix = missing_plugin_fix("environment", "docker", ["local"])
    assert "pip install rlm-env-docker" in fix
    assert "after pip install rlm-env-wasm" in missing_plugin_fix("environment", "wasn", ["local"])


def test_an_unknown_name_gets_no_pip_command_at_all():
    fix = missing_plugin_fix("backend", "nosuch", ["litellm"])
    assert "pip install" not in fix and "rlm plugins" in fix


def test_the_api_uses_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rlm = RLM(model="m", backend="nosuch-backend", environment="dokcer")
    with pytest.raises(PluginError) as raised:
        rlm.backend_name()
    assert "pip install rlm-backend-nosuch" not in str(raised.value)
    with pytest.raises(PluginError) as raised:
        rlm._environment_factory()
    assert "pip install rlm-env-dokcer" not in str(raised.value)
