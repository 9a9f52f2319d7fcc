"""Latency benchmark of the local REPL environment, through the public Environment API.

Prints the cold start (create + start + first execute, fresh worker each
time) and the warm execute latency of a few small cells (median / p90 /
min over N runs in one session), plus an ``llm_query`` round trip through
fake host callbacks.  It also prints what the OS jail costs: cold starts and
with every layer, then with the OS layers (namespaces,
Landlock, seccomp) switched off, and the time until a session is ready
(``start()``) with a cold worker and with one claimed from the pre-started
spare (``[plugins.env-local] spare_workers``).  No assertions; the goals are
warm execution < 2 ms, cold start <= 100 ms and a session ready from the
spare <= 15 ms.

    python bench/env_local.py            # 200 warm runs, 10 cold starts
    python bench/env_local.py -n 1000 --cold 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Sequence

import attrs
from rlm.environment import EnvironmentSettings
from rlm_env_local.config import LocalEnvConfig
from rlm_env_local.session import LocalEnvironment

CELLS = {
    "assign": "x = 1",
    "expression": "x + 41",
    "print": "print('hello', x)",
    "function call": "def f(n):\n    return sum(range(n))\nf(100)",
}


class _Callbacks:
    async def llm_query(self, prompt: str) -> str:
        return prompt

    async def llm_query_batched(self, prompts: Sequence[str]) -> list[str]:
        return list(prompts)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _stats(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return (f"median {statistics.median(ordered) * 1000:7.3f} ms   p90 {p90 * 1000:7.3f} ms   "
            f"min {ordered[0] * 1000:7.3f} ms")


OS_LAYERS = ("namespaces", "landlock", "seccomp")


def _compile_worker_modules() -> None:
    """Byte-compile what the worker imports, as ``pip install`` of a wheel does: an editable
    checkout (or PYTHONDONTWRITEBYTECODE) would otherwise make every worker compile from source."""
    import compileall

    import RestrictedPython

    import rlm_env_local

    for module in (rlm_env_local, RestrictedPython):
        compileall.compile_dir(os.path.dirname(module.__file__ or ""), quiet=1)


def _options(spare_workers: int) -> LocalEnvConfig | None:
    """The plugin's options with ``spare_workers`` (None where this version has no spare worker)."""
    if "spare_workers" not in attrs.fields_dict(LocalEnvConfig):
        return None
    return LocalEnvConfig(spare_workers=spare_workers)


async def session_ready(workdir: str, cold: int) -> None:
    """``start()`` until the session is ready: a cold worker, then one claimed from the spare."""
    variants = [("cold worker", 0), ("from the spare", 1)]
    if _options(0) is None:
        variants = [("cold worker", None)]
        print("(this version has no spare worker: cold only)")
    for label, spares in variants:
        options = _options(spares) if spares is not None else None
        settings = EnvironmentSettings(workdir=workdir, allowed_paths=(workdir,), options=options)
        env = LocalEnvironment(settings=settings)  # the first start of these settings (it primes the spare)
        await env.start()
        await env.close()
        samples = []
        for _ in range(cold):
            await asyncio.sleep(0.5)  # time for a new spare to start, as between the sessions of a server
            env = LocalEnvironment(settings=settings)
            began = time.perf_counter()
            await env.start()
            samples.append(time.perf_counter() - began)
            await env.close()
        print(f"session ready (start()) {label:>14}, {cold} runs:  {_stats(samples)}")


async def main(runs: int, cold: int) -> None:
    _compile_worker_modules()
    workdir = tempfile.mkdtemp(prefix="rlm-bench-")
    await session_ready(workdir, cold)
    settings = EnvironmentSettings(workdir=workdir, allowed_paths=(workdir,), options=_options(0))

    for label, off in (("jailed", ()), ("no OS jail", OS_LAYERS)):
        starts, cpu = [], []
        for _ in range(cold):
            began, children = time.perf_counter(), _children_cpu()
            env = LocalEnvironment(settings=settings, disable_layers=off)
            await env.start()
            await env.execute("1")
            starts.append(time.perf_counter() - began)
            await env.close()  # reaps the worker: its CPU time is now in RUSAGE_CHILDREN
            cpu.append(_children_cpu() - children)
        print(f"cold start {label:>10} (create + start + first execute), {cold} runs:  {_stats(starts)}")
        print(f"  CPU time of the worker process {label:>10}:                       {_stats(cpu)}")
    jail_ms = []
    for _ in range(cold):
        env = LocalEnvironment(settings=settings)
        await env.start()
        jail_ms.append((env.jail_ms or 0.0) / 1000)
        await env.close()
    print(f"entering the OS jail inside the worker (namespaces + Landlock + seccomp), {cold} runs:  "
          f"{_stats(jail_ms)}")
    env = LocalEnvironment(settings=settings)
    await env.start()
    for layer, status in env.layers.items():
        print(f"  layer {layer:14} {status}")
    await env.close()

    env = LocalEnvironment(settings=settings, callbacks=_Callbacks())
    await env.start()
    await env.execute("x = 1")
    for name, code in CELLS.items():
        for _ in range(10):  # warm up
            await env.execute(code)
        samples = []
        for _ in range(runs):
            began = time.perf_counter()
            result = await env.execute(code)
            samples.append(time.perf_counter() - began)
            assert result.error is None, result.error
        print(f"warm execute {name!r:17} {runs} runs:  {_stats(samples)}")
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        await env.execute("llm_query('ping')")
        samples.append(time.perf_counter() - began)
    print(f"warm execute {'llm_query':17} {runs} runs:  {_stats(samples)}")
    await env.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=200, help="warm executions per cell")
    parser.add_argument("--cold", type=int, default=10, help="cold starts")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.cold))
