"""The plugin's hooks on a fresh plugin manager, import cost, quietness on stdout, missing litellm/keys."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from rlm import hookimpl
from rlm.backend import Backend, BackendSettings, LLMRequest
from rlm.config import RLMConfig, load_config
from rlm.errors import NoProvidersConfigured, PluginError
from rlm.plugins import create_plugin_manager
from rlm.registry import collect
from rlm.types import Message
from rlm_backend_litellm import loader, plugin
from rlm_backend_litellm.backend import LiteLLMBackend
from rlm_backend_litellm.options import LiteLLMOptions
from rlm_testing.server import Reply

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


@pytest.fixture
def pm():
    manager = create_plugin_manager(entry_points=False)
    manager.register(plugin, name="litellm")
    return manager


@pytest.fixture
def no_env(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)


class _Claims:
    """A plugin that claims ``x/`` models first, as the openai/anthropic backends do."""

    @hookimpl(tryfirst=True)
    def rlm_resolve_backend(self, model, config):
        return "x" if model.startswith("x/") else None


def _config(pm, **env) -> RLMConfig:
    sections = {name: reg.load() for name, reg in collect(pm, "config_section").items()}
    return load_config(use_file=False, env=env, sections=sections)


def test_backend_is_registered_as_a_lazy_string(pm):
    reg = collect(pm, "backend")["litellm"]
    assert reg.target == "rlm_backend_litellm.backend:LiteLLMBackend"
    assert reg.load() is LiteLLMBackend


def test_resolves_every_model_but_only_as_the_last_resort(pm):
    config = RLMConfig()
    for model in ("gpt-4o-mini", "anthropic/claude-sonnet-4-6", "ollama/llama3", "anything"):
        assert pm.hook.rlm_resolve_backend(model=model, config=config) == "litellm"
    pm.register(_Claims(), name="claims-x")
    assert pm.hook.rlm_resolve_backend(model="x/model", config=config) == "x"
    assert pm.hook.rlm_resolve_backend(model="gpt-4o", config=config) == "litellm"


def test_resolution_next_to_the_other_backends(pm):
    openai_plugin = pytest.importorskip("rlm_backend_openai.plugin")
    anthropic_plugin = pytest.importorskip("rlm_backend_anthropic.plugin")
    pm.register(openai_plugin, name="openai")
    pm.register(anthropic_plugin, name="anthropic")
    resolve = pm.hook.rlm_resolve_backend
    assert resolve(model="openai/gpt-4o", config=RLMConfig()) == "openai"
    assert resolve(model="anthropic/claude-sonnet-4-6", config=RLMConfig()) == "anthropic"
    assert resolve(model="gpt-4o", config=RLMConfig()) == "litellm"


def test_config_section(pm):
    assert collect(pm, "config_section")["backend-litellm"].load() is LiteLLMOptions
    config = _config(pm, RLM_PLUGINS__BACKEND_LITELLM__CUSTOM_LLM_PROVIDER="openai",
                     RLM_PLUGINS__BACKEND_LITELLM__DROP_PARAMS="true")
    assert config.plugin("backend-litellm") == LiteLLMOptions(custom_llm_provider="openai", drop_params=True)


def test_doctor_check(pm):
    run_check = collect(pm, "doctor_check")["backend-litellm"].load()
    assert [(c.status, c.summary) for c in run_check(config=_config(pm))] == [
        ("ok", "litellm backend: litellm installed")]


def test_plugin_backend_and_capabilities_do_not_import_litellm():
    code = (
        "import sys, rlm_backend_litellm.plugin; "
        "print(sorted(m for m in ('litellm', 'openai', 'httpx', 'pydantic', 'rlm.backend', 'rlm.config') "
        "if m in sys.modules)); "
        "from rlm_backend_litellm.backend import LiteLLMBackend; "
        "caps = LiteLLMBackend().capabilities('gpt-4o-mini'); "
        "print('litellm' in sys.modules, caps.vision, caps.json_schema, caps.context_window)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, second = result.stdout.strip().splitlines()
    assert first == "[]"
    assert second.split()[:3] == ["False", "True", "True"], "capabilities come from the model map on disk"
    assert int(second.split()[3]) > 0


def test_missing_litellm_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(loader.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(PluginError) as info:
        LiteLLMBackend(settings=BackendSettings())
    assert "pip install 'litellm>=1.100,!=1.107.0,<2'" in str(info.value)


def test_missing_key_is_no_providers_configured(no_env):
    backend = LiteLLMBackend(settings=BackendSettings())
    assert isinstance(backend, Backend)
    for model in ("gpt-4o-mini", "anthropic/claude-sonnet-4-6"):
        request = LLMRequest(model=model, messages=[Message.user("hi")])
        for call in (backend.complete(request), _drain(backend.stream(request))):
            with pytest.raises(NoProvidersConfigured) as info:
                asyncio.run(call)
            assert "No providers configured: set OPENAI_API_KEY or ANTHROPIC_API_KEY" in str(info.value)
    assert "ANTHROPIC_API_KEY" in str(info.value.fix)


def test_local_server_needs_no_key(no_env, scripted_llm):
    scripted_llm.script([Reply.text("local answer")])
    backend = LiteLLMBackend(settings=BackendSettings(base_url=scripted_llm.openai_base_url))
    response = asyncio.run(_complete_and_close(backend, LLMRequest(model="my-local-llama",
                                                                   messages=[Message.user("hi")])))
    assert response.message.text == "local answer"
    sent = scripted_llm.last_request
    assert sent.model == "my-local-llama"
    assert sent.header("authorization") == "Bearer sk-no-key-required"


def test_the_kernel_resolves_the_backend(pm, no_env):
    from rlm.core import RLM

    assert RLM(model="gpt-4o-mini", plugin_manager=pm).backend_name() == "litellm"


async def _drain(stream):
    return [event async for event in stream]


async def _complete_and_close(backend, request):
    try:
        return await backend.complete(request)
    finally:
        await backend.aclose()
