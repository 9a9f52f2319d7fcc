"""rlm-testing's BackendPluginConformance for the openai plugin (hooks, import cost, missing SDK or key,
retries), and the options only OpenAI sends."""

from __future__ import annotations

from rlm.backend import BackendSettings, LLMRequest
from rlm.types import Message
from rlm_backend_openai.backend import OpenAIBackend
from rlm_backend_openai.options import OpenAIOptions
from rlm_testing.backend_plugin_suite import BackendPluginConformance, run
from rlm_testing.server import Reply


class TestOpenAIPlugin(BackendPluginConformance):
    entry_point = "rlm_backend_openai.plugin:plugin"
    name = "openai"
    factory = "rlm_backend_openai.backend:OpenAIBackend"
    backend = OpenAIBackend
    options = OpenAIOptions
    sdk = "openai"
    requirement = "openai>=2,<4"
    model = "gpt-4o"
    claimed = ("openai/gpt-4o-mini",)
    unclaimed = ("gpt-4o-mini", "anthropic/claude-sonnet-4-5")
    config_env = (("RLM_PLUGINS__BACKEND_OPENAI__ORGANIZATION", "org-123"),
                  ("RLM_PLUGINS__BACKEND_OPENAI__DEFAULT_MAX_TOKENS", "256"))
    config_expected = OpenAIOptions(organization="org-123", default_max_tokens=256)
    doctor = (("ok", "openai backend: openai SDK installed"), ("warn", "openai backend: OPENAI_API_KEY is not set"))
    unkeyed_models = ("openai/gpt-4o-mini",)
    local_model, sent_model = "openai/local-llama", "local-llama"
    key_env = "OPENAI_API_KEY"


def test_options_are_sent(scripted_llm):
    scripted_llm.script([Reply.text("ok")])
    options = OpenAIOptions(organization="org-rlm", project="proj_rlm", default_max_tokens=99)
    backend = OpenAIBackend(settings=BackendSettings(api_key="sk-k", base_url=scripted_llm.openai_base_url,
                                                     options=options))
    run(backend, LLMRequest(model="gpt-4o-mini", messages=[Message.user("hi")]))
    sent = scripted_llm.last_request
    assert sent.header("authorization") == "Bearer sk-k"
    assert sent.header("openai-organization") == "org-rlm"
    assert sent.header("openai-project") == "proj_rlm"
    assert sent.body["max_tokens"] == 99, "a custom base_url gets max_tokens"
