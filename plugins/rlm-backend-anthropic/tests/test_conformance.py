"""rlm-testing's BackendConformance suite, run through the real anthropic SDK against the scripted server.

Run twice: with structured output as a forced tool (what ``auto`` picks for
the suite's model) and natively (``output_config.format``).
"""

from __future__ import annotations

from typing import Any

from rlm_backend_anthropic.backend import AnthropicBackend
from rlm_backend_anthropic.options import AnthropicOptions
from rlm_testing.backend_suite import BackendConformance, contains
from rlm_testing.server import Reply, ScriptedLLMServer


class TestAnthropicConformance(BackendConformance):
    """Structured output through a forced tool: the scripted model answers by calling it."""

    protocol = "anthropic"
    keeps_connections_alive = True
    model = "claude-sonnet-4-20250514"
    options = AnthropicOptions(retry_base_delay=0.01, retry_max_delay=0.05, structured_output="auto")

    def make_backend(self, server: ScriptedLLMServer, **settings: Any) -> AnthropicBackend:
        settings.setdefault("options", self.options)
        return AnthropicBackend(settings=self.backend_settings(server, **settings))

    def json_reply(self, value: Any) -> Reply:
        return Reply.tool_calls(("city_facts", value))

    def assert_schema_sent(self, body: Any, name: str, schema: Any) -> None:
        super().assert_schema_sent(body, name, schema)
        (tool,) = [t for t in body["tools"] if t["name"] == name]
        assert tool["input_schema"] == schema
        assert body["tool_choice"] == {"type": "tool", "name": name}
        assert "output_config" not in body


class TestAnthropicNativeConformance(TestAnthropicConformance):
    """Structured output through ``output_config.format``: the scripted model answers JSON text."""

    options = AnthropicOptions(retry_base_delay=0.01, retry_max_delay=0.05, structured_output="native")

    def json_reply(self, value: Any) -> Reply:
        return Reply.json(value)

    def assert_schema_sent(self, body: Any, name: str, schema: Any) -> None:
        assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
        assert "tools" not in body and "tool_choice" not in body
        assert contains(body["output_config"], dict(schema["properties"]))
