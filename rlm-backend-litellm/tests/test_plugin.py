"""rlm-testing's BackendPluginConformance for the litellm plugin (hooks, import cost, missing litellm or
keys, retries), and what only the catch-all does: resolving last, capabilities from the model map."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from rlm import hookimpl
from rlm.backend import BackendSettings, LLMRequest
from rlm.config import RLMConfig
from rlm.errors import NoProvidersConfigured
from rlm.plugins import create_plugin_manager
from rlm.types import Message
from rlm_backend_litellm import loader
from rlm_backend_litellm.backend import LiteLLMBackend
from rlm_backend_litellm.options import LiteLLMOptions
from rlm_backend_litellm.plugin import plugin
from rlm_testing.backend_plugin_suite import BackendPluginConformance

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


class TestLiteLLMPlugin(BackendPluginConformance):
    entry_point = "rlm_backend_litellm.plugin:plugin"
    name = "litellm"
    factory = "rlm_backend_litellm.backend:LiteLLMBackend"
    backend = LiteLLMBackend
    options = LiteLLMOptions
    sdk = "litellm"
    requirement = "litellm>=1.100,!=1.107.0,<2"
    model = "gpt-4o-mini"
    claimed = ("gpt-4o-mini", "anthropic/claude-sonnet-4-6", "ollama/llama3", "anything")
    config_env = (("RLM_PLUGINS__BACKEND_LITELLM__CUSTOM_LLM_PROVIDER", "openai"),
                  ("RLM_PLUGINS__BACKEND_LITELLM__DROP_PARAMS", "true"))
    config_expected = LiteLLMOptions(custom_llm_provider="openai", drop_params=True)
    doctor = (("ok", "litellm backend: litellm installed"),)
    unkeyed_models = ("gpt-4o-mini", "anthropic/claude-sonnet-4-6")
    local_model = sent_model = "my-local-llama"

    def test_unimportable_sdk_names_the_pip_command(self, monkeypatch):
        monkeypatch.setattr(loader, "_litellm", None)  # forget the module an earlier test imported
        super().test_unimportable_sdk_names_the_pip_command(monkeypatch)


class _Claims:
    """A plugin that claims ``x/`` models first, as the openai/anthropic backends do."""

    @hookimpl(tryfirst=True)
    def rlm_resolve_backend(self, model, config):
        return "x" if model.startswith("x/") else None


@pytest.fixture
def pm():
    manager = create_plugin_manager(entry_points=False)
    manager.register(plugin, name="litellm")
    return manager


def test_resolves_every_model_but_only_as_the_last_resort(pm):
    pm.register(_Claims(), name="claims-x")
    assert pm.hook.rlm_resolve_backend(model="x/model", config=RLMConfig()) == "x"
    assert pm.hook.rlm_resolve_backend(model="gpt-4o", config=RLMConfig()) == "litellm"


def test_resolution_next_to_the_other_backends(pm):
    pm.register(pytest.importorskip("rlm_backend_openai.plugin").plugin, name="openai")
    pm.register(pytest.importorskip("rlm_backend_anthropic.plugin").plugin, name="anthropic")
    resolve = pm.hook.rlm_resolve_backend
    assert resolve(model="openai/gpt-4o", config=RLMConfig()) == "openai"
    assert resolve(model="anthropic/claude-sonnet-4-6", config=RLMConfig()) == "anthropic"
    assert resolve(model="gpt-4o", config=RLMConfig()) == "litellm"


def test_capabilities_come_from_the_model_map_without_importing_litellm():
    code = (
        "import sys; from rlm_backend_litellm.backend import LiteLLMBackend; "
        "caps = LiteLLMBackend().capabilities('gpt-4o-mini'); "
        "print('litellm' in sys.modules, caps.vision, caps.json_schema, caps.context_window)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported, vision, json_schema, context_window = result.stdout.split()
    assert [imported, vision, json_schema] == ["False", "True", "True"], "capabilities come from the model map on disk"
    assert int(context_window) > 0


def test_missing_key_fix_names_the_providers_key(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    backend = LiteLLMBackend(settings=BackendSettings())
    request = LLMRequest(model="anthropic/claude-sonnet-4-6", messages=[Message.user("hi")])
    with pytest.raises(NoProvidersConfigured) as info:
        asyncio.run(backend.complete(request))
    assert "ANTHROPIC_API_KEY" in str(info.value.fix)
