"""The plugin's hooks on a fresh plugin manager, its import cost, and its missing-SDK/missing-key errors."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys

import pytest
from rlm.backend import Backend, BackendSettings, LLMRequest
from rlm.config import RLMConfig, load_config
from rlm.errors import NoProvidersConfigured, PluginError
from rlm.plugins import create_plugin_manager
from rlm.registry import collect
from rlm.types import Message
from rlm_backend_anthropic import plugin
from rlm_backend_anthropic.backend import AnthropicBackend
from rlm_backend_anthropic.options import AnthropicOptions
from rlm_testing.server import Reply


@pytest.fixture
def pm():
    manager = create_plugin_manager(entry_points=False)
    manager.register(plugin, name="anthropic")
    return manager


@pytest.fixture
def no_env(monkeypatch):
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def _config(pm, **env) -> RLMConfig:
    sections = {name: reg.load() for name, reg in collect(pm, "config_section").items()}
    return load_config(use_file=False, env=env, sections=sections)


def test_backend_is_registered_as_a_lazy_string(pm):
    reg = collect(pm, "backend")["anthropic"]
    assert reg.target == "rlm_backend_anthropic.backend:AnthropicBackend"
    assert reg.load() is AnthropicBackend


def test_resolves_only_anthropic_prefixed_models(pm):
    config = RLMConfig()
    assert pm.hook.rlm_resolve_backend(model="anthropic/claude-sonnet-4-6", config=config) == "anthropic"
    assert pm.hook.rlm_resolve_backend(model="claude-sonnet-4-6", config=config) is None
    assert pm.hook.rlm_resolve_backend(model="openai/gpt-4o", config=config) is None


def test_config_section(pm):
    assert collect(pm, "config_section")["backend-anthropic"].load() is AnthropicOptions
    config = _config(pm, RLM_PLUGINS__BACKEND_ANTHROPIC__STRUCTURED_OUTPUT="tool",
                     RLM_PLUGINS__BACKEND_ANTHROPIC__DEFAULT_MAX_TOKENS="2048")
    assert config.plugin("backend-anthropic") == AnthropicOptions(structured_output="tool", default_max_tokens=2048)


def test_doctor_check(pm, no_env):
    run_check = collect(pm, "doctor_check")["backend-anthropic"].load()
    statuses = [(c.status, c.summary) for c in run_check(config=_config(pm))]
    assert statuses[0] == ("ok", "anthropic backend: anthropic SDK installed")
    assert statuses[1][0] == "warn"


def test_importing_the_plugin_does_not_import_the_sdk():
    code = (
        "import sys, rlm_backend_anthropic.plugin; "
        "print(sorted(m for m in ('anthropic', 'httpx', 'httpx2', 'pydantic', 'rlm.backend', 'rlm.config', "
        "'structlog') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_constructing_the_backend_does_not_import_the_sdk():
    code = (
        "import sys; from rlm_backend_anthropic.backend import AnthropicBackend; "
        "b = AnthropicBackend(); b.capabilities('claude-sonnet-4-5'); print('anthropic' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_missing_sdk_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(PluginError) as info:
        AnthropicBackend(settings=BackendSettings())
    assert "pip install 'anthropic>=2,<3'" in str(info.value)


def test_unimportable_sdk_names_the_pip_command(monkeypatch):
    backend = AnthropicBackend(settings=BackendSettings(api_key="k"))
    monkeypatch.setitem(sys.modules, "anthropic", None)  # import anthropic -> ImportError
    with pytest.raises(PluginError, match=r"pip install 'anthropic>=2,<3'"):
        asyncio.run(backend.complete(LLMRequest(model="claude-sonnet-4-6", messages=[Message.user("hi")])))


def test_missing_key_is_no_providers_configured(no_env):
    backend = AnthropicBackend(settings=BackendSettings())
    assert isinstance(backend, Backend)
    request = LLMRequest(model="anthropic/claude-sonnet-4-6", messages=[Message.user("hi")])
    for call in (backend.complete(request), _drain(backend.stream(request))):
        with pytest.raises(NoProvidersConfigured) as info:
            asyncio.run(call)
        assert "No providers configured: set OPENAI_API_KEY or ANTHROPIC_API_KEY" in str(info.value)


def test_compatible_server_needs_no_key(no_env, scripted_llm):
    scripted_llm.script([Reply.text("proxied answer")])
    backend = AnthropicBackend(settings=BackendSettings(base_url=scripted_llm.anthropic_base_url))
    request = LLMRequest(model="anthropic/claude-sonnet-4-6", messages=[Message.user("hi")])
    response = asyncio.run(_complete_and_close(backend, request))
    assert response.message.text == "proxied answer"
    sent = scripted_llm.last_request
    assert sent.model == "claude-sonnet-4-6", "the anthropic/ prefix is stripped"
    assert _key_sent(sent) == "sk-ant-no-key-required"


def test_key_from_environment(monkeypatch, scripted_llm):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env")
    scripted_llm.script([Reply.text("ok")])
    backend = AnthropicBackend(settings=BackendSettings(base_url=scripted_llm.anthropic_base_url))
    asyncio.run(_complete_and_close(backend, LLMRequest(model="claude-3-haiku-20240307",
                                                        messages=[Message.user("hi")])))
    sent = scripted_llm.last_request
    assert _key_sent(sent) == "sk-ant-from-env"
    assert sent.body["max_tokens"] == 4096, "Claude 3 models get 4096 by default"


def test_the_kernel_resolves_the_backend(pm, no_env):
    from rlm.core import RLM

    rlm = RLM(model="anthropic/claude-sonnet-4-6", plugin_manager=pm)
    assert rlm.backend_name() == "anthropic"


def _key_sent(sent):
    """The key as the SDK sent it: ``x-api-key``, or ``Authorization: Bearer`` (anthropic 2.x)."""
    return sent.header("x-api-key") or (sent.header("authorization") or "").removeprefix("Bearer ")


async def _drain(stream):
    return [event async for event in stream]


async def _complete_and_close(backend, request):
    try:
        return await backend.complete(request)
    finally:
        await backend.aclose()
