"""Time to the first answer of a run whose first model reply is code: does the sandbox start overlap the
first model call?

Each run asks an in-process backend that answers after ``--latency`` seconds (200 ms: what a
scripted server with latency adds) with one code block that ends the run (``FINAL``), so a run is
one model call, one sandbox start and one execution.  Started one after the other, that costs
``latency + sandbox start + execution``; overlapped, ``max(latency, sandbox start) + execution``.
Prints the median, min and max over ``--runs`` runs per environment and protocol (repl: a fenced
block; tools: one ``execute_code`` call), each run in a fresh ``RLM`` so
that nothing but the process (imports, and rlm-env-local's spare worker when configured) is warm.
Asserts nothing.

    python bench/first_turn.py                       # local, both protocols, 10 runs
    python bench/first_turn.py --env local wasm docker --runs 5 --latency 0.2
    RLM_PLUGINS__ENV_LOCAL__SPARE_WORKERS=0 python bench/first_turn.py   # without the spare worker
    python bench/first_turn.py --serial              # the sandbox starts when first used, as before

``--serial`` switches the kernel's early start off (``Run.start_environment`` does nothing), so the
sandbox starts when the first code runs, one after the other with the model call, as before issue
24 (the ``context`` variable is then not bound; the bench's code does not read it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time

from rlm import RLM, hookimpl
from rlm.backend import BackendCapabilities, LLMResponse
from rlm.plugins import create_plugin_manager
from rlm.types import Message, ToolCall, Usage

CODE = "x = sum(range(10))\nFINAL(str(x))"


class SlowBackend:
    """Answers after ``latency`` seconds with code whose FINAL ends the run."""

    name = "slow"

    def __init__(self, latency: float) -> None:
        self.latency = latency

    def capabilities(self, model):
        return BackendCapabilities()

    async def complete(self, request):
        await asyncio.sleep(self.latency)
        if request.tools:
            if any(m.role == "tool" for m in request.messages):
                message = Message.assistant("45")
            else:
                message = Message.assistant("", tool_calls=(ToolCall(id="c1", name="execute_code",
                                                                     arguments={"code": CODE}),))
        else:
            message = Message.assistant(f"```repl\n{CODE}\n```")
        return LLMResponse(message=message, usage=Usage(input_tokens=10, output_tokens=5, cost_usd=None))

    async def stream(self, request):  # pragma: no cover - not used here
        raise NotImplementedError

    async def aclose(self):
        pass


def _plugin_manager(backend: SlowBackend):
    class Plugin:
        @hookimpl
        def rlm_register_backends(self, register):
            register("slow", lambda settings: backend)

    pm = create_plugin_manager()
    pm.register(Plugin())
    return pm


async def _runs(env: str, protocol: str, latency: float, runs: int, workdir: str) -> list[float]:
    backend = SlowBackend(latency)
    pm = _plugin_manager(backend)
    samples = []
    for index in range(runs + 1):  # the first run warms the process up (imports); not counted
        rlm = RLM(model="bench", backend="slow", environment=env, plugin_manager=pm, protocol=protocol,
                  log_dir=os.path.join(workdir, "logs"), token_budget=None, allowed_paths=[workdir],
                  env_workdir=workdir, direct_below_tokens=0)
        began = time.perf_counter()
        result = await rlm.completion("add the numbers below ten")
        elapsed = time.perf_counter() - began
        await rlm.aclose()
        if not result.success or result.response.strip() != "45":
            raise SystemExit(f"{env}/{protocol}: the run failed: {result.error or result.response!r}")
        if index:
            samples.append(elapsed)
        await asyncio.sleep(0.3)  # a spare worker, when configured, is started between runs as in a server
    return samples


async def main(envs: list[str], protocols: list[str], latency: float, runs: int, serial: bool) -> None:
    if serial:
        from rlm.orchestrator import Run

        Run.start_environment = lambda self, call, contexts=None: None  # type: ignore[method-assign]
    print(f"{'serial' if serial else 'overlapped'} start; "
          f"python {sys.version.split()[0]}, {os.cpu_count()} cores, model latency {latency * 1000:.0f} ms, "
          f"{runs} runs each; RLM_PLUGINS__ENV_LOCAL__SPARE_WORKERS="
          f"{os.environ.get('RLM_PLUGINS__ENV_LOCAL__SPARE_WORKERS', '(unset)')}")
    with tempfile.TemporaryDirectory(prefix="rlm-first-turn-") as workdir:
        for env in envs:
            for protocol in protocols:
                s = await _runs(env, protocol, latency, runs, workdir)
                extra = latency  # FINAL in the code ends the run in both protocols: one model call
                print(f"{env:7} {protocol:6} first answer: median {statistics.median(s) * 1000:7.1f} ms  "
                      f"min {min(s) * 1000:7.1f}  max {max(s) * 1000:7.1f}  "
                      f"(model time alone {extra * 1000:.0f} ms; above it: "
                      f"{(statistics.median(s) - extra) * 1000:.1f} ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", nargs="+", default=["local"], help="environments (local, wasm, docker)")
    parser.add_argument("--protocol", nargs="+", default=["repl", "tools"])
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per model call")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--serial", action="store_true", help="start the sandbox when first used (as before)")
    args = parser.parse_args()
    asyncio.run(main(args.env, args.protocol, args.latency, args.runs, args.serial))
