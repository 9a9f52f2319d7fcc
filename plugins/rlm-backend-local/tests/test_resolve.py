"""Which model strings the local backend claims, hook ordering, and the once-per-process notice."""

from __future__ import annotations

import pytest
from rlm import hookimpl
from rlm.config import load_config
from rlm.core import RLM
from rlm.plugins import create_plugin_manager
from rlm.registry import collect
from rlm_backend_local import plugin
from rlm_backend_local.resolve import choose

NOTICE = ("rlm: no provider key set (OPENAI_API_KEY/ANTHROPIC_API_KEY): using the local model "
          "qwen2.5-coder-1.5b-instruct (llama.cpp, REPL protocol) for 'gpt-4o-mini'\n")


class CatchAll:
    """Like litellm's resolver: trylast, answers for every model."""

    @hookimpl(trylast=True)
    def rlm_resolve_backend(self, model, config):
        return "litellm"

    @hookimpl
    def rlm_register_backends(self, register):
        register("litellm", lambda settings: None)


class PrefixClaimer:
    """Like the openai backend's resolver: tryfirst, claims openai/... only."""

    @hookimpl(tryfirst=True)
    def rlm_resolve_backend(self, model, config):
        return "openai" if model.startswith("openai/") else None

    @hookimpl
    def rlm_register_backends(self, register):
        register("openai", lambda settings: None)


@pytest.fixture
def pm():
    manager = create_plugin_manager(entry_points=False)
    manager.register(CatchAll(), name="litellm")  # registered first, as an installed catch-all would be
    manager.register(plugin, name="backend-local")
    manager.register(PrefixClaimer(), name="openai")
    return manager


def _config(pm, env=None, **overrides):
    sections = {name: reg.load() for name, reg in collect(pm, "config_section").items()}
    return load_config(use_file=False, env=env or {}, sections=sections, **overrides)


def _resolve(pm, model=None, env=None, **overrides):
    """The backend for ``model`` (None: the default model, which the user did not name)."""
    config = _config(pm, env, model=model, **overrides)
    return pm.hook.rlm_resolve_backend(model=config.model, config=config)


def test_no_key_means_local_with_a_notice_printed_once(pm, no_keys, capsys):
    assert _resolve(pm) == "local"
    assert _resolve(pm) == "local"
    assert capsys.readouterr().err == NOTICE


def test_local_prefix_is_always_local_and_silent(pm, no_keys, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert _resolve(pm, model="local/qwen2.5-coder-0.5b-instruct") == "local"
    assert _resolve(pm, model="local/default", api_base="http://127.0.0.1:9/v1") == "local"
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("key", ["OPENAI_API_KEY", "ANTHROPIC_API_KEY"])
def test_a_provider_key_leaves_the_model_to_other_backends(pm, no_keys, monkeypatch, capsys, key):
    monkeypatch.setenv(key, "sk-test")
    assert _resolve(pm) == "litellm"
    assert capsys.readouterr().err == ""


def test_an_empty_key_does_not_count(pm, no_keys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "  ")
    assert _resolve(pm) == "local"


def test_api_base_or_backend_in_config_leave_the_model_alone(pm, no_keys, capsys):
    assert _resolve(pm, api_base="http://127.0.0.1:8000/v1") == "litellm"
    config = _config(pm, {"RLM_BACKEND": "litellm"})
    assert choose("gpt-4o-mini", config, env={}) is None
    assert capsys.readouterr().err == ""


def test_explicit_provider_prefix_is_left_to_that_provider(pm, no_keys, capsys):
    assert _resolve(pm, model="openai/gpt-4o") == "openai"
    assert _resolve(pm, model="ollama/llama3") == "litellm"
    assert _resolve(pm, model="anthropic/claude-sonnet-4") == "litellm"  # no anthropic plugin here
    assert capsys.readouterr().err == ""


def test_default_when_no_key_can_be_turned_off(pm, no_keys, capsys):
    assert _resolve(pm, env={"RLM_PLUGINS__BACKEND_LOCAL__DEFAULT_WHEN_NO_KEY": "false"}) == "litellm"
    assert capsys.readouterr().err == ""


def test_notice_names_a_configured_model_file(pm, no_keys, capsys):
    env = {"RLM_PLUGINS__BACKEND_LOCAL__MODEL_PATH": "/models/my-model.gguf"}
    assert _resolve(pm, env=env) == "local"
    assert "using the local model my-model.gguf (llama.cpp" in capsys.readouterr().err


def test_rlm_picks_the_local_backend_and_the_repl_protocol(pm, no_keys, capsys):
    rlm = RLM(plugin_manager=pm, config=_config(pm))
    assert rlm.backend_name() == "local"
    caps = rlm._get_backend().capabilities(rlm.config.model)
    assert rlm._protocol(None, caps) == "repl"  # auto: the backend prefers the REPL protocol
    assert capsys.readouterr().err.count("rlm: no provider key set") == 1


def test_the_notice_is_printed_once_per_process_by_the_cli(tmp_path):
    # a fresh process: two resolutions, one notice line
    import subprocess
    import sys

    code = (
        "from rlm.config import RLMConfig\n"
        "from rlm_backend_local.resolve import choose\n"
        "assert choose('gpt-4o-mini', RLMConfig(), env={}) == 'local'\n"
        "assert choose('gpt-4o', RLMConfig(), env={}) == 'local'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert result.stderr.count("rlm: no provider key set") == 1
    assert result.stdout == ""


def test_a_model_the_user_named_is_never_answered_by_the_local_model(pm, no_keys, capsys):
    """No key, but --model/RLM_MODEL/[rlm] model names one: the provider's backend reports the missing
    key; the embedded model does not quietly stand in."""
    assert _resolve(pm) == "local"  # the default model, not named: the fallback
    capsys.readouterr()
    for named in ("gpt-4o-mini", "gpt-9-turbo-nonexistent", "claude-3-5-sonnet"):
        assert _resolve(pm, model=named) == "litellm", named
    assert _resolve(pm, env={"RLM_MODEL": "gpt-4o-mini"}) == "litellm"
    assert _resolve(pm, model="local/qwen") == "local"  # naming the local model is fine
