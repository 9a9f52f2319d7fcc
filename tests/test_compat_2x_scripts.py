"""Scripts written for rlm-runtime 2.x, the way its README and examples show them, run unchanged as
subprocesses against the scripted OpenAI-compatible server (the installed kernel, env-local and the
OpenAI backend; only ``RLM_API_BASE`` points the model at the server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("rlm_backend_openai")
pytest.importorskip("rlm_env_local")

from rlm_testing.server import Reply  # noqa: E402


def last_user(request) -> str:
    return next(m["content"] for m in reversed(request.body["messages"]) if m["role"] == "user")


def tool_names(request) -> set[str]:
    return {t["function"]["name"] for t in request.body.get("tools") or ()}


def run_script(server, tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, "RLM_API_BASE": server.openai_base_url, "RLM_LOG_DIR": str(tmp_path / "logs")}
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


# examples/basic_completion.py of rlm-runtime 2.x, as published (its comments left out)
BASIC_COMPLETION = '''
    import asyncio

    from rlm import RLM


    async def main():
        """Run a basic completion."""
        rlm = RLM(
            model="gpt-4o-mini",
        )

        print("=== Basic Completion ===")
        result = await rlm.completion("What is 2 + 2?")
        print(f"Response: {result.response}")
        print(f"Calls: {result.total_calls}, Tokens: {result.total_tokens}")
        print()

        print("=== With System Prompt ===")
        result = await rlm.completion(
            prompt="Solve this math problem: 15 * 7",
            system="You are a math tutor. Show your work step by step.",
        )
        print(f"Response: {result.response}")
        print()

        print("=== Streaming ===")
        print("Streaming response: ", end="", flush=True)
        async for chunk in rlm.stream("Write a haiku about code"):
            print(chunk, end="", flush=True)
        print("\\n")


    if __name__ == "__main__":
        asyncio.run(main())
'''


def test_the_2x_basic_completion_example_runs_unchanged(scripted_llm, tmp_path):
    answers = {"What is 2 + 2?": "4", "Solve this math problem: 15 * 7": "15 * 7 = 105",
               "Write a haiku about code": "Lines of quiet code"}
    scripted_llm.script(lambda request: Reply.text(answers[last_user(request)], input_tokens=50, output_tokens=5))
    result = run_script(scripted_llm, tmp_path, BASIC_COMPLETION)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Response: 4" in lines and "Calls: 1, Tokens: 55" in lines
    assert "Response: 15 * 7 = 105" in lines
    assert "Streaming response: Lines of quiet code" in lines
    system = scripted_llm.requests[1].body["messages"][0]["content"]
    assert "You are a math tutor. Show your work step by step." in system
    assert [r.body["model"] for r in scripted_llm.requests] == ["gpt-4o-mini"] * 3


def test_completion_options_and_to_dict_the_2x_way(scripted_llm, tmp_path):
    scripted_llm.script(lambda request: Reply.text("There are 3 TODO comments.", input_tokens=40, output_tokens=8))
    result = run_script(scripted_llm, tmp_path, '''
        import asyncio
        import json

        from rlm import RLM, CompletionOptions, RLMResult


        async def main():
            rlm = RLM(model="gpt-4o-mini")
            result = await rlm.completion(
                "Find all TODO comments in the codebase",
                system="You are a code analyst.",
                options=CompletionOptions(max_depth=3, token_budget=8000, timeout_seconds=120, temperature=0.2,
                                          include_trajectory=True),
            )
            assert isinstance(result, RLMResult)
            print(json.dumps(result.to_dict()))


        asyncio.run(main())
    ''')
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["response"] == "There are 3 TODO comments." and data["success"] is True
    assert data["total_tokens"] == 48 and data["total_calls"] == 1 and data["total_tool_calls"] == 0
    start = data["events"][0]
    assert start["type"] == "run_start" and (start["max_depth"], start["token_budget"]) == (3, 8000)
    assert scripted_llm.requests[0].body["temperature"] == 0.2
    assert (tmp_path / "logs" / f"{data['trajectory_id']}.jsonl").exists()


def test_the_2x_agent_quick_start_runs_unchanged(scripted_llm, tmp_path):
    def answer(request):
        assert "FINAL" in tool_names(request)
        return Reply.tool_calls(("FINAL", {"answer": "4"}), input_tokens=300, output_tokens=10)

    scripted_llm.script(answer)
    # the Quick Start of rlm-runtime 2.x's README ("Autonomous Agent"), in a script
    result = run_script(scripted_llm, tmp_path, '''
        import asyncio
        import json

        from rlm.agent import AgentRunner, AgentConfig
        from rlm.core.orchestrator import RLM


        async def main():
            rlm = RLM(model="gpt-4o-mini")
            runner = AgentRunner(rlm, AgentConfig(max_iterations=10, cost_limit=2.0))
            result = await runner.run("What is 2+2?")
            print(result.answer)  # "4"
            print(f"Success: {result.success}")
            print(f"Iterations: {result.iterations}")
            print(f"Tokens: {result.total_tokens:,}")
            print(f"Cost: ${result.total_cost:.4f}")
            print(json.dumps(result.to_dict()))


        asyncio.run(main())
    ''')
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:5] == ["4", "Success: True", "Iterations: 1", "Tokens: 310", "Cost: $0.0001"]
    data = json.loads(lines[5])
    assert data["answer_source"] == "final" and data["forced_termination"] is False and data["success"] is True
    assert data["iteration_summaries"][0]["action"] == "FINAL"


def test_a_2x_tool_is_called_by_the_model(scripted_llm, tmp_path):
    def answer(request):
        tools = [m for m in request.body["messages"] if m["role"] == "tool"]
        if not tools:
            assert "get_weather" in tool_names(request)
            return Reply.tool_calls(("get_weather", {"city": "Paris"}))
        value = json.loads(tools[-1]["content"])  # what the handler returned, as JSON
        return Reply.text(f"Weather: {value if isinstance(value, str) else value.get('result')}")

    scripted_llm.script(answer)
    result = run_script(scripted_llm, tmp_path, '''
        import asyncio

        from rlm import RLM, Tool


        async def get_weather(city: str) -> str:
            return f"sunny in {city}"


        tool = Tool(
            name="get_weather",
            description="Get current weather for a city",
            parameters={
                "type": "object",
                "properties": {"city": {"type": "string", "description": "City name"}},
                "required": ["city"],
            },
            handler=get_weather,
        )


        async def main():
            rlm = RLM(model="gpt-4o-mini", tools=[tool])
            result = await rlm.completion("What is the weather in Paris?")
            print(result.response)
            print(result.total_tool_calls)


        asyncio.run(main())
    ''')
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["Weather: sunny in Paris", "1"]


def test_a_2x_option_rlm_has_no_counterpart_for_stops_before_any_request(scripted_llm, tmp_path):
    scripted_llm.script(lambda request: Reply.text("never sent"))
    result = run_script(scripted_llm, tmp_path, '''
        import asyncio

        from rlm import RLM, CompletionOptions


        async def main():
            rlm = RLM(model="gpt-4o-mini")
            result = await rlm.completion("Analyze the CSV file", options=CompletionOptions(tool_budget=20))
            print(result.response)


        asyncio.run(main())
    ''')
    assert result.returncode != 0 and "never sent" not in result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("rlm.errors.ConfigError: CompletionOptions(tool_budget=20): rlm has no tool_budget")
    assert "max_turns" in last
    assert scripted_llm.requests == []
