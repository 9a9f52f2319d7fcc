"""rlm-snipara as the kernel's context provider: ``rlm_sub_complete(context_query=...)`` and auto-context."""

from __future__ import annotations

import json

import pytest
from rlm.errors import ConfigError
from rlm.registry import collect
from rlm.tokens import estimate_tokens
from rlm_snipara import plugin
from rlm_snipara.context_provider import SniparaContextProvider, format_context


def test_the_plugin_registers_the_provider_as_a_string(h):
    from rlm.plugins import create_plugin_manager

    pm = create_plugin_manager(entry_points=False)
    pm.register(plugin, name="snipara")
    [reg] = collect(pm, "context_provider").values()
    assert reg.name == "snipara" and reg.target == "rlm_snipara.context_provider:SniparaContextProvider"
    assert reg.load() is SniparaContextProvider


def test_local_index_answers_with_the_best_sections_as_text(local_config, h):
    provider = SniparaContextProvider(config=local_config())
    assert provider.source == "local"
    text = h.run(provider.context("when do authentication tokens expire", max_tokens=400))
    assert text.startswith("## docs/auth.md — Authentication > Tokens (line ")
    assert "expire after one hour" in text
    assert estimate_tokens(text) <= 400


def test_the_budget_bounds_the_text(local_config, h):
    provider = SniparaContextProvider(config=local_config())
    for budget in (20, 80, 200):
        assert estimate_tokens(h.run(provider.context("authentication", max_tokens=budget))) <= budget


def test_nothing_relevant_is_empty(local_config, h):
    provider = SniparaContextProvider(config=local_config())
    assert h.run(provider.context("kubernetes helm charts", max_tokens=500)) == ""
    assert h.run(provider.context("   ", max_tokens=500)) == ""


def test_unconfigured_is_a_config_error_with_the_fix(h):
    with pytest.raises(ConfigError, match="rlm-snipara has nothing to search") as info:
        SniparaContextProvider(config=h.make_config())
    assert "SNIPARA_API_KEY" in str(info.value) and "docs" in str(info.value)


def test_hosted_project_is_asked_with_rlm_context_query(hosted_config, standin, h):
    standin.responder = standin.ok({"sections": [{"title": "Auth", "content": "Use OAuth2.", "file": "auth.md"}]})
    provider = SniparaContextProvider(config=hosted_config())
    assert provider.source == "snipara"
    text = h.run(provider.context("auth", max_tokens=300))
    assert text == "## auth.md\nUse OAuth2."
    [request] = standin.requests
    assert request["body"]["params"] == {"name": "rlm_context_query",
                                         "arguments": {"query": "auth", "max_tokens": 300}}


def test_format_context_shapes():
    assert format_context(None) == ""
    assert format_context("  plain  ") == "plain"
    assert format_context({"results": []}) == ""
    assert format_context({"context": "ctx"}) == "ctx"
    assert format_context({"results": [{"file": "a.md", "section": "A", "line": 3, "content": "x"}]}) == \
        "## a.md — A (line 3)\nx"
    assert json.loads(format_context({"odd": 1})) == {"odd": 1}


def test_context_query_injects_offline_docs_into_a_sub_call(make_rlm, local_config, h, tmp_path):
    def script(request):
        user = request.messages[1].text
        if user.startswith("How long"):
            return "one hour" if "expire after one hour" in user else "unknown"
        tools = [m for m in request.messages if m.role == "tool"]
        if tools:
            return json.loads(tools[-1].text)
        return [h.call("rlm_sub_complete", query="How long do tokens last?", context_query="token expiry")]

    rlm, backend = make_rlm(script, local_config(protocol="tools"))
    result = h.run(rlm.completion("tokens?"))
    assert result.success, result.error
    assert result.response == "one hour"
    sub = next(r for r in backend.requests if r.messages[1].text.startswith("How long"))
    assert "Context:\n## docs/auth.md — Authentication > Tokens" in sub.messages[1].text
    [injected] = [e for e in result.events if e["type"] == "context_injected"]
    assert injected["provider"] == "snipara" and injected["query"] == "token expiry" and injected["tokens"] > 0
