"""Context providers (``rlm_register_context_providers``): ``rlm_sub_complete(context_query=...)`` and
``AgentRunner(auto_context=True)``, with a fake provider plugin and the scripted backend."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from rlm import hookimpl
from rlm.config import RLMConfig
from rlm.context import CONTEXT_QUERY_MAX_TOKENS, context_query_tokens
from rlm.context_providers import choose, cut
from rlm.errors import ConfigError
from rlm.plugins import create_plugin_manager
from rlm.registry import Registration, provided_by
from rlm.tokens import estimate_tokens
from rlm.trajectory import read_trajectory

from .conftest import FakeBackend, FakePlugin, call


class DocsProvider:
    """A context provider answering from a dict of canned texts (records what it was asked)."""

    def __init__(self, texts: dict[str, str] | None = None, *, fail: BaseException | None = None) -> None:
        self.texts = texts or {}
        self.fail = fail
        self.asked: list[tuple[str, int]] = []

    async def context(self, query: str, *, max_tokens: int) -> str:
        self.asked.append((query, max_tokens))
        if self.fail is not None:
            raise self.fail
        return self.texts.get(query, f"DOCS about {query}")


class ProviderPlugin:
    """Registers ``name`` -> a factory returning ``provider`` (the factory's config is kept)."""

    def __init__(self, name: str = "fake-docs", provider: DocsProvider | None = None) -> None:
        self.name = name
        self.provider = provider or DocsProvider()
        self.configs: list[Any] = []

    @hookimpl
    def rlm_register_context_providers(self, register):
        def factory(*, config):
            self.configs.append(config)
            return self.provider

        register(self.name, factory, description="canned texts, tests only")


def with_provider(rlm: Any, *plugins: ProviderPlugin) -> Any:
    for plugin in plugins:
        rlm.pm.register(plugin, name=plugin.name)
    return rlm


def events_of(tmp_path, result) -> list[dict]:
    return read_trajectory(str(tmp_path / "logs" / f"{result.trajectory_id}.jsonl"))


def tool_results(events: list[dict]) -> list[dict]:
    return [r for e in events if e["type"] == "tool_results" for r in e["tool_results"]]


def sub_call_script(**arguments: Any):
    """Top call: one rlm_sub_complete(**arguments), then answers with the tool's result; the sub-call
    answers "sub answer"."""
    def script(request):
        if request.messages[1].text.startswith("child question"):
            return "sub answer"
        tools = [m for m in request.messages if m.role == "tool"]
        if tools:
            return f"top: {tools[-1].text}"
        return [call("rlm_sub_complete", query="child question", **arguments)]

    return script


def sub_requests(backend: FakeBackend) -> list[Any]:
    return [r for r in backend.requests if r.messages[1].text.startswith("child question")]


# --- rlm_sub_complete(context_query=...) -------------------------------------------------------


def test_context_query_injects_the_providers_text_into_the_sub_call(make_rlm, tmp_path):
    rlm, backend = make_rlm(sub_call_script(context_query="auth tokens"), protocol="tools")
    plugin = ProviderPlugin()
    with_provider(rlm, plugin)
    result = rlm.completion_sync("do it")
    assert result.success, result.error
    [sub] = sub_requests(backend)
    assert sub.messages[1].text == "child question\n\nContext:\nDOCS about auth tokens"
    events = events_of(tmp_path, result)
    [injected] = [e for e in events if e["type"] == "context_injected"]
    text = "DOCS about auth tokens"
    assert {k: injected[k] for k in ("query", "provider", "chars", "tokens")} == {
        "query": "auth tokens", "provider": "fake-docs", "chars": len(text), "tokens": estimate_tokens(text)}
    assert injected["depth"] == 0  # the calling call's event ...
    start = next(e for e in events if e["type"] == "call_start")
    assert events.index(injected) < events.index(start)  # ... before the sub-call starts
    assert "DOCS about auth tokens" in start["prompt"]
    # the provider was built once, with the run's config, and asked within a quarter of the sub-call's budget
    assert len(plugin.configs) == 1 and isinstance(plugin.configs[0], RLMConfig)
    [(query, max_tokens)] = plugin.provider.asked
    assert query == "auth tokens"
    assert max_tokens <= start["token_limit"] // 4 + 1 and max_tokens <= CONTEXT_QUERY_MAX_TOKENS


def test_context_and_context_query_are_both_given_to_the_sub_call(make_rlm):
    rlm, backend = make_rlm(sub_call_script(context="known facts", context_query="q"), protocol="tools")
    with_provider(rlm, ProviderPlugin())
    assert rlm.completion_sync("do it").success
    [sub] = sub_requests(backend)
    assert sub.messages[1].text == "child question\n\nContext:\nknown facts\n\nDOCS about q"


def test_nothing_relevant_injects_nothing_but_is_recorded(make_rlm, tmp_path):
    rlm, backend = make_rlm(sub_call_script(context_query="nothing"), protocol="tools")
    with_provider(rlm, ProviderPlugin(provider=DocsProvider({"nothing": ""})))
    result = rlm.completion_sync("do it")
    assert result.success
    [sub] = sub_requests(backend)
    assert sub.messages[1].text == "child question"
    [injected] = [e for e in events_of(tmp_path, result) if e["type"] == "context_injected"]
    assert injected["chars"] == 0 and injected["tokens"] == 0


def test_a_long_answer_is_cut_to_the_budget(make_rlm, tmp_path):
    long = "word " * 50_000
    rlm, backend = make_rlm(sub_call_script(context_query="big", max_tokens=2000), protocol="tools")
    with_provider(rlm, ProviderPlugin(provider=DocsProvider({"big": long})))
    result = rlm.completion_sync("do it")
    assert result.success
    [injected] = [e for e in events_of(tmp_path, result) if e["type"] == "context_injected"]
    assert injected["tokens"] <= 500  # a quarter of max_tokens=2000
    assert estimate_tokens(sub_requests(backend)[0].messages[1].text) < 600


def test_without_a_provider_context_query_is_a_tool_error_and_no_sub_call(make_rlm, tmp_path):
    rlm, backend = make_rlm(sub_call_script(context_query="auth"), protocol="tools")
    result = rlm.completion_sync("do it")
    assert result.success, result.error  # the model was told, the run went on
    [res] = tool_results(events_of(tmp_path, result))
    assert res["is_error"]
    error = json.loads(res["content"])["error"]
    assert error == "no context provider is installed: pip install rlm-snipara, or drop context_query"
    assert not sub_requests(backend)
    assert not [e for e in events_of(tmp_path, result) if e["type"] in ("call_start", "context_injected")]


def test_several_providers_and_none_chosen_is_a_tool_error_naming_them(make_rlm, tmp_path):
    rlm, backend = make_rlm(sub_call_script(context_query="auth"), protocol="tools")
    with_provider(rlm, ProviderPlugin("alpha"), ProviderPlugin("beta"))
    result = rlm.completion_sync("do it")
    error = json.loads(tool_results(events_of(tmp_path, result))[0]["content"])["error"]
    assert "several context providers are installed (alpha, beta)" in error
    assert '[rlm] context_provider = "alpha"' in error and "drop context_query" in error
    assert not sub_requests(backend)


def test_the_configured_provider_is_used_among_several(make_rlm, tmp_path):
    rlm, backend = make_rlm(sub_call_script(context_query="auth"), protocol="tools", context_provider="beta")
    alpha, beta = ProviderPlugin("alpha", DocsProvider({"auth": "from alpha"})), \
        ProviderPlugin("beta", DocsProvider({"auth": "from beta"}))
    with_provider(rlm, alpha, beta)
    result = rlm.completion_sync("do it")
    assert result.success
    assert sub_requests(backend)[0].messages[1].text.endswith("Context:\nfrom beta")
    assert not alpha.configs and not alpha.provider.asked


def test_an_unknown_configured_provider_is_a_tool_error_listing_those_installed(make_rlm, tmp_path):
    rlm, _ = make_rlm(sub_call_script(context_query="auth"), protocol="tools", context_provider="gamma")
    with_provider(rlm, ProviderPlugin("alpha"))
    result = rlm.completion_sync("do it")
    error = json.loads(tool_results(events_of(tmp_path, result))[0]["content"])["error"]
    assert "context_provider = 'gamma'" in error and "installed: alpha" in error


def test_a_failing_provider_is_a_tool_error_and_no_sub_call(make_rlm, tmp_path):
    rlm, backend = make_rlm(sub_call_script(context_query="auth"), protocol="tools")
    with_provider(rlm, ProviderPlugin(provider=DocsProvider(fail=RuntimeError("index corrupt"))))
    result = rlm.completion_sync("do it")
    assert result.success
    error = json.loads(tool_results(events_of(tmp_path, result))[0]["content"])["error"]
    assert error == "context provider 'fake-docs' failed: RuntimeError: index corrupt"
    assert not sub_requests(backend)


def test_a_factory_that_cannot_serve_the_configuration_is_a_tool_error(make_rlm, tmp_path):
    class Unconfigured(ProviderPlugin):
        @hookimpl
        def rlm_register_context_providers(self, register):
            def factory(*, config):
                raise ConfigError("nothing to search", fix="list docs")

            register(self.name, factory)

    rlm, _ = make_rlm(sub_call_script(context_query="auth"), protocol="tools")
    with_provider(rlm, Unconfigured())
    result = rlm.completion_sync("do it")
    error = json.loads(tool_results(events_of(tmp_path, result))[0]["content"])["error"]
    assert error == "nothing to search: list docs"


def test_context_query_respects_the_depth_limit_before_asking_the_provider(make_rlm, tmp_path):
    rlm, backend = make_rlm(sub_call_script(context_query="auth"), protocol="tools", max_depth=0)
    plugin = ProviderPlugin()
    with_provider(rlm, plugin)
    result = rlm.completion_sync("do it")
    assert result.success
    assert not plugin.provider.asked and not sub_requests(backend)
    assert any(e["type"] == "limit_hit" for e in events_of(tmp_path, result))


# --- the pieces --------------------------------------------------------------------------------


def test_context_query_tokens():
    assert context_query_tokens(float("inf"), None) == CONTEXT_QUERY_MAX_TOKENS
    assert context_query_tokens(float("inf"), 800) == 200
    assert context_query_tokens(10_000, None) == 1250  # a quarter of half of what is left
    assert context_query_tokens(10_000, 2000) == 500
    assert context_query_tokens(10_000_000, None) == CONTEXT_QUERY_MAX_TOKENS
    assert context_query_tokens(0, None) == 1


def test_cut_keeps_the_estimate_within_the_budget():
    for n in (1, 7, 100, 1000):
        text = ("lorem ipsum dolor " * 1000) + "x" * 5000
        assert estimate_tokens(cut(text, n)) <= n
    assert cut("short", 10) == "short"


def _reg(name: str) -> Registration:
    return Registration(kind="context_provider", name=name, target=object, plugin=f"p-{name}")


def test_choose():
    one, two = {"a": _reg("a")}, {"a": _reg("a"), "b": _reg("b")}
    assert choose(RLMConfig(), {}) is None
    assert choose(RLMConfig(), one).name == "a"
    assert choose(RLMConfig(), two) is None
    assert choose(RLMConfig(context_provider="b"), two).name == "b"
    assert choose(RLMConfig(context_provider=" "), one).name == "a"  # empty: unset
    with pytest.raises(ConfigError, match="installed: a, b"):
        choose(RLMConfig(context_provider="c"), two)


def test_rlm_plugins_lists_context_providers():
    pm = create_plugin_manager(entry_points=False)
    pm.register(ProviderPlugin(), name="docs-plugin")
    assert provided_by(pm, "docs-plugin", config=RLMConfig()) == {"context_provider": ["fake-docs"]}


# --- AgentRunner(auto_context=True) --------------------------------------------------------------


def make_agent_with(tmp_path, script, *plugins, **kwargs):
    from rlm.agent import AgentRunner

    backend = FakeBackend(script)
    pm = create_plugin_manager(entry_points=False)
    pm.register(FakePlugin(backend), name="fake-plugin")
    for plugin in plugins:
        pm.register(plugin, name=plugin.name)
    kwargs.setdefault("log_dir", str(tmp_path / "logs"))
    runner = AgentRunner(model="fake-model", backend="fake", environment="fake", plugin_manager=pm, **kwargs)
    return runner, backend


def test_auto_context_puts_the_tasks_context_in_the_system_prompt(tmp_path):
    plugin = ProviderPlugin(provider=DocsProvider({"Fix the login bug": "Login lives in auth.py"}))
    runner, backend = make_agent_with(tmp_path, [[call("FINAL", answer="fixed")]], plugin,
                                      auto_context=True, context_budget=300, protocol="tools")
    result = asyncio.run(runner.run("Fix the login bug"))
    assert result.success and result.answer == "fixed"
    system = backend.requests[0].messages[0].text
    assert "Login lives in auth.py" in system and "'fake-docs'" in system
    assert plugin.provider.asked == [("Fix the login bug", 300)]
    events = events_of(tmp_path, result)
    assert [e["type"] for e in events[:2]] == ["run_start", "context_injected"]  # in order, in the file ...
    injected = events[1]
    assert injected["provider"] == "fake-docs" and injected["query"] == "Fix the login bug"
    assert injected["call_id"] == events[0]["call_id"] and "error" not in injected


def test_auto_context_with_a_system_prompt_keeps_both(tmp_path):
    runner, backend = make_agent_with(tmp_path, [[call("FINAL", answer="ok")]], ProviderPlugin(),
                                      auto_context=True, protocol="tools")
    asyncio.run(runner.run("task", system="Be terse."))
    system = backend.requests[0].messages[0].text
    assert system.index("Be terse.") < system.index("DOCS about task")


def test_auto_context_without_a_provider_is_a_config_error_at_construction(tmp_path):
    with pytest.raises(ConfigError, match="auto_context: no context provider is installed") as info:
        make_agent_with(tmp_path, [], auto_context=True)
    assert "pip install rlm-snipara" in str(info.value)


def test_auto_context_off_does_not_look_for_a_provider(tmp_path):
    plugin = ProviderPlugin()
    runner, backend = make_agent_with(tmp_path, [[call("FINAL", answer="ok")]], plugin, protocol="tools")
    result = asyncio.run(runner.run("task"))
    assert result.success and not plugin.configs
    assert "DOCS" not in backend.requests[0].messages[0].text
    assert not [e for e in events_of(tmp_path, result) if e["type"] == "context_injected"]


def test_auto_context_provider_failure_is_recorded_and_the_run_goes_on(tmp_path):
    plugin = ProviderPlugin(provider=DocsProvider(fail=RuntimeError("service down")))
    runner, _ = make_agent_with(tmp_path, [[call("FINAL", answer="ok")]], plugin, auto_context=True,
                                protocol="tools")
    result = asyncio.run(runner.run("task"))
    assert result.success and result.answer == "ok"
    [injected] = [e for e in events_of(tmp_path, result) if e["type"] == "context_injected"]
    assert injected["chars"] == 0 and "service down" in injected["error"]


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "100"])
def test_context_budget_must_be_a_positive_whole_number(tmp_path, bad):
    with pytest.raises(ConfigError, match="context_budget"):
        make_agent_with(tmp_path, [], ProviderPlugin(), auto_context=True, context_budget=bad)
