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
from rlm_backend_openai import plugin
from rlm_backend_openai.backend import OpenAIBackend
from rlm_backend_openai.options import OpenAIOptions
from rlm_testing.server import Reply


@pytest.fixture
def pm():
    manager = create_plugin_manager(entry_points=False)
    manager.register(plugin, name="openai")
    return manager


@pytest.fixture
def no_env(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def _config(pm, **env) -> RLMConfig:
    sections = {name: reg.load() for name, reg in collect(pm, "config_section").items()}
    return load_config(use_file=False, env=env, sections=sections)


def test_backend_is_registered_as_a_lazy_string(pm):
    reg = collect(pm, "backend")["openai"]
    assert reg.target == "rlm_backend_openai.backend:OpenAIBackend"
    assert reg.plugin == "openai"
    assert reg.load() is OpenAIBackend


def test_resolves_only_openai_prefixed_models(pm):
    config = RLMConfig()
    assert pm.hook.rlm_resolve_backend(model="openai/gpt-4o-mini", config=config) == "openai"
    assert pm.hook.rlm_resolve_backend(model="gpt-4o-mini", config=config) is None
    assert pm.hook.rlm_resolve_backend(model="anthropic/claude-sonnet-4-5", config=config) is None


def test_config_section(pm):
    assert collect(pm, "config_section")["backend-openai"].load() is OpenAIOptions
    config = _config(pm, RLM_PLUGINS__BACKEND_OPENAI__ORGANIZATION="org-123",
                     RLM_PLUGINS__BACKEND_OPENAI__DEFAULT_MAX_TOKENS="256")
    assert config.plugin("backend-openai") == OpenAIOptions(organization="org-123", default_max_tokens=256)


def test_doctor_check(pm, no_env):
    run_check = collect(pm, "doctor_check")["backend-openai"].load()
    statuses = [(c.status, c.summary) for c in run_check(config=_config(pm))]
    assert statuses[0] == ("ok", "openai backend: openai SDK installed")
    assert statuses[1][0] == "warn"


def test_importing_the_plugin_does_not_import_the_sdk():
    code = (
        "import sys, rlm_backend_openai.plugin; "
        "print(sorted(m for m in ('openai', 'httpx', 'httpx2', 'pydantic', 'rlm.backend', 'rlm.config', 'structlog')"
        " if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_constructing_the_backend_does_not_import_the_sdk():
    code = (
        "import sys; from rlm_backend_openai.backend import OpenAIBackend; "
        "b = OpenAIBackend(); b.capabilities('gpt-4o'); print('openai' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_missing_sdk_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(PluginError) as info:
        OpenAIBackend(settings=BackendSettings())
    assert "pip install 'openai>=2,<4'" in str(info.value)


def test_unimportable_sdk_names_the_pip_command(monkeypatch):
    backend = OpenAIBackend(settings=BackendSettings(api_key="k"))
    monkeypatch.setitem(sys.modules, "openai", None)  # import openai -> ImportError
    with pytest.raises(PluginError, match=r"pip install 'openai>=2,<4'"):
        asyncio.run(backend.complete(LLMRequest(model="gpt-4o", messages=[Message.user("hi")])))


def test_missing_key_is_no_providers_configured(no_env):
    backend = OpenAIBackend(settings=BackendSettings())
    assert isinstance(backend, Backend)
    request = LLMRequest(model="openai/gpt-4o-mini", messages=[Message.user("hi")])
    for call in (backend.complete(request), _drain(backend.stream(request))):
        with pytest.raises(NoProvidersConfigured) as info:
            asyncio.run(call)
        assert "No providers configured: set OPENAI_API_KEY or ANTHROPIC_API_KEY" in str(info.value)
        assert info.value.permanent


def test_local_server_needs_no_key(no_env, scripted_llm):
    scripted_llm.script([Reply.text("local answer")])
    backend = OpenAIBackend(settings=BackendSettings(base_url=scripted_llm.openai_base_url))
    response = asyncio.run(_complete_and_close(backend, LLMRequest(model="openai/local-llama",
                                                                   messages=[Message.user("hi")])))
    assert response.message.text == "local answer"
    sent = scripted_llm.last_request
    assert sent.model == "local-llama", "the openai/ prefix is stripped"
    assert sent.header("authorization") == "Bearer sk-no-key-required"


def test_key_from_environment_and_options_are_sent(monkeypatch, scripted_llm):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    scripted_llm.script([Reply.text("ok")])
    options = OpenAIOptions(organization="org-rlm", project="proj_rlm", default_max_tokens=99)
    backend = OpenAIBackend(settings=BackendSettings(base_url=scripted_llm.openai_base_url, options=options))
    asyncio.run(_complete_and_close(backend, LLMRequest(model="gpt-4o-mini", messages=[Message.user("hi")])))
    sent = scripted_llm.last_request
    assert sent.header("authorization") == "Bearer sk-from-env"
    assert sent.header("openai-organization") == "org-rlm"
    assert sent.header("openai-project") == "proj_rlm"
    assert sent.body["max_tokens"] == 99, "a custom base_url gets max_tokens"


def test_the_kernel_resolves_and_builds_the_backend(pm, no_env):
    from rlm.core import RLM

    rlm = RLM(model="openai/gpt-4o-mini", plugin_manager=pm, api_base="http://127.0.0.1:9/v1")
    assert rlm.backend_name() == "openai"
    factory = collect(pm, "backend")["openai"].load()
    backend = factory(settings=BackendSettings(base_url=rlm.config.api_base,
                                               options=rlm.config.plugin("backend-openai")))
    assert backend.options == OpenAIOptions()
    assert backend.api_key() == "sk-no-key-required"


async def _drain(stream):
    return [event async for event in stream]


async def _complete_and_close(backend, request):
    try:
        return await backend.complete(request)
    finally:
        await backend.aclose()
