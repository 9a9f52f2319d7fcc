"""Benchmark of the wasm environment (rlm-env-wasm): start-up and per-execution latency.

Prints, for CPython 3.12 in WASI under wasmtime:

- cold start: compiling the 26 MB interpreter (into a throw-away cache directory);
- cached start: Engine + ``Module.deserialize_file`` from the cache;
- session start: cached module + new instance + guest interpreter start + handshake;
- first execute after the start, then warm executes (median and p90 over N runs;
  the goal is a warm median under 2 ms), a ping round trip, an ``llm_query``
  round trip and a 1 MB ``set_context``.

No assertions.  Timings depend on the machine's load: run it on a quiet one.

    python bench/env_wasm.py              # 300 warm runs, with the cold compile
    python bench/env_wasm.py -n 1000 --no-cold
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:9.3f} ms"


def _row(label: str, value: str) -> None:
    print(f"  {label:<48}{value}")


class _Echo:
    async def llm_query(self, prompt: str) -> str:
        return "echo:" + prompt

    async def llm_query_batched(self, prompts: Sequence[str]) -> list[str]:
        return ["echo:" + p for p in prompts]


async def _series(n: int, action: Callable[[], Awaitable[Any]]) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        await action()
        times.append(time.perf_counter() - started)
    return times


def _stats(label: str, times: list[float]) -> None:
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    _row(label, f"median {_ms(statistics.median(ordered))}   p90 {_ms(p90)}   (n={len(ordered)})")


def cold_start() -> None:
    from rlm_env_wasm.cache import module_cache
    from rlm_env_wasm.engine import new_engine
    from rlm_env_wasm.runtime import resolve

    with tempfile.TemporaryDirectory(prefix="rlm-wasm-bench-") as directory:
        cache = module_cache(resolve(), directory)
        started = time.perf_counter()
        _module, how = cache.load(new_engine())
        _row(f"cold start (compile + cache write) [{how}]", _ms(time.perf_counter() - started))


def cached_start() -> None:
    from rlm_env_wasm.cache import module_cache
    from rlm_env_wasm.engine import new_engine
    from rlm_env_wasm.runtime import resolve

    cache = module_cache(resolve())
    cache.ensure()
    times = []
    for _ in range(10):
        started = time.perf_counter()
        _module, how = cache.load(new_engine())
        times.append(time.perf_counter() - started)
        assert how == "cache"
    _stats("cached start (Engine + deserialize_file)", times)


async def sessions(n: int) -> None:
    from rlm.environment import EnvironmentSettings
    from rlm_env_wasm.session import WasmEnvironment

    settings = EnvironmentSettings(allowed_paths=(tempfile.gettempdir(),))
    starts, firsts = [], []
    for _ in range(3):
        env = WasmEnvironment(settings=settings, callbacks=_Echo())
        started = time.perf_counter()
        await env.start()
        starts.append(time.perf_counter() - started)
        started = time.perf_counter()
        await env.execute("1 + 1")
        firsts.append(time.perf_counter() - started)
        await env.close()
    _stats("session start (instance + interpreter)", starts)
    _stats("first execute after start", firsts)

    env = WasmEnvironment(settings=settings, callbacks=_Echo())
    await env.start()
    try:
        await env.execute("x = 0")
        _stats("warm execute: x = 1", await _series(n, lambda: env.execute("x = 1")))
        _stats("warm execute: x + 1 (trailing value)", await _series(n, lambda: env.execute("x + 1")))
        _stats("warm get_variable('x')", await _series(n, lambda: env.get_variable("x")))
        _stats("llm_query round trip (in one execute)",
               await _series(max(20, n // 10), lambda: env.execute("llm_query('hi')")))
        blob = "x" * 1_000_000
        _stats("set_context of 1 MB", await _series(10, lambda: env.set_context("blob", blob)))
        result = await env.execute("s = 0\nfor i in range(100_000):\n    s += i")
        _row("pure-Python loop of 100k additions", f"{result.execution_time_ms:9.3f} ms "
             f"(cpu {result.cpu_time_ms} ms)")
    finally:
        await env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=300, help="warm executions to time")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold compile (seconds)")
    args = parser.parse_args()
    from rlm_env_wasm.engine import wasmtime_version
    from rlm_env_wasm.runtime import PYTHON_VERSION

    print(f"rlm-env-wasm: CPython {PYTHON_VERSION} (WASI) under wasmtime {wasmtime_version()}")
    if not args.no_cold:
        cold_start()
    cached_start()
    asyncio.run(sessions(args.n))


if __name__ == "__main__":
    main()
