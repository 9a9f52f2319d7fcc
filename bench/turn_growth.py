"""Per-turn framework cost against conversation length, and what a trajectory stores twice.

A run of ``--turns`` tool turns (a tool returning ``--output-bytes`` of text, scripted replies), with
the CPU time of each turn taken at its ``llm_call`` event (``time.thread_time`` of the thread that runs
the event loop: the orchestrator, the backend client, the trajectory sink; not the scripted server's
threads).  Prints, for each route, the mean CPU per turn over a window near turn ``--early`` and over
the last ``--window`` turns, and their ratio (goal: within 1.3x), as the median over ``--repeat`` runs
and as the minimum (less sensitive to other load on a shared machine), then the trajectory's size and how
many of its bytes are tool outputs written twice (in a ``tool_results`` event and again, inline, in
the next ``llm_call`` event's ``prompt``).  Asserts nothing.

Routes: the in-process zero backend (``bench/overhead.py``'s, the orchestrator alone) and the OpenAI
route (rlm-backend-openai against rlm-testing's scripted HTTP server), when installed.

Usage: python bench/turn_growth.py [--turns 300] [--repeat 3] [--window 20] [--early 10] [--output-bytes 200]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
warnings.filterwarnings("ignore")

from overhead import ZeroBackend, make_rlm  # noqa: E402
from rlm import RLM, hookimpl, tool  # noqa: E402
from rlm.backend import LLMResponse  # noqa: E402
from rlm.plugins import create_plugin_manager  # noqa: E402
from rlm.trajectory import read_trajectory  # noqa: E402
from rlm.types import Message, ToolCall, Usage  # noqa: E402


class TurnClock:
    """A plugin that notes the thread CPU time at each ``llm_call`` event (one per turn)."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    @hookimpl
    def rlm_trajectory_event(self, event):
        if event.get("type") == "llm_call":
            self.marks.append(time.thread_time())

    def per_turn_ms(self) -> list[float]:
        return [(b - a) * 1000 for a, b in zip(self.marks, self.marks[1:])]


class CountingBackend(ZeroBackend):
    """:class:`overhead.ZeroBackend` that decides by its own call count, so that the backend itself
    costs the same at every turn (ZeroBackend counts the tool messages of the whole request)."""

    async def complete(self, request):
        self.calls += 1
        if self.calls > self.turns:
            message = Message.assistant("done")
        else:
            message = Message.assistant("", tool_calls=(ToolCall(id=f"t{self.calls}", name="noop", arguments={}),))
        return LLMResponse(message=message, usage=Usage(input_tokens=10, output_tokens=5, cost_usd=None))


def output_tool(size: int):
    text = ("lorem ipsum dolor sit amet " * (size // 27 + 1))[:size]

    @tool
    async def noop() -> str:
        """Returns a fixed text."""
        return text

    return noop


def windows(samples: list[float], early: int, window: int) -> tuple[float, float]:
    """Mean of the ``window`` turns around turn ``early``, and of the last ``window`` turns."""
    start = max(0, early - window // 2)
    return statistics.fmean(samples[start:start + window]), statistics.fmean(samples[-window:])


def duplicated(path: str) -> tuple[int, int, int]:
    """(file bytes, bytes of tool outputs stored inline in a prompt after their tool_results, referenced
    tool messages) of one trajectory, read raw (not through a resolving reader)."""
    outputs: dict[tuple[object, object], str] = {}
    twice = refs = 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            event = json.loads(line)
            if event["type"] == "tool_results":
                for r in event["tool_results"]:
                    outputs[(event["call_id"], r["call_id"])] = r["content"]
            elif event["type"] == "llm_call":
                for m in event.get("prompt") or []:
                    if m.get("role") != "tool":
                        continue
                    if "content" not in m:
                        refs += 1
                    elif outputs.get((event["call_id"], m.get("tool_call_id"))) == m["content"]:
                        twice += len(json.dumps(m["content"], ensure_ascii=False).encode("utf-8"))
    return os.path.getsize(path), twice, refs


def run_zero(turns: int, output_bytes: int, log_dir: str) -> list[float]:
    clock = TurnClock()
    backend = CountingBackend(turns)
    rlm = make_rlm(backend, log_dir, tools=[output_tool(output_bytes)])
    rlm.pm.register(clock)
    result = rlm.completion_sync("go")
    assert result.success and backend.calls == turns + 1, result.error
    return clock.per_turn_ms()


def run_http(server, turns: int, output_bytes: int, log_dir: str) -> list[float]:
    from rlm_testing.server import Reply

    clock = TurnClock()
    pm = create_plugin_manager()
    pm.register(clock)
    server.script([Reply.tool_calls(("noop", {}, f"call_{i}")) for i in range(turns)] + [Reply.text("done")])
    rlm = RLM(model="openai/bench", api_base=server.openai_base_url, tools=[output_tool(output_bytes)],
              log_dir=log_dir, token_budget=10**12, max_turns=100_000, environment="local", plugin_manager=pm)
    result = rlm.completion_sync("go")
    assert result.success, result.error
    return clock.per_turn_ms()


def report(name: str, runs: list[list[float]], args: argparse.Namespace) -> None:
    early, late = zip(*(windows(s, args.early, args.window) for s in runs))
    e, l = statistics.median(early), statistics.median(late)
    print(f"{name:<34} turn ~{args.early}: {e:.3f} ms   last {args.window} turns (~{args.turns}): {l:.3f} ms   "
          f"ratio {l / e:.2f}x  (median of {len(runs)} runs; goal <= 1.3x); "
          f"min {min(early):.3f} -> {min(late):.3f} ms, ratio {min(late) / min(early):.2f}x")


def trajectory_line(name: str, log_dir: str) -> None:
    path = max(glob.glob(os.path.join(log_dir, "*.jsonl")), key=os.path.getmtime)
    size, twice, refs = duplicated(path)
    events = read_trajectory(path)
    tool_msgs = sum(1 for e in events if e["type"] == "llm_call" for m in e.get("prompt") or []
                    if m.get("role") == "tool")
    print(f"{name:<34} trajectory {size / 1024:.1f} KiB; tool outputs stored twice: {twice / 1024:.1f} KiB "
          f"({100 * twice / size:.0f}%); tool messages stored by reference: {refs} of {tool_msgs}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--early", type=int, default=10)
    parser.add_argument("--output-bytes", type=int, default=200)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; thread CPU ms per turn, {args.turns} tool "
          f"turns, tool output {args.output_bytes} bytes")
    with tempfile.TemporaryDirectory() as tmp:
        run_zero(20, args.output_bytes, os.path.join(tmp, "warm"))
        runs = []
        for index in range(args.repeat):
            runs.append(run_zero(args.turns, args.output_bytes, os.path.join(tmp, f"zero{index}")))
        report("zero backend (in-process)", runs, args)
        trajectory_line("zero backend (in-process)", os.path.join(tmp, "zero0"))
    try:
        import rlm_backend_openai  # noqa: F401
        from rlm_testing.server import ScriptedLLMServer
    except ImportError:
        print("openai route over HTTP: skipped (install rlm-backend-openai, rlm-testing)")
        return
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
    with tempfile.TemporaryDirectory() as tmp, ScriptedLLMServer() as server:
        run_http(server, 20, args.output_bytes, os.path.join(tmp, "warm"))  # imports, client, connection
        runs = []
        for index in range(args.repeat):
            runs.append(run_http(server, args.turns, args.output_bytes, os.path.join(tmp, f"http{index}")))
            server.reset()
        report("openai route (HTTP, scripted)", runs, args)
        trajectory_line("openai route (HTTP, scripted)", os.path.join(tmp, "http0"))


if __name__ == "__main__":
    main()
