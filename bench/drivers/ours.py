"""Driver for *our* rlm: run with /work/main/.venv/bin/python (see bench/compare.py).

    python ours.py turns --base-url URL --kind noop|exec --n 20 --repeat 5 [--env local]
    python ours.py batch --base-url URL --n 50 --repeat 3
    python ours.py env --kind local|docker|wasm --warm 100 --cold 5 [--image rlm-sandbox:ci]
    python ours.py memory --base-url URL --n 20

Prints one ``RESULT=<json>`` line: wall seconds of each run (each run a fresh ``RLM`` object).
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


def _rlm(base_url: str, log_dir: str, env: str = "local", **settings):
    from rlm import RLM, tool

    @tool
    async def noop() -> str:
        """Does nothing."""
        return "ok"

    return RLM(model="openai/scripted-model", api_base=base_url, tools=[noop], log_dir=log_dir,
               environment=env, token_budget=10**9, max_turns=100_000, **settings)


def turns(args) -> dict:
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.repeat + 1):  # run 0 warms up (imports, SDK client, connection)
            rlm = _rlm(args.base_url, tmp, env=args.env, docker_image=args.image)
            started = time.perf_counter()
            result = rlm.completion_sync(prompt(args.kind, args.n, "ours"))
            elapsed = time.perf_counter() - started
            if not result.success or result.response != "done":
                raise SystemExit(f"run failed: {result.error!r} {result.response!r}")
            if index:
                samples.append(elapsed)
    return {"wall_s": samples}


def batch(args) -> dict:
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.repeat + 1):
            rlm = _rlm(args.base_url, tmp, max_parallel=args.n, max_subcalls=args.n)
            started = time.perf_counter()
            result = rlm.completion_sync(prompt("batch", args.n, "ours"))
            elapsed = time.perf_counter() - started
            if not result.success or result.response != "done":
                raise SystemExit(f"run failed: {result.error!r} {result.response!r}")
            if index:
                samples.append(elapsed)
    return {"wall_s": samples}


def memory(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        rlm = _rlm(args.base_url, tmp)
        result = rlm.completion_sync(prompt("exec", args.n, "ours"))
        if not result.success:
            raise SystemExit(f"run failed: {result.error!r}")
    return peak_rss_mib()


class _Callbacks:
    async def llm_query(self, prompt: str) -> str:
        return prompt

    async def llm_query_batched(self, prompts):
        return list(prompts)


async def _env(args) -> dict:
    from rlm.environment import EnvironmentSettings

    workdir = tempfile.mkdtemp(prefix="rlm-bench-")
    if args.kind == "local":
        from rlm_env_local.session import LocalEnvironment as Env

        settings = EnvironmentSettings(workdir=workdir, allowed_paths=(workdir,))
    elif args.kind == "docker":
        from rlm_env_docker.config import DockerEnvConfig
        from rlm_env_docker.session import DockerEnvironment as Env

        settings = EnvironmentSettings(allowed_paths=(), options=DockerEnvConfig(image=args.image))
    else:
        from rlm_env_wasm.session import WasmEnvironment as Env

        settings = EnvironmentSettings(allowed_paths=(workdir,))

    def make():
        return Env(settings=settings, callbacks=_Callbacks())

    first = make()  # the process's first session (client connection, module cache) is not a sample
    await first.start()
    await first.execute("1")
    await first.close()
    cold = []
    for _ in range(args.cold):
        env = make()
        started = time.perf_counter()
        await env.start()
        result = await env.execute(NOOP_CODE)
        cold.append(time.perf_counter() - started)
        assert result.error is None, result.error
        await env.close()
    env = make()
    await env.start()
    warm = []
    try:
        for index in range(args.warm + 5):
            started = time.perf_counter()
            result = await env.execute(NOOP_CODE)
            if index >= 5:
                warm.append(time.perf_counter() - started)
            assert result.error is None, result.error
    finally:
        await env.close()
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
        emit(turns(args))
    elif args.mode == "batch":
        emit(batch(args))
    elif args.mode == "memory":
        emit(memory(args))
    else:
        emit(asyncio.run(_env(args)))


if __name__ == "__main__":
    main()
