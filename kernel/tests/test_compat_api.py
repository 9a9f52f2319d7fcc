"""rlm-runtime 2.x's Python names (rlm.compat): each maps onto rlm's own API, or is refused with a clear error.

Runs go through a scripted in-process backend (no network, no sandbox: the scripts call no code).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest

from rlm import hookimpl, tool
from rlm.backend import BackendCapabilities, LLMRequest, LLMResponse
from rlm.errors import ConfigError
from rlm.plugins import create_plugin_manager
from rlm.types import Message, ToolCall, Usage


class ScriptedBackend:
    """Answers from a function of the request: a str (text) or a list of (tool name, arguments)."""

    name = "scripted"

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.requests: list[LLMRequest] = []

    def capabilities(self, model: str) -> BackendCapabilities:
        return BackendCapabilities(native_tools=True, preferred_protocol="tools",
                                   pricing_per_mtok=(1.0, 1.0))

    async def complete(self, request: LLMRequest) -> LLMResponse:
        self.requests.append(request)
        item = self.answer(request) if callable(self.answer) else self.answer
        if isinstance(item, str):
            message = Message.assistant(item)
        else:
            calls = tuple(ToolCall(id=f"c{len(self.requests)}-{i}", name=name, arguments=args)
                          for i, (name, args) in enumerate(item))
            message = Message.assistant("", tool_calls=calls)
        return LLMResponse(message=message, usage=Usage(input_tokens=100, output_tokens=20, cost_usd=None),
                           finish_reason="stop", model=request.model)

    async def stream(self, request: LLMRequest):  # pragma: no cover - not used here
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


class NoEnvironment:
    """An environment these tests never start (no script runs code)."""

    def __init__(self, **_: Any) -> None:
        raise AssertionError("no code runs in these tests")


class Plugin:
    def __init__(self, backend: ScriptedBackend) -> None:
        self.backend = backend

    @hookimpl
    def rlm_register_backends(self, register):
        register("scripted", lambda settings: self.backend, description="tests")

    @hookimpl
    def rlm_register_environments(self, register):
        register("none", NoEnvironment, description="tests")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith("RLM_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def make_rlm(tmp_path):
    from rlm import RLM

    def make(answer: Any = "4", **settings: Any):
        backend = ScriptedBackend(answer)
        pm = create_plugin_manager(entry_points=False)
        pm.register(Plugin(backend), name="scripted-plugin")
        settings.setdefault("log_dir", str(tmp_path / "logs"))
        return RLM(model="scripted-model", backend="scripted", environment="none", plugin_manager=pm,
                   **settings), backend

    return make


def run(coro):
    return asyncio.run(coro)


def run_start(result) -> dict[str, Any]:
    return next(e for e in result.events if e["type"] == "run_start")


# --- the names, importable the 2.x way -----------------------------------------------------------


def test_the_2x_names_import_from_rlm_and_rlm_agent():
    import rlm
    from rlm import CompletionOptions, REPLResult, RLMResult, Tool, ToolCall, ToolResult, load_config  # noqa: F401
    from rlm.agent import AgentConfig, AgentResult, AgentRunner  # noqa: F401
    from rlm.compat import AgentConfig as Same
    from rlm.types import CompletionResult, ToolSpec

    assert RLMResult is CompletionResult and Tool is ToolSpec and AgentConfig is Same
    assert {"CompletionOptions", "RLMResult", "Tool", "load_config"} <= set(rlm.__all__)


@pytest.mark.parametrize(("name", "instead"), [("ToolRegistry", "RLM(tools=[...])"),
                                               ("TrajectoryEvent", "result.events")])
def test_a_2x_name_rlm_does_not_provide_says_what_to_use(name, instead):
    with pytest.raises(ImportError) as info:
        exec(f"from rlm import {name}", {})
    assert name in str(info.value) and instead in str(info.value)


def test_an_unknown_name_is_still_an_attribute_error():
    import rlm

    assert not hasattr(rlm, "NoSuchThing")


def test_import_rlm_stays_lazy_about_the_compat_names(run_python):
    result = run_python("import sys, rlm\nprint(sorted(m for m in sys.modules if m.startswith('rlm')))")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().replace("'", '"')) == ["rlm"]
    result = run_python("import sys\nfrom rlm import CompletionOptions, RLMResult\n"
                        "print('rlm.core' in sys.modules, 'rlm.orchestrator' in sys.modules)")
    assert result.stdout.split() == ["False", "False"], result.stderr  # the option types do not pull the runtime


# --- CompletionOptions -----------------------------------------------------------------------------


def test_completion_options_map_onto_our_settings():
    from rlm import CompletionOptions

    options = CompletionOptions(max_depth=2, max_subcalls=3, token_budget=9000, timeout_seconds=60,
                                cost_budget_usd=0.5, temperature=0.2, max_parallel=4, include_trajectory=True)
    assert options.settings() == {"max_depth": 2, "max_subcalls": 3, "token_budget": 9000, "timeout": 60,
                                  "cost_limit": 0.5, "temperature": 0.2, "max_parallel": 4}
    assert CompletionOptions().settings() == {}  # unset: the RLM's own settings
    assert CompletionOptions(parallel_tools=False, max_parallel=5).settings() == {"max_parallel": 1}
    assert CompletionOptions(parallel_tools=True).settings() == {}
    assert CompletionOptions(stop_sequences=[]).settings() == {}  # nothing to stop on: harmless


@pytest.mark.parametrize(("field", "value", "fix"), [("tool_budget", 20, "max_turns"),
                                                     ("stop_sequences", ["\n\n"], "FINAL")])
def test_completion_options_without_a_counterpart_are_refused(field, value, fix):
    from rlm import CompletionOptions

    with pytest.raises(ConfigError) as info:
        CompletionOptions(**{field: value}).settings()
    assert f"CompletionOptions({field}=" in str(info.value) and fix in info.value.fix


def test_completion_options_to_dict_has_the_2x_keys_and_is_json():
    from rlm import CompletionOptions

    data = CompletionOptions(max_depth=3, stop_sequences=["x"], response_format={"type": "object"}).to_dict()
    assert set(data) >= {"max_depth", "max_subcalls", "token_budget", "tool_budget", "timeout_seconds",
                         "include_trajectory", "temperature", "stop_sequences", "cost_budget_usd"}
    assert json.loads(json.dumps(data))["stop_sequences"] == ["x"] and data["max_depth"] == 3


def test_completion_with_options_applies_them_to_the_run(make_rlm):
    from rlm import CompletionOptions

    rlm, backend = make_rlm()
    options = CompletionOptions(max_depth=2, token_budget=9000, timeout_seconds=60, cost_budget_usd=0.5,
                                temperature=0.3)
    result = run(rlm.completion("What is 2 + 2?", options=options))
    assert result.response == "4" and result.success
    start = run_start(result)
    assert (start["max_depth"], start["token_budget"], start["cost_limit"]) == (2, 9000, 0.5)
    assert backend.requests[0].temperature == 0.3
    assert rlm.config.token_budget == 100_000  # per call: the RLM's own settings are unchanged
    plain = run(rlm.completion("again"))
    assert run_start(plain)["token_budget"] == 100_000 and backend.requests[1].temperature is None


def test_options_token_budget_is_enforced_not_just_recorded(make_rlm):
    from rlm import CompletionOptions

    rlm, backend = make_rlm(lambda request: [("step", {})] if request.tool_choice != "none" else "best so far",
                            tools=[step])
    result = run(rlm.completion("loop", options=CompletionOptions(token_budget=2000)))
    assert result.limit_hit == "token_budget" and result.total_tokens <= 2000


@tool
async def step() -> str:
    """One more step."""
    return "stepped"


def test_include_trajectory_false_leaves_the_events_out(make_rlm, tmp_path):
    from rlm import CompletionOptions

    rlm, _ = make_rlm()
    result = run(rlm.completion("x", options=CompletionOptions(include_trajectory=False)))
    assert result.events == () and result.response == "4"
    assert (tmp_path / "logs" / f"{result.trajectory_id}.jsonl").exists()  # the trajectory is still written
    assert run(rlm.completion("x", options=CompletionOptions())).events  # default: kept


def test_a_bad_option_value_is_named_by_its_2x_name(make_rlm):
    from rlm import CompletionOptions

    rlm, backend = make_rlm()
    with pytest.raises(ConfigError) as info:
        run(rlm.completion("x", options=CompletionOptions(timeout_seconds=-5)))
    assert "CompletionOptions.timeout_seconds" in str(info.value)
    assert backend.requests == []


def test_options_must_be_completion_options(make_rlm):
    rlm, _ = make_rlm()
    with pytest.raises(ConfigError, match="not a CompletionOptions"):
        run(rlm.completion("x", options={"max_depth": 2}))


def test_a_setting_given_twice_with_two_values_is_refused(make_rlm):
    from rlm import CompletionOptions

    rlm, backend = make_rlm()
    with pytest.raises(ConfigError, match="temperature is given twice"):
        run(rlm.completion("x", temperature=0.1, options=CompletionOptions(temperature=0.9)))
    result = run(rlm.completion("x", temperature=0.4, options=CompletionOptions(temperature=0.4)))
    assert result.success and backend.requests[-1].temperature == 0.4


def test_options_response_format_in_openai_form_is_validated(make_rlm):
    from rlm import CompletionOptions

    rlm, backend = make_rlm('{"answer": 4}')
    fmt = {"type": "json_schema", "json_schema": {"name": "sum", "schema": {
        "type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}}}
    result = run(rlm.completion("2+2 as JSON", options=CompletionOptions(response_format=fmt)))
    assert result.parsed == {"answer": 4}
    assert backend.requests[0].response_format["name"] == "sum"
    with pytest.raises(ConfigError, match="JSON Schema"):
        run(rlm.completion("x", options=CompletionOptions(response_format={"type": "json_object"})))


def test_completion_sync_takes_options(make_rlm):
    from rlm import CompletionOptions

    rlm, _ = make_rlm()
    result = rlm.completion_sync("x", options=CompletionOptions(max_depth=1))
    assert run_start(result)["max_depth"] == 1


# --- RLMResult and the to_dict methods ---------------------------------------------------------------


def test_rlm_result_has_the_2x_attributes_and_to_dict(make_rlm):
    rlm, _ = make_rlm()
    result = run(rlm.completion("What is 2 + 2?"))
    for name in ("response", "trajectory_id", "total_calls", "total_tokens", "total_tool_calls", "duration_ms",
                 "events", "total_input_tokens", "total_output_tokens", "total_cost_usd", "success"):
        assert hasattr(result, name), name
    data = json.loads(json.dumps(result.to_dict()))
    assert data["response"] == "4" and data["success"] is True and data["trajectory_id"] == result.trajectory_id
    assert data["total_tokens"] == 120 == data["total_input_tokens"] + data["total_output_tokens"]
    assert data["total_cost_usd"] == pytest.approx(120 / 1e6)
    assert [e["type"] for e in data["events"]][0] == "run_start" and data["events"][-1]["type"] == "run_end"
    assert data["limit_hit"] is None and data["answer_source"] == "text"


def test_rlm_result_to_dict_carries_tool_calls_and_parsed_values():
    from rlm import RLMResult

    result = RLMResult(response="ok", trajectory_id="t1", parsed={"a": [1, 2]},
                       tool_calls=(ToolCall(id="c1", name="step", arguments={"n": 1}),), error="boom")
    data = result.to_dict()
    assert data["tool_calls"] == [{"id": "c1", "name": "step", "arguments": {"n": 1}}]
    assert data["parsed"] == {"a": [1, 2]} and data["success"] is False and data["error"] == "boom"


def test_the_value_types_to_dict():
    from rlm.types import FinalSignal, REPLResult, TextPart, ToolResult

    assert Message.tool("c1", "out", name="step").to_dict() == {"role": "tool", "content": "out",
                                                                "tool_call_id": "c1", "name": "step"}
    call = ToolCall(id="c2", name="f", arguments={"x": b"\x00"})
    assert Message.assistant("", (call,)).to_dict()["tool_calls"][0]["name"] == "f"
    assert call.to_dict() == {"id": "c2", "name": "f", "arguments": {"x": "<1 bytes>"}}
    assert Message.user([TextPart(text="hi")]).to_dict()["content"] == [{"type": "text", "text": "hi"}]
    repl = REPLResult(output="1\n", final=FinalSignal(kind="final", value="1")).to_dict()
    assert repl["output"] == "1\n" and repl["final"] == {"kind": "final", "value": "1", "variable": None}
    assert ToolResult(call_id="c1", name="f", content="{}", is_error=True).to_dict()["is_error"] is True


# --- Tool and load_config ----------------------------------------------------------------------------------


def test_a_tool_built_the_2x_way_is_called_by_the_model(make_rlm):
    from rlm import Tool

    seen = []

    async def get_weather(city: str) -> str:
        seen.append(city)
        return f"sunny in {city}"

    weather = Tool(name="get_weather", description="Get current weather for a city",
                   parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                   handler=get_weather)

    def answer(request):
        if any(m.role == "tool" for m in request.messages):
            return json.loads(request.messages[-1].content)["result"] if "result" in request.messages[-1].content \
                else request.messages[-1].content
        return [("get_weather", {"city": "Paris"})]

    rlm, backend = make_rlm(answer, tools=[weather])
    result = run(rlm.completion("weather?"))
    assert seen == ["Paris"] and "sunny in Paris" in result.response
    assert "get_weather" in {t.name for t in backend.requests[0].tools}


def test_load_config_takes_a_path_positionally(tmp_path):
    from rlm import load_config

    path = tmp_path / "elsewhere.toml"
    path.write_text('[rlm]\nmodel = "gpt-4o"\nmax_depth = 2\n')
    config = load_config(path)
    assert config.model == "gpt-4o" and config.max_depth == 2


# --- AgentConfig, AgentRunner(rlm, config), AgentResult, agent_run -----------------------------------------------


def test_agent_config_maps_onto_agent_runner_arguments():
    from rlm.agent import AgentConfig

    config = AgentConfig(max_iterations=5, max_depth=2, token_budget=9000, cost_limit=1.0, timeout_seconds=60,
                         auto_context=False, context_budget=500, trajectory_log=False)
    assert config.runner_arguments() == {"max_iterations": 5, "max_depth": 2, "token_budget": 9000,
                                         "cost_limit": 1.0, "timeout": 60, "auto_context": False,
                                         "context_budget": 500, "trajectory_sinks": ()}
    assert AgentConfig().runner_arguments() == {}
    assert json.loads(json.dumps(config.to_dict()))["timeout_seconds"] == 60
    with pytest.raises(ConfigError) as info:
        AgentConfig(tool_budget=50).runner_arguments()
    assert "AgentConfig(tool_budget=50)" in str(info.value) and "max_iterations" in info.value.fix


def finish_in_two(request):
    if not any(m.role == "tool" for m in request.messages):
        return [("step", {})]
    return [("FINAL", {"answer": "done"})]


def test_agent_runner_takes_an_rlm_and_an_agent_config(make_rlm, tmp_path):
    from rlm.agent import AgentConfig, AgentRunner

    rlm, backend = make_rlm(finish_in_two, tools=[step], session_cost_cap=3.0)
    runner = AgentRunner(rlm, AgentConfig(max_iterations=4, max_depth=2, token_budget=20_000, cost_limit=1.0,
                                          timeout_seconds=60))
    assert runner.max_iterations == 4 and runner.timeout == 60 and runner.cost_limit == 1.0
    assert runner.rlm.config.model == "scripted-model" and runner.rlm.pm is rlm.pm
    assert runner.rlm.config.max_depth == 2 and runner.rlm.config.token_budget == 20_000
    assert runner.rlm.session_budget is rlm.session_budget  # the RLM's session cap covers the agent
    result = run(runner.run("do it"))
    assert result.answer == "done" and result.success and not result.forced_termination
    assert {"step", "FINAL"} <= {t.name for t in backend.requests[0].tools}  # the RLM's tools came along
    data = json.loads(json.dumps(result.to_dict()))
    assert data["answer"] == "done" and data["success"] is True and data["answer_source"] == "final"
    assert data["iterations"] == 2 and data["iteration_summaries"][0]["action"] == "step"
    assert rlm.session_budget.cost_spent > 0


def test_agent_runner_config_keyword_and_trajectory_log_false(make_rlm, tmp_path):
    from rlm.agent import AgentConfig, AgentRunner

    rlm, _ = make_rlm(finish_in_two, tools=[step])
    runner = AgentRunner(rlm, config=AgentConfig(trajectory_log=False))
    result = run(runner.run("do it"))
    assert result.answer == "done"
    assert not (tmp_path / "logs" / f"{result.trajectory_id}.jsonl").exists()


def test_a_limit_given_twice_with_two_values_is_refused(make_rlm):
    from rlm.agent import AgentConfig, AgentRunner

    rlm, _ = make_rlm()
    with pytest.raises(ConfigError, match="max_iterations is given twice"):
        AgentRunner(rlm, AgentConfig(max_iterations=3), max_iterations=5)
    assert AgentRunner(rlm, AgentConfig(max_iterations=3), max_iterations=3).max_iterations == 3
    with pytest.raises(ConfigError, match="tool_budget"):
        AgentRunner(rlm, AgentConfig(tool_budget=10))


def test_agent_config_auto_context_without_a_provider_is_an_error(make_rlm):
    from rlm.agent import AgentConfig, AgentRunner

    rlm, _ = make_rlm()
    with pytest.raises(ConfigError, match="auto_context"):
        AgentRunner(rlm, AgentConfig(auto_context=True))


def test_a_forced_answer_is_a_success_with_forced_termination(make_rlm):
    from rlm.agent import AgentConfig, AgentRunner

    rlm, _ = make_rlm(lambda request: "best so far" if request.tool_choice == "none" else [("step", {})],
                      tools=[step])
    result = run(AgentRunner(rlm, AgentConfig(max_iterations=2)).run("loop"))
    assert result.answer == "best so far" and result.forced_termination and result.limit_hit == "max_turns"
    assert result.success  # 2.x said False here; its meaning is `success and not forced_termination`
    assert result.to_dict()["forced_termination"] is True


def test_rlm_agent_run(make_rlm):
    rlm, backend = make_rlm(finish_in_two, tools=[step])
    result = run(rlm.agent_run("do it", max_iterations=3, system="Be brief."))
    assert result.answer == "done" and result.iterations == 2
    assert "Be brief." in backend.requests[0].messages[0].text


def test_the_2x_module_paths_import(run_python):
    result = run_python("from rlm.core.orchestrator import RLM\n"
                        "from rlm.core.types import CompletionOptions, RLMResult, Message\n"
                        "from rlm.core.config import RLMConfig, load_config\n"
                        "import rlm, rlm.core\n"
                        "assert RLM is rlm.core.RLM and RLMResult is rlm.CompletionResult\n"
                        "assert load_config is rlm.load_config and RLMConfig is rlm.RLMConfig\n"
                        "print('ok')")
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_rlm_takes_the_2x_keyword_names(make_rlm):
    rlm, _ = make_rlm(timeout_seconds=60, docker_timeout=10)
    assert rlm.config.timeout == 60 and rlm.config.env_timeout == 10
    with pytest.raises(ConfigError, match="timeout_seconds = 60 and timeout = 30"):
        make_rlm(timeout_seconds=60, timeout=30)


@pytest.mark.parametrize(("name", "fix"), [("tool_budget", "max_turns"), ("api_key", "OPENAI_API_KEY")])
def test_rlm_refuses_a_2x_keyword_it_has_no_counterpart_for(make_rlm, name, fix):
    with pytest.raises(ConfigError) as info:
        make_rlm(**{name: 20})
    assert f"RLM(): {name}: an rlm-runtime 2.x setting rlm does not have" in str(info.value) and fix in info.value.fix


def test_options_above_the_hard_caps_are_clamped(make_rlm):
    from rlm import CompletionOptions
    from rlm.budget import HARD_CAPS

    rlm, _ = make_rlm()
    result = run(rlm.completion("x", options=CompletionOptions(max_depth=9, timeout_seconds=5000)))
    start = run_start(result)
    assert start["max_depth"] == HARD_CAPS["max_depth"] and result.success
