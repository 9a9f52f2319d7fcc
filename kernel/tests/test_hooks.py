"""Every hookspec implemented by a test plugin with ``@hookimpl``, and its effect checked.

The plugins here are registered on a fresh manager (``entry_points=False``),
as a plugin's own tests would do.  ``test_hookspecs_meta.py`` checks that no
hookspec is left out of this file's kind of test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import attrs
import pytest

from rlm import hookimpl
from rlm.backend import BackendSettings
from rlm.config import RLMConfig, load_config
from rlm.doctor import Check
from rlm.environment import EnvironmentSettings
from rlm.errors import ConfigError
from rlm.plugins import create_plugin_manager
from rlm.registry import collect
from rlm.types import ToolSpec


def _pm(*plugins: Any, builtins: bool = False):
    pm = create_plugin_manager(entry_points=False, default_plugins=builtins)
    for index, plugin in enumerate(plugins):
        pm.register(plugin, name=getattr(plugin, "NAME", f"plugin{index}"))
    return pm


# --- rlm_register_backends -----------------------------------------------------------------


class EchoBackend:
    def __init__(self, settings: BackendSettings) -> None:
        self.settings = settings


class BackendPlugin:
    NAME = "echo-plugin"

    @hookimpl
    def rlm_register_backends(self, register):
        register("echo", EchoBackend, description="answers with the prompt")
        register("echo-lazy", "rlm_tests_missing_backend:Backend")


def test_register_backends():
    found = collect(_pm(BackendPlugin()), "backend")
    assert set(found) == {"echo", "echo-lazy"}
    assert (found["echo"].plugin, found["echo"].description) == ("echo-plugin", "answers with the prompt")
    backend = found["echo"].load()(settings=BackendSettings(base_url="http://x"))
    assert isinstance(backend, EchoBackend) and backend.settings.base_url == "http://x"
    assert found["echo-lazy"].target == "rlm_tests_missing_backend:Backend"  # not imported by collecting


# --- rlm_resolve_backend (firstresult) -----------------------------------------------------


class Specialist:
    NAME = "specialist"

    @hookimpl(tryfirst=True)
    def rlm_resolve_backend(self, model, config):
        return "anthropic" if model.startswith("anthropic/") else None


class CatchAll:
    NAME = "catch-all"

    @hookimpl(trylast=True)
    def rlm_resolve_backend(self, model):  # a subset of the spec's arguments is fine
        return "litellm"


class Undecided:
    NAME = "undecided"

    @hookimpl
    def rlm_resolve_backend(self, model, config):
        return "local" if config.api_base else None


def test_resolve_backend_first_result_wins():
    pm = _pm(CatchAll(), Undecided(), Specialist())  # registration order does not matter
    resolve = pm.hook.rlm_resolve_backend
    assert resolve(model="anthropic/claude-x", config=RLMConfig()) == "anthropic"
    # the specialist answers None: the call falls through to the next, then the catch-all
    assert resolve(model="gpt-4o", config=RLMConfig()) == "litellm"
    assert resolve(model="gpt-4o", config=RLMConfig(api_base="http://localhost:8000")) == "local"
    assert resolve(model="anthropic/claude-x", config=RLMConfig(api_base="http://x")) == "anthropic"


def test_resolve_backend_nobody_answers():
    assert _pm(Specialist()).hook.rlm_resolve_backend(model="gpt-4o", config=RLMConfig()) is None


# --- rlm_register_environments -------------------------------------------------------------


class MoonEnvironment:
    def __init__(self, settings, callbacks=None) -> None:
        self.settings, self.callbacks = settings, callbacks


class EnvironmentPlugin:
    NAME = "moon"

    @hookimpl
    def rlm_register_environments(self, register):
        register("moon", MoonEnvironment, description="runs code on the moon")


def test_register_environments():
    found = collect(_pm(EnvironmentPlugin()), "environment")
    assert list(found) == ["moon"] and found["moon"].plugin == "moon"
    env = found["moon"].load()(settings=EnvironmentSettings(timeout=3), callbacks=None)
    assert env.settings.timeout == 3


# --- rlm_register_tools (with config) ------------------------------------------------------


async def _remember(text: str) -> dict[str, str]:
    return {"stored": text}


async def _shout(text: str) -> str:
    return text.upper()


class ToolPlugin:
    NAME = "memory"

    @hookimpl
    def rlm_register_tools(self, register, config):
        register(ToolSpec(name="shout", description="upper-case text", handler=_shout,
                          parameters={"type": "object", "properties": {"text": {"type": "string"}}}))
        if config.memory_enabled:
            register(ToolSpec(name="remember", description="store a note", handler=_remember))


class ToolPluginNoConfig:
    NAME = "plain-tools"

    @hookimpl
    def rlm_register_tools(self, register):
        register(ToolSpec(name="plain", description="p", handler=_shout))


def test_register_tools_sees_the_config():
    pm = _pm(ToolPlugin(), ToolPluginNoConfig())
    off = collect(pm, "tool", config=RLMConfig())
    on = collect(pm, "tool", config=load_config(use_file=False, env={"RLM_MEMORY_ENABLED": "1"}))
    assert set(off) == {"shout", "plain"}
    assert set(on) == {"shout", "plain", "remember"}
    spec = on["remember"].load()
    assert isinstance(spec, ToolSpec) and on["remember"].plugin == "memory"
    assert on["remember"].description == "store a note"
    assert asyncio.run(spec.handler(text="milk")) == {"stored": "milk"}
    assert asyncio.run(off["shout"].load().handler(text="hi")) == "HI"


def test_register_tools_collision_names_both_plugins():
    class Other:
        NAME = "other"

        @hookimpl
        def rlm_register_tools(self, register, config):
            register(ToolSpec(name="shout", description="mine", handler=_shout))

    from rlm.errors import PluginError

    with pytest.raises(PluginError, match="tool 'shout' is registered by both plugin '(memory|other)' and plugin "
                                         "'(memory|other)'"):
        collect(_pm(ToolPlugin(), Other()), "tool", config=RLMConfig())


# --- rlm_register_budget_policies ----------------------------------------------------------


class CapPolicy:
    def __init__(self, config: RLMConfig) -> None:
        self.limit = config.token_budget

    def check(self, request: Mapping[str, int]) -> str | None:
        return None if request["tokens"] <= self.limit else f"over {self.limit} tokens"


class BudgetPlugin:
    NAME = "budgets"

    @hookimpl
    def rlm_register_budget_policies(self, register):
        register("cap", CapPolicy, description="refuse above the token budget")


def test_register_budget_policies():
    found = collect(_pm(BudgetPlugin()), "budget_policy")
    policy = found["cap"].load()(config=RLMConfig(token_budget=10))
    assert policy.check({"tokens": 5}) is None
    assert policy.check({"tokens": 11}) == "over 10 tokens"
    assert found["cap"].description == "refuse above the token budget"


# --- rlm_register_trajectory_sinks ---------------------------------------------------------


class ListSink:
    written: list[Mapping[str, Any]] = []

    def __init__(self, config: RLMConfig) -> None:
        self.closed = False
        self.config = config

    def write(self, event: Mapping[str, Any]) -> None:
        self.written.append(dict(event))

    def close(self) -> None:
        self.closed = True


class SinkPlugin:
    NAME = "sinks"

    @hookimpl
    def rlm_register_trajectory_sinks(self, register):
        register("memory-list", ListSink)


def test_register_trajectory_sinks():
    found = collect(_pm(SinkPlugin()), "trajectory_sink")
    sink = found["memory-list"].load()(config=RLMConfig())
    sink.write({"type": "run_start"})
    sink.close()
    assert sink.written[-1] == {"type": "run_start"} and sink.closed


# --- rlm_register_commands -----------------------------------------------------------------


class CommandPlugin:
    NAME = "greeter"

    @hookimpl
    def rlm_register_commands(self, register):
        register("greet", "rlm_tests_greeter:main", help="Greet someone.")


def test_register_commands_alongside_the_builtins():
    pm = _pm(CommandPlugin(), builtins=True)
    found = collect(pm, "command")
    assert found["greet"].target == "rlm_tests_greeter:main"
    assert found["greet"].description == "Greet someone."
    assert found["init"].plugin == "rlm.builtin.commands"

    from rlm.cli import top_level_help

    help_text = top_level_help(pm)
    assert any(line.split() == ["greet", "Greet", "someone."] for line in help_text.splitlines())


# --- rlm_register_config_sections ----------------------------------------------------------


@attrs.define(frozen=True, kw_only=True)
class GreeterSettings:
    greeting: str = "hello"
    repeat: int = 1


class SectionPlugin:
    NAME = "greeter-config"

    @hookimpl
    def rlm_register_config_sections(self, register):
        register("greeter", GreeterSettings)


def test_register_config_sections(tmp_path):
    pm = _pm(SectionPlugin())
    sections = {name: reg.load() for name, reg in collect(pm, "config_section").items()}
    assert sections == {"greeter": GreeterSettings}
    path = tmp_path / "rlm.toml"
    path.write_text('[plugins.greeter]\ngreeting = "hi"\n', encoding="utf-8")
    config = load_config(path=path, env={"RLM_PLUGINS__GREETER__REPEAT": "3"}, sections=sections)
    assert config.plugin("greeter") == GreeterSettings(greeting="hi", repeat=3)
    path.write_text("[plugins.greeter]\nrepaet = 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[plugins.greeter\] repaet: unknown key; did you mean repeat\?"):
        load_config(path=path, env={}, sections=sections)


# --- rlm_register_doctor_checks ------------------------------------------------------------


def _model_check(config: RLMConfig):
    yield Check(status="ok" if config.model else "fail", summary=f"model is {config.model}")
    yield Check(status="warn", summary="optional thing missing", fix="install it")


class DoctorPlugin:
    NAME = "checker"

    @hookimpl
    def rlm_register_doctor_checks(self, register):
        register("model-check", _model_check)


def test_register_doctor_checks():
    found = collect(_pm(DoctorPlugin(), builtins=True), "doctor_check")
    assert "python" in found and found["model-check"].plugin == "checker"
    checks = list(found["model-check"].load()(config=RLMConfig(model="m1")))
    assert [(c.status, c.summary) for c in checks] == [("ok", "model is m1"), ("warn", "optional thing missing")]


# --- rlm_trajectory_event (1:N) ------------------------------------------------------------


class Observer:
    def __init__(self, name: str) -> None:
        self.NAME = name
        self.seen: list[Mapping[str, Any]] = []

    @hookimpl
    def rlm_trajectory_event(self, event):
        self.seen.append(event)


def test_trajectory_event_reaches_every_plugin():
    first, second = Observer("first"), Observer("second")
    pm = _pm(first, second)
    event = {"type": "llm_call", "trajectory_id": "t1", "call_id": "c1", "parent_call_id": None, "depth": 0,
             "timestamp": 1.0}
    results = pm.hook.rlm_trajectory_event(event=event)
    assert results == []  # nothing returned: every implementation ran, none short-circuited
    assert first.seen == [event] and second.seen == [event]
