"""The rlm-runtime 2.x Python names, mapped onto rlm's own API.

Code written for rlm-runtime 2.x keeps working where the meaning carries over:
``from rlm import CompletionOptions, RLMResult`` and ``rlm.completion(prompt, options=...)``,
``from rlm.agent import AgentConfig`` and ``AgentRunner(rlm, config)``, ``rlm.agent_run(goal)``,
``rlm.Tool(...)``, ``load_config(path)``, the ``to_dict()`` methods of the results, 2.x's ``RLM(...)``
keyword names (``timeout_seconds=``, ``docker_timeout=``) and the 2.x module paths
``rlm.core.orchestrator``, ``rlm.core.config`` and ``rlm.core.types``.

Every 2.x field either maps onto one of rlm's settings, is honoured here (``include_trajectory``,
``parallel_tools``), or is refused with a :class:`rlm.errors.ConfigError` that names it and what to
use instead (``tool_budget``, ``stop_sequences``): nothing that changes what a run may spend or
do is dropped silently.  A field left unset (``None``, the default here) means "the RLM's own
setting" (``rlm.toml``, ``RLM_*``, ``RLM(...)``), not 2.x's default (see each class).

This module stays light (attrs only): ``rlm.agent`` imports it, and ``import rlm`` does not.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from attrs import define, fields

from rlm.errors import ConfigError
from rlm.types import CompletionResult

#: 2.x's result of ``RLM.completion``: the same class as :class:`rlm.types.CompletionResult`.
RLMResult = CompletionResult

#: 2.x top-level names rlm does not provide, and what to use instead.
NOT_PROVIDED: Mapping[str, str] = {
    "ToolRegistry": "rlm has no ToolRegistry: pass tools to RLM(tools=[...]) (functions decorated with "
                    "@rlm.tool, or rlm.Tool(name=..., description=..., parameters=..., handler=...)), "
                    "or ship them in a plugin (the rlm_register_tools hook)",
    "TrajectoryEvent": "rlm has no TrajectoryEvent class: result.events holds the run's trajectory events as "
                       "dicts (event['type'], event['call_id'], event['token_usage']...), the same JSON events "
                       "as logs/<trajectory_id>.jsonl (rlm.trajectory.read_trajectory reads that file)",
}


def not_provided(name: str) -> ImportError:
    """The error for a 2.x name rlm does not provide (``from rlm import ToolRegistry``)."""
    return ImportError(f"cannot import {name!r} from 'rlm': {NOT_PROVIDED[name]}", name=name)


def _refuse(owner: str, name: str, value: Any, instead: str) -> ConfigError:
    return ConfigError(f"{owner}({name}={value!r}): rlm has no {name}", fix=instead)


_TOOL_BUDGET_FIX = ("leave tool_budget out, and bound the work with max_turns (model turns; for AgentConfig: "
                    "max_iterations), token_budget or cost_budget_usd / cost_limit")


@define(frozen=True, kw_only=True)
class CompletionOptions:
    """2.x's per-call options for ``RLM.completion(prompt, options=CompletionOptions(...))``.

    Each field left ``None`` keeps the RLM's own setting (2.x filled in its defaults: depth 4,
    8000 tokens, 120 s).  What each field becomes:

    ``max_depth`` -> ``max_depth``; ``max_subcalls`` -> ``max_subcalls`` (in rlm: sub-calls *one turn*
    may start; 2.x counted the calls of the whole completion); ``token_budget`` -> ``token_budget``;
    ``timeout_seconds`` -> ``timeout``; ``cost_budget_usd`` -> ``cost_limit`` (it needs a known price);
    ``temperature`` -> ``temperature``; ``response_format`` -> ``response_format`` (a JSON Schema, an
    ``{"name", "schema"}`` pair or OpenAI's ``{"type": "json_schema", "json_schema": {...}}``);
    ``max_parallel`` -> ``max_parallel``; ``parallel_tools=False`` -> ``max_parallel=1``;
    ``include_trajectory=False`` -> the result's ``events`` are left empty (rlm keeps them by
    default; the trajectory file is written either way).
    ``tool_budget`` and ``stop_sequences`` have no counterpart: setting them raises ConfigError.
    """

    max_depth: int | None = None
    max_subcalls: int | None = None
    token_budget: int | None = None
    tool_budget: int | None = None
    timeout_seconds: float | None = None
    include_trajectory: bool | None = None
    temperature: float | None = None
    stop_sequences: list[str] | None = None
    cost_budget_usd: float | None = None
    response_format: Mapping[str, Any] | None = None
    parallel_tools: bool | None = None
    max_parallel: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The options as JSON-ready data (2.x's keys; unset fields are None)."""
        from rlm.trajectory import jsonable

        return {f.name: jsonable(getattr(self, f.name)) for f in fields(type(self))}

    def settings(self) -> dict[str, Any]:
        """The ``[rlm]`` settings these options set, as ``{key: value}`` (unset fields left out).

        Raises ConfigError for a field rlm has no counterpart for.
        """
        if self.tool_budget is not None:
            raise _refuse("CompletionOptions", "tool_budget", self.tool_budget, _TOOL_BUDGET_FIX)
        if self.stop_sequences:
            raise _refuse("CompletionOptions", "stop_sequences", self.stop_sequences,
                          "leave stop_sequences out: a run ends when the model answers (FINAL(...) or a plain "
                          "reply); cut the text afterwards if you need to")
        out: dict[str, Any] = {}
        for ours, value in (("max_depth", self.max_depth), ("max_subcalls", self.max_subcalls),
                            ("token_budget", self.token_budget), ("timeout", self.timeout_seconds),
                            ("cost_limit", self.cost_budget_usd), ("temperature", self.temperature),
                            ("max_parallel", self.max_parallel)):
            if value is not None:
                out[ours] = value
        if self.parallel_tools is False:
            out["max_parallel"] = 1
        return out

    def sources(self) -> dict[str, str]:
        """For error messages: each ``[rlm]`` key of :meth:`settings` -> the option it came from."""
        named = {"timeout": "timeout_seconds", "cost_limit": "cost_budget_usd"}
        out = {key: f"CompletionOptions.{named.get(key, key)}" for key in self.settings()}
        if self.parallel_tools is False:
            out["max_parallel"] = "CompletionOptions.parallel_tools=False"
        return out

    def json_schema(self) -> Mapping[str, Any] | None:
        """``response_format`` in the form ``RLM.completion`` takes (``{"name", "schema"}`` or a schema)."""
        return normalize_response_format(self.response_format)


def normalize_response_format(value: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """OpenAI's ``{"type": "json_schema", "json_schema": {"name", "schema"}}`` unwrapped to ``{"name", "schema"}``;
    ``{"type": "json_object"}`` (any JSON, no schema) refused with the fix; anything else as given."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"response_format={value!r}: must be a JSON Schema (a dict)",
                          fix='pass {"name": "...", "schema": {...}} or the schema itself')
    if value.get("type") == "json_schema" and isinstance(value.get("json_schema"), Mapping):
        inner = value["json_schema"]
        return {"name": inner.get("name", "response"), "schema": inner.get("schema", {})}
    if value.get("type") == "json_object" and "properties" not in value:
        raise ConfigError("response_format={'type': 'json_object'}: rlm validates answers against a JSON Schema",
                          fix='pass {"name": "...", "schema": {"type": "object"}} to accept any JSON object')
    return value


@define(frozen=True, kw_only=True)
class AgentConfig:
    """2.x's agent configuration: ``AgentRunner(rlm, AgentConfig(...))`` (or ``config=``).

    Each field left ``None`` keeps :class:`rlm.agent.AgentRunner`'s default (10 iterations, depth 4,
    50000 tokens, $2, 300 s, no auto-context, 2000 context tokens); 2.x's defaults differed
    (depth 3, 120 s, auto_context on, 8000 context tokens).  Values above the hard caps are clamped
    with a warning, as in 2.x.  What each field becomes:

    ``max_iterations``, ``max_depth``, ``token_budget``, ``cost_limit``, ``auto_context`` and
    ``context_budget`` -> the AgentRunner argument of that name; ``timeout_seconds`` -> ``timeout``;
    ``trajectory_log=False`` -> no trajectory file (``trajectory_sinks=()``).
    ``auto_context=True`` needs a context provider (e.g. rlm-snipara): without one it is a ConfigError
    (2.x skipped it silently).  ``tool_budget`` has no counterpart: setting it raises ConfigError.
    """

    max_iterations: int | None = None
    max_depth: int | None = None
    token_budget: int | None = None
    cost_limit: float | None = None
    timeout_seconds: float | None = None
    auto_context: bool | None = None
    context_budget: int | None = None
    trajectory_log: bool | None = None
    tool_budget: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The configuration as JSON-ready data (2.x's keys; unset fields are None)."""
        return {f.name: getattr(self, f.name) for f in fields(type(self))}

    def runner_arguments(self) -> dict[str, Any]:
        """The :class:`rlm.agent.AgentRunner` keyword arguments this configuration sets (unset ones left out).

        Raises ConfigError for a field rlm has no counterpart for.
        """
        if self.tool_budget is not None:
            raise _refuse("AgentConfig", "tool_budget", self.tool_budget, _TOOL_BUDGET_FIX)
        out: dict[str, Any] = {}
        for ours, value in (("max_iterations", self.max_iterations), ("max_depth", self.max_depth),
                            ("token_budget", self.token_budget), ("cost_limit", self.cost_limit),
                            ("timeout", self.timeout_seconds), ("auto_context", self.auto_context),
                            ("context_budget", self.context_budget)):
            if value is not None:
                out[ours] = value
        if self.trajectory_log is False:
            out["trajectory_sinks"] = ()
        return out


#: 2.x setting names (``RLM(...)`` keywords, ``[rlm]`` keys of an rlm.toml) that rlm names otherwise (same meaning).
RENAMED_SETTINGS: Mapping[str, str] = {
    "timeout_seconds": "timeout",
    "docker_timeout": "env_timeout",
    "sub_calls_enabled": "sub_calls",
    "sub_calls_max_per_turn": "max_subcalls",
}

#: 2.x settings accepted when their value is what rlm does anyway: name -> (that value, what rlm does).
SAME_AS_OURS: Mapping[str, tuple[Any, str]] = {
    "sub_calls_budget_inheritance": (0.5, "a sub-call always gets at most half of what its parent has left"),
    "docker_network_disabled": (True, "the docker environment has no network unless [plugins.env-docker] network "
                                      "says otherwise"),
}

#: 2.x settings rlm has no counterpart for -> what to do instead.
REFUSED_SETTINGS: Mapping[str, str] = {
    "api_key": "leave api_key out and set the provider's key in the environment or ./.env "
               "(OPENAI_API_KEY, ANTHROPIC_API_KEY...)",
    "tool_budget": _TOOL_BUDGET_FIX.replace("cost_budget_usd / cost_limit", "cost_limit"),
    "parallel_tools": "tool calls of one turn always run concurrently; set max_parallel = 1 to run them one at a "
                      "time",
    "log_level": "set RLM_LOG_LEVEL (debug, info, warning, error) in the environment",
    "trust_level": 'choose the sandbox with environment = "local", "docker" or "wasm"',
    "snipara_base_url": "set base_url in [plugins.snipara] (rlm-snipara), without the /mcp suffix 2.x had",
    "sub_calls_max_cost_per_session": "cap the spending of a whole process with session_cost_cap (all calls, "
                                      "not only sub-calls), or of one run with cost_limit",
    "sub_calls_budget_inheritance": "remove it: a sub-call always gets at most half of what its parent has left",
    "docker_network_disabled": 'set network = "bridge" in [plugins.env-docker] to give the container a network',
}

#: Every 2.x setting name :func:`translate_settings` acts on.
LEGACY_SETTINGS = frozenset(RENAMED_SETTINGS) | frozenset(SAME_AS_OURS) | frozenset(REFUSED_SETTINGS)


def translate_settings(settings: Mapping[str, Any], *, where: str) -> tuple[dict[str, Any], list[str]]:
    """``settings`` (``RLM(...)``'s keywords or an rlm.toml's ``[rlm]`` table) with 2.x's names mapped onto
    rlm's, and one note per name translated (``"timeout_seconds -> timeout"``).

    A 2.x setting with no counterpart, or one renamed onto a setting also given with another value, is a
    :class:`~rlm.errors.ConfigError` naming ``where`` and the setting.  A ``None`` value counts as not given
    (``RLM(...)``'s keywords).  Other names pass through as they are.
    """
    out: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in settings.items():
        if key not in LEGACY_SETTINGS:
            out[key] = value
        elif value is None:
            continue
        elif key in SAME_AS_OURS and value == SAME_AS_OURS[key][0]:
            notes.append(f"{key} = {value!r}: {SAME_AS_OURS[key][1]}")
        elif key in REFUSED_SETTINGS:
            raise ConfigError(f"{where} {key}: an rlm-runtime 2.x setting rlm does not have",
                              fix=REFUSED_SETTINGS[key])
        else:
            ours = RENAMED_SETTINGS[key]
            if settings.get(ours) is not None and settings[ours] != value:
                raise ConfigError(f"{where} {key} = {value!r} and {ours} = {settings[ours]!r}: {key} is rlm-runtime "
                                  f"2.x's name of {ours}", fix=f"keep only {ours}")
            out[ours] = value
            notes.append(f"{key} -> {ours}")
    return out, notes


def rlm_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``RLM(**settings)`` with 2.x's keyword names mapped onto rlm's (:func:`translate_settings`)."""
    return translate_settings(settings, where="RLM():")[0]


#: 2.x's module paths (``from rlm.core.orchestrator import RLM``...) -> the names each provides here.
LEGACY_MODULES: Mapping[str, tuple[str, ...]] = {
    "rlm.core.orchestrator": ("RLM",),
    "rlm.core.config": ("RLMConfig", "load_config"),
    "rlm.core.types": ("CompletionOptions", "Message", "REPLResult", "RLMResult", "ToolCall", "ToolResult"),
}


def register_legacy_modules(rlm_class: type) -> None:
    """Make 2.x's import paths work: ``rlm.core`` is a module here, not a package, so its 2.x submodules
    are registered in ``sys.modules`` (Python's import finds them there once ``rlm.core`` is imported).
    Called by :mod:`rlm.core` with its :class:`rlm.core.RLM`."""
    import sys
    import types

    from rlm.config import RLMConfig
    from rlm.types import Message, REPLResult, ToolCall, ToolResult

    values = {"RLM": rlm_class, "RLMConfig": RLMConfig, "load_config": load_config,
              "CompletionOptions": CompletionOptions, "Message": Message, "REPLResult": REPLResult,
              "RLMResult": RLMResult, "ToolCall": ToolCall, "ToolResult": ToolResult}
    for name, exported in LEGACY_MODULES.items():
        if name in sys.modules:
            continue
        module = types.ModuleType(name, f"rlm-runtime 2.x's {name}, kept for old imports (see rlm.compat).")
        for attr in exported:
            setattr(module, attr, values[attr])
        module.__all__ = list(exported)
        sys.modules[name] = module


def load_config(config_path: str | os.PathLike[str] | None = None) -> Any:
    """2.x's ``load_config(config_path)``: :func:`rlm.config.load_config` with ``path=config_path``."""
    from rlm.config import load_config as load

    return load(path=config_path)


__all__ = ["AgentConfig", "CompletionOptions", "LEGACY_MODULES", "LEGACY_SETTINGS", "NOT_PROVIDED",
           "REFUSED_SETTINGS", "RENAMED_SETTINGS", "RLMResult", "SAME_AS_OURS", "load_config",
           "normalize_response_format", "register_legacy_modules", "rlm_settings", "translate_settings"]
