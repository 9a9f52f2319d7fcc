"""Orchestrator overhead: what rlm adds per model turn, and how well batched sub-calls overlap.

Prints (asserts nothing):
1. per-turn overhead with a zero-latency in-process backend (the whole loop: budgets, tool
   dispatch, trajectory JSONL written and flushed) -- goal < 1 ms per turn;
2. the same through the real OpenAI SDK against the scripted HTTP server (when rlm-backend-openai
   and rlm-testing are installed), to show what HTTP + SDK parsing cost on top;
3. 50 batched sub-calls at 200 ms simulated latency against the ideal: the two top-level turns
   plus one fully overlapped round of sub-calls, (2 + ceil(50 / max_parallel)) x 200 ms.

Usage: python bench/overhead.py [--turns 200] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import sys
import tempfile
import time

from rlm import RLM, hookimpl
from rlm.backend import BackendCapabilities, LLMResponse
from rlm.plugins import create_plugin_manager
from rlm.types import Message, REPLResult, ToolCall, Usage


class ZeroBackend:
    """Answers instantly: ``turns`` tool calls, then text; sub-calls answer text at once."""

    name = "zero"

    def __init__(self, turns: int, latency: float = 0.0) -> None:
        self.turns = turns
        self.latency = latency
        self.calls = 0

    def capabilities(self, model):
        return BackendCapabilities()

    async def complete(self, request):
        self.calls += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        user = request.messages[1].text if len(request.messages) > 1 else ""
        tool_msgs = sum(1 for m in request.messages if m.role == "tool")
        if user.startswith("sub") or (self.turns >= 0 and tool_msgs >= self.turns) or (self.turns < 0 and tool_msgs):
            message = Message.assistant("done")
        elif self.turns == -1:  # the batch scenario
            queries = [f"sub {i}" for i in range(50)]
            message = Message.assistant("", tool_calls=(ToolCall(id="b", name="rlm_batch_complete",
                                                                 arguments={"queries": queries, "max_parallel": 50}),))
        else:
            message = Message.assistant("", tool_calls=(ToolCall(id=f"t{tool_msgs}", name="noop", arguments={}),))
        return LLMResponse(message=message, usage=Usage(input_tokens=10, output_tokens=5, cost_usd=None))

    async def stream(self, request):  # pragma: no cover - not used here
        raise NotImplementedError

    async def aclose(self):
        pass


class NoEnv:
    def __init__(self, *, settings, callbacks):
        pass

    async def start(self):
        pass

    async def execute(self, code, *, timeout=None):
        return REPLResult()

    async def close(self):
        pass


def make_rlm(backend, log_dir: str, tools=None, **settings):
    """An RLM on ``backend`` with no environment; ``tools`` (default: a ``noop`` tool answering "ok")."""
    from rlm import tool

    @tool
    async def noop() -> str:
        """Does nothing."""
        return "ok"

    class Plugin:
        @hookimpl
        def rlm_register_backends(self, register):
            register("zero", lambda settings: backend)

        @hookimpl
        def rlm_register_environments(self, register):
            register("none", NoEnv)

    pm = create_plugin_manager(entry_points=False)
    pm.register(Plugin())
    return RLM(model="bench", backend="zero", environment="none", plugin_manager=pm, tools=tools or [noop],
               log_dir=log_dir, token_budget=10**9, max_turns=100_000, **settings)


def per_turn_overhead(turns: int, repeat: int) -> list[float]:
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            backend = ZeroBackend(turns)
            rlm = make_rlm(backend, tmp)
            started = time.perf_counter()
            result = rlm.completion_sync("go")
            elapsed = time.perf_counter() - started
            assert result.success and backend.calls == turns + 1, result.error
            samples.append(elapsed / (turns + 1) * 1000)
    return samples


def batch(latency: float, repeat: int) -> list[float]:
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            backend = ZeroBackend(-1, latency=latency)
            rlm = make_rlm(backend, tmp, max_parallel=50, max_subcalls=50)
            started = time.perf_counter()
            result = rlm.completion_sync("go")
            samples.append(time.perf_counter() - started)
            assert result.success and backend.calls == 52, (result.error, backend.calls)
    return samples


def http_per_turn(turns: int, repeat: int) -> list[float] | None:
    try:
        from rlm_testing.server import Reply, ScriptedLLMServer
        import rlm_backend_openai  # noqa: F401
    except ImportError:
        return None
    samples = []
    with tempfile.TemporaryDirectory() as tmp, ScriptedLLMServer() as server:
        for index in range(repeat + 1):  # the first run warms up (SDK import, client, connection)
            server.script([Reply.tool_calls(("noop", {})) for _ in range(turns)] + [Reply.text("done")])
            os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
            from rlm import tool

            @tool
            async def noop() -> str:
                """Does nothing."""
                return "ok"

            rlm = RLM(model="openai/bench", api_base=server.openai_base_url, tools=[noop], log_dir=tmp,
                      token_budget=10**9, max_turns=100_000, environment="local")
            started = time.perf_counter()
            result = rlm.completion_sync("go")
            if index:
                samples.append((time.perf_counter() - started) / (turns + 1) * 1000)
            assert result.success, result.error
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    s = per_turn_overhead(args.turns, args.repeat)
    print(f"orchestrator overhead per turn (zero-latency in-process backend, {args.turns} tool turns, "
          f"JSONL written): median {statistics.median(s):.3f} ms, min {min(s):.3f} ms  (goal < 1 ms)")
    h = http_per_turn(min(args.turns, 50), max(1, args.repeat // 2))
    if h is None:
        print("per turn through the OpenAI SDK + scripted HTTP server: skipped (install rlm-backend-openai, rlm-testing)")
    else:
        print(f"per turn through the OpenAI SDK + scripted HTTP server (warm, {min(args.turns, 50)} turns): "
              f"median {statistics.median(h):.3f} ms")
    latency = 0.2
    b = batch(latency, max(1, args.repeat // 2))
    # two top-level turns (ask for the batch, then answer) plus the 50 sub-calls fully overlapped
    ideal = (2 + math.ceil(50 / 50)) * latency
    print(f"50 batched sub-calls at {latency * 1000:.0f} ms latency: median {statistics.median(b) * 1000:.0f} ms "
          f"(ideal {ideal * 1000:.0f} ms, ratio {statistics.median(b) / ideal:.2f})")


if __name__ == "__main__":
    main()
