"""rlm-testing's BackendPluginConformance for the anthropic plugin (hooks, import cost, missing SDK or
key, retries), and Anthropic's default max_tokens."""

from __future__ import annotations

from rlm.backend import BackendSettings, LLMRequest
from rlm.types import Message
from rlm_backend_anthropic.backend import AnthropicBackend
from rlm_backend_anthropic.options import AnthropicOptions
from rlm_testing.backend_plugin_suite import BackendPluginConformance, run
from rlm_testing.server import Reply


class TestAnthropicPlugin(BackendPluginConformance):
    entry_point = "rlm_backend_anthropic.plugin:plugin"
    name = "anthropic"
    factory = "rlm_backend_anthropic.backend:AnthropicBackend"
    backend = AnthropicBackend
    options = AnthropicOptions
    sdk = "anthropic"
    requirement = "anthropic>=2,<3"
    protocol = "anthropic"
    model = "claude-sonnet-4-6"
    claimed = ("anthropic/claude-sonnet-4-6",)
    unclaimed = ("claude-sonnet-4-6", "openai/gpt-4o")
    config_env = (("RLM_PLUGINS__BACKEND_ANTHROPIC__STRUCTURED_OUTPUT", "tool"),
                  ("RLM_PLUGINS__BACKEND_ANTHROPIC__DEFAULT_MAX_TOKENS", "2048"))
    config_expected = AnthropicOptions(structured_output="tool", default_max_tokens=2048)
    doctor = (("ok", "anthropic backend: anthropic SDK installed"),
              ("warn", "anthropic backend: ANTHROPIC_API_KEY is not set"))
    unkeyed_models = ("anthropic/claude-sonnet-4-6",)
    local_model, sent_model = "anthropic/claude-sonnet-4-6", "claude-sonnet-4-6"
    placeholder_key = "sk-ant-no-key-required"
    key_env = "ANTHROPIC_API_KEY"


def test_claude_3_models_get_4096_max_tokens_by_default(scripted_llm):
    scripted_llm.script([Reply.text("ok")])
    backend = AnthropicBackend(settings=BackendSettings(api_key="k", base_url=scripted_llm.anthropic_base_url))
    run(backend, LLMRequest(model="claude-3-haiku-20240307", messages=[Message.user("hi")]))
    assert scripted_llm.last_request.body["max_tokens"] == 4096
