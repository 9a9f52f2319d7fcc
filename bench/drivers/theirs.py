"""Driver for *their* rlm-runtime 2.1.3: run with bench/.venv-theirs/bin/python (see bench/compare.py).

Same modes, arguments and ``RESULT=<json>`` output as ours.py; each run builds a fresh ``RLM``
(LiteLLM backend pointed at the scripted server through ``api_base``) and awaits ``completion``.
Their limits are lifted so the work is the same as ours: a tool turn is one level of their
``max_depth`` (so max_depth = turns + 2), tool/token/sub-call budgets set out of reach.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import NOOP_CODE, emit, peak_rss_mib, prompt, quiet_env  # noqa: E402

quiet_env()


def _rlm(base_url: str, log_dir: str, env: str = "local", image: str = "rlm-sandbox:ci"):
    from rlm import RLM, RLMConfig, Tool
    from rlm.backends.litellm import LiteLLMBackend

    async def noop() -> str:
        return "ok"

    config = RLMConfig(log_dir=log_dir, token_budget=10**9, tool_budget=10**6, max_subcalls=10**6,
                       sub_calls_max_per_turn=10**6, sub_calls_max_cost_per_session=10**9,
                       docker_image=image, timeout_seconds=600)
    backend = LiteLLMBackend(model="openai/scripted-model", api_base=base_url, api_key="sk-bench")
    tools = [Tool(name="noop", description="Does nothing.", parameters={"type": "object", "properties": {}},
                  handler=noop)]
    return RLM(backend=backend, environment=env, config=config, tools=tools)


def _options(n: int):
    from rlm import CompletionOptions

    return CompletionOptions(max_depth=n + 2, max_subcalls=10**6, token_budget=10**9, tool_budget=10**6,
                             timeout_seconds=600)


async def _runs(args, kind: str, n: int, env: str = "local") -> list[float]:
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.repeat + 1):  # run 0 warms up (imports, client, connection)
            rlm = _rlm(args.base_url, tmp, env=env, image=args.image)
            started = time.perf_counter()
            result = await rlm.completion(prompt(kind, n, "theirs"), options=_options(n))
            elapsed = time.perf_counter() - started
            if result.error or result.response != "done":
                raise SystemExit(f"run failed: {result.error!r} {result.response!r}")
            if index:
                samples.append(elapsed)
    return samples


async def _memory(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        rlm = _rlm(args.base_url, tmp)
        result = await rlm.completion(prompt("exec", args.n, "theirs"), options=_options(args.n))
        if result.error or result.response != "done":
            raise SystemExit(f"run failed: {result.error!r} {result.response!r}")
    return peak_rss_mib()


async def _env(args) -> dict:
    if args.kind == "local":
        from rlm.repl.local import LocalREPL

        def make():
            return LocalREPL()
    elif args.kind == "docker":
        from rlm.repl.docker import DockerREPL

        def make():
            return DockerREPL(image=args.image)
    else:
        from rlm.repl.wasm import WasmREPL

        def make():
            return WasmREPL()

    async def run(repl) -> None:
        result = await repl.execute(NOOP_CODE)
        if result.error:
            raise SystemExit(f"{args.kind} execute failed: {result.error}")

    await run(make())  # the process's first session is not a sample
    cold = []
    for _ in range(args.cold):
        started = time.perf_counter()
        await run(make())
        cold.append(time.perf_counter() - started)
    repl = make()
    warm = []
    for index in range(args.warm + 5):
        started = time.perf_counter()
        await run(repl)
        if index >= 5:
            warm.append(time.perf_counter() - started)
    if hasattr(repl, "cleanup"):
        repl.cleanup()
    return {"cold_s": cold, "warm_s": warm}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["turns", "batch", "env", "memory"])
    parser.add_argument("--base-url")
    parser.add_argument("--kind", default="noop")
    parser.add_argument("--env", default="local")
    parser.add_argument("--image", default="rlm-sandbox:ci")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--warm", type=int, default=100)
    parser.add_argument("--cold", type=int, default=5)
    args = parser.parse_args()
    if args.mode == "turns":
        emit({"wall_s": asyncio.run(_runs(args, args.kind, args.n, args.env))})
    elif args.mode == "batch":
        emit({"wall_s": asyncio.run(_runs(args, "batch", args.n))})
    elif args.mode == "memory":
        emit(asyncio.run(_memory(args)))
    else:
        emit(asyncio.run(_env(args)))


if __name__ == "__main__":
    main()
