"""Docker environment benchmark: cold session start and warm execute latency.

Cold: ``DockerEnvironment.start()`` in a process that already talked to the
engine (create + attach + start the container, guest handshake), then the
first ``execute``; the very first start of the process (client connection,
orphan check, image check) is shown separately.  Warm: ``execute`` of small
cells in a running session, and a ``llm_query`` round trip through the host.
Prints medians and percentiles against the goals (warm < 30 ms, cold < 1.5 s);
asserts nothing.

    RLM_DOCKER_IMAGE=rlm-sandbox:ci python bench/env_docker.py          # 5 cold starts, 200 warm runs
    python bench/env_docker.py --cold 10 --warm 500
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Sequence


class Callbacks:
    async def llm_query(self, prompt: str) -> str:
        return prompt

    async def llm_query_batched(self, prompts: Sequence[str]) -> list[str]:
        return list(prompts)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def show(name: str, values: list[float], goal_ms: float | None = None) -> None:
    med = statistics.median(values)
    verdict = "" if goal_ms is None else ("  ok" if med < goal_ms else f"  OVER the {goal_ms:g} ms goal")
    print(f"{name:<34} median {med:8.2f} ms   p90 {pct(values, 0.9):8.2f} ms   min {min(values):8.2f} ms"
          f"   n={len(values)}{verdict}")


async def main(cold_runs: int, warm_runs: int, image: str) -> int:
    from rlm.environment import EnvironmentSettings
    from rlm.errors import SandboxError
    from rlm_env_docker.config import DockerEnvConfig
    from rlm_env_docker.session import DockerEnvironment

    settings = EnvironmentSettings(allowed_paths=(), options=DockerEnvConfig(image=image))

    def make() -> DockerEnvironment:
        return DockerEnvironment(settings=settings, callbacks=Callbacks())

    first = make()
    t = time.perf_counter()
    try:
        await first.start()
    except SandboxError as exc:
        print(f"cannot benchmark: {exc}", file=sys.stderr)
        return 1
    first_start = (time.perf_counter() - t) * 1000
    await first.close()
    print(f"image {image}; docker SDK connection + first session start: {first_start:.0f} ms")

    starts, first_exec, closes = [], [], []
    for _ in range(cold_runs):
        env = make()
        t = time.perf_counter()
        await env.start()
        starts.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        await env.execute("1")
        first_exec.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        await env.close()
        closes.append((time.perf_counter() - t) * 1000)
    show("cold start", starts, 1500)
    show("cold start + first execute", [a + b for a, b in zip(starts, first_exec)], 1500)
    show("close (container removed)", closes)

    env = make()
    await env.start()
    try:
        await env.execute("data = list(range(1000))")
        for name, code in (("warm execute: expression", "x = 1\nx + 1"),
                           ("warm execute: print + loop", "total = 0\nfor v in data:\n    total += v\nprint(total)"),
                           ("warm execute: llm_query round trip", "llm_query('ping')")):
            times = []
            for _ in range(warm_runs):
                t = time.perf_counter()
                result = await env.execute(code)
                times.append((time.perf_counter() - t) * 1000)
                assert result.error is None, result.error
            show(name, times, 30)
        times = []
        for _ in range(warm_runs):
            t = time.perf_counter()
            await env.get_context()
            times.append((time.perf_counter() - t) * 1000)
        show("warm get_context", times, 30)
    finally:
        await env.close()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold", type=int, default=5, help="cold session starts")
    parser.add_argument("--warm", type=int, default=200, help="warm executions per kind")
    parser.add_argument("--image", default=os.environ.get("RLM_DOCKER_IMAGE") or "rlm-sandbox:ci")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.cold, args.warm, args.image)))
