"""Trajectories are written as they happen (README, "Trajectories"): every event is appended and flushed
to ``logs/<trajectory_id>.jsonl`` at once, so a reader opening the file while the run is still going
(here: the scripted backend before each reply, and a tool in the middle of a turn) already finds every
event so far, each a whole JSON line -- not only after ``run_end``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlm import tool
from rlm.types import ToolCall


def tc(name: str, **arguments: Any) -> ToolCall:
    return ToolCall(id="", name=name, arguments=arguments)


def on_disk(path: Path) -> list[dict[str, Any]]:
    """The events in the file now, read through a file object of our own (nothing the writer buffers)."""
    with open(path, "rb") as fh:
        data = fh.read()
    assert data.endswith(b"\n"), data[-200:]  # only whole lines: no event is half written
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def the_file(tmp_path: Path) -> Path:
    files = list((tmp_path / "logs").glob("*.jsonl"))
    assert len(files) == 1, files
    return files[0]


def test_a_reader_sees_each_event_while_the_run_is_in_progress(make_rlm, tmp_path):
    seen: dict[str, list[dict[str, Any]]] = {}

    @tool
    def peek(ctx) -> str:
        """Look at the trajectory so far.

        Args:
            ctx: injected.
        """
        seen["tool"] = on_disk(tmp_path / "logs" / f"{ctx.trajectory_id}.jsonl")
        return "peeked"

    def script(request):
        if not any(m.role == "tool" for m in request.messages):
            seen["first request"] = on_disk(the_file(tmp_path))
            return [tc("peek")]
        seen["second request"] = on_disk(the_file(tmp_path))
        return "done"

    rlm, _backend = make_rlm(script, tools=[peek])
    result = rlm.completion_sync("watch the log")
    assert result.success and result.response == "done", result.error
    assert the_file(tmp_path).name == f"{result.trajectory_id}.jsonl"

    def types(key: str) -> list[str]:
        return [e["type"] for e in seen[key]]

    # before the first reply came back: the run's start is already on disk
    assert types("first request") == ["run_start"]
    assert seen["first request"][0]["trajectory_id"] == result.trajectory_id
    assert seen["first request"][0]["prompt"] == "watch the log"
    # during the tool: the first llm_call (with its usage) and the tool_start written before it ran
    assert types("tool") == ["run_start", "llm_call", "tool_start"]
    first_call = seen["tool"][1]
    assert first_call["tool_calls"][0]["name"] == "peek" and first_call["token_usage"]["total"] > 0
    # before the second reply: the tool's result too; run_end only at the very end
    assert types("second request") == ["run_start", "llm_call", "tool_start", "tool_results"]
    assert "run_end" not in types("second request")
    final = on_disk(the_file(tmp_path))
    assert [e["type"] for e in final][-2:] == ["llm_call", "run_end"]
    assert final[:4] == seen["second request"]  # what was read live is what the file keeps


def test_a_sub_calls_start_is_on_disk_before_its_first_reply(make_rlm, tmp_path):
    seen: list[list[dict[str, Any]]] = []

    def script(request):
        if request.messages[1].text.startswith("sub:"):
            seen.append(on_disk(the_file(tmp_path)))
            return "sub answer"
        if any(m.role == "tool" for m in request.messages):
            return "top answer"
        return [tc("rlm_sub_complete", query="sub: do the part")]

    rlm, _backend = make_rlm(script, max_depth=2)
    result = rlm.completion_sync("go")
    assert result.response == "top answer", result.error
    assert len(seen) == 1
    live = seen[0]
    assert [e["type"] for e in live] == ["run_start", "llm_call", "tool_start", "call_start"]
    start = live[-1]
    assert start["depth"] == 1 and start["prompt"] == "sub: do the part"
    assert start["parent_call_id"] == live[0]["call_id"]


CRASHING_RUN = """
import os, sys
from rlm import RLM, hookimpl
from rlm.backend import BackendCapabilities, LLMResponse
from rlm.plugins import create_plugin_manager
from rlm.types import Message, ToolCall, Usage


class Backend:
    name = "crashing"
    calls = 0

    def capabilities(self, model):
        return BackendCapabilities()

    async def complete(self, request):
        Backend.calls += 1
        if Backend.calls == 2:
            os._exit(7)  # the process dies at once: no close, no atexit, no buffer written out
        call = ToolCall(id="t1", name="list_files", arguments={"path": "."})
        return LLMResponse(message=Message.assistant("", tool_calls=(call,)),
                           usage=Usage(input_tokens=10, output_tokens=5), finish_reason="tool_calls",
                           model=request.model)

    async def aclose(self):
        pass


class Plugin:
    @hookimpl
    def rlm_register_backends(self, register):
        register("crashing", lambda settings: Backend())

    @hookimpl
    def rlm_register_environments(self, register):
        register("none", lambda **kwargs: None)  # never started: no code runs


pm = create_plugin_manager(entry_points=False)
pm.register(Plugin(), name="crashing-plugin")
RLM(model="m", backend="crashing", environment="none", plugin_manager=pm, log_dir=sys.argv[1],
    sub_calls=False).completion_sync("go")
"""


def test_events_written_before_the_process_dies_stay_on_disk(tmp_path):
    """The process is killed (``os._exit``) in the middle of its second model call: everything done
    before it is in the file, although nothing closed or flushed it afterwards."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("RLM_")}
    done = subprocess.run([sys.executable, "-c", CRASHING_RUN, str(tmp_path / "logs")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 7, done.stderr
    events = on_disk(the_file(tmp_path))
    assert [e["type"] for e in events] == ["run_start", "llm_call", "tool_start", "tool_results"]
    assert events[1]["token_usage"] == {"input": 10, "output": 5, "total": 15}
    assert "list_files" in events[3]["tool_results"][0]["name"]
