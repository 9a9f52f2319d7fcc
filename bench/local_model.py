"""Benchmark of the embedded local model: server start-up, time to first token, tokens/s.

Starts ``llama_cpp.server`` the way the ``local`` backend does (same
ServerSpec, same health check) and measures:

* start-up, process start to the first 200 on ``/v1/models``: once with the
  model file evicted from the page cache (``posix_fadvise(DONTNEED)``; "cold")
  and then with it cached ("warm");
* time to first token of a streamed chat completion for a fixed prompt
  (after one warm-up request, so the chat template is compiled and the
  system prompt's KV cache state is comparable);
* generation speed: streamed content chunks (one token each) per second
  after the first, and completion_tokens / wall time of a non-streamed call.

    python bench/local_model.py                 # 3 runs each, the default model
    python bench/local_model.py -n 5 --max-tokens 200 --model-path my.gguf

Needs llama-cpp-python[server] and the model (scripts/install-local-model.sh).
Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from rlm.backend import BackendSettings
from rlm_backend_local import http
from rlm_backend_local.backend import LocalBackend
from rlm_backend_local.server import LlamaServer
from rlm_backend_local.settings import LocalSettings

PROMPT = [
    {"role": "system", "content": "You are a helpful assistant. Answer with Python code in a ```python block."},
    {"role": "user", "content": "Write a function that returns the n-th Fibonacci number, with a docstring "
                                "and three example calls."},
]


def evict(path: Path) -> bool:
    """Drop ``path`` from the page cache (best effort; True when the kernel accepted it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return True
    except (OSError, AttributeError):
        return False
    finally:
        os.close(fd)


def start(spec, timeout: float) -> tuple[LlamaServer, float]:
    server = LlamaServer(spec, startup_timeout=timeout)
    started = time.perf_counter()
    server.ensure_started()
    return server, time.perf_counter() - started


def fresh_prompt(run: int) -> list[dict[str, str]]:
    """PROMPT with a different first line, so no prefix of it is in the server's KV cache."""
    return [{"role": "system", "content": f"Session {run}-{time.time_ns()}. " + PROMPT[0]["content"]}, PROMPT[1]]


async def streamed(server: LlamaServer, max_tokens: int, messages=PROMPT) -> tuple[float, int, float]:
    """(time to first token, content chunks, total seconds) of one streamed call."""
    body = {"model": server.spec.alias, "messages": messages, "max_tokens": max_tokens, "temperature": 0.0,
            "stream": True}
    started = time.perf_counter()
    first = None
    chunks = 0
    stream = await http.open_stream(f"{server.base_url}/chat/completions", payload=body, api_key=server.api_key)
    try:
        async for data in stream.events():
            delta = (json.loads(data).get("choices") or [{}])[0].get("delta") or {}
            if delta.get("content"):
                chunks += 1
                if first is None:
                    first = time.perf_counter() - started
    finally:
        stream.close()
    return first or float("nan"), chunks, time.perf_counter() - started


async def whole(server: LlamaServer, max_tokens: int) -> tuple[int, int, float]:
    """(prompt tokens, completion tokens, seconds) of one non-streamed call."""
    body = {"model": server.spec.alias, "messages": PROMPT, "max_tokens": max_tokens, "temperature": 0.0}
    started = time.perf_counter()
    response = await http.request("POST", f"{server.base_url}/chat/completions", payload=body,
                                  api_key=server.api_key)
    elapsed = time.perf_counter() - started
    usage = response.json()["usage"]
    return usage["prompt_tokens"], usage["completion_tokens"], elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--model-path")
    parser.add_argument("--n-ctx", type=int, default=8192)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--startup-timeout", type=float, default=300)
    args = parser.parse_args()

    local = LocalSettings(model_path=args.model_path, n_ctx=args.n_ctx, n_threads=args.threads)
    backend = LocalBackend(settings=BackendSettings(options=local))
    t0 = time.perf_counter()
    spec = backend.server_spec("local/default")  # assembles the model on first use
    prepare = time.perf_counter() - t0
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"model:   {spec.model_path} ({Path(spec.model_path).stat().st_size / 2**20:.0f} MiB), "
          f"n_ctx {spec.n_ctx}, {spec.n_threads} threads (prepare {prepare:.2f}s)")

    cold = []
    warm = []
    for _ in range(args.runs):
        evicted = evict(Path(spec.model_path))
        server, seconds = start(spec, args.startup_timeout)
        server.stop()
        (cold if evicted else warm).append(seconds)
        server, seconds = start(spec, args.startup_timeout)
        warm.append(seconds)
        server.stop()
    if cold:
        print(f"start-up, cold page cache: median {statistics.median(cold):.2f}s  min {min(cold):.2f}s  (n={len(cold)})")
    else:
        print("start-up, cold page cache: not measured (posix_fadvise unavailable)")
    print(f"start-up, warm page cache: median {statistics.median(warm):.2f}s  min {min(warm):.2f}s  (n={len(warm)})")

    server, _ = start(spec, args.startup_timeout)
    try:
        asyncio.run(streamed(server, 16))  # warm-up
        ttfts, rates, totals = [], [], []
        for _ in range(args.runs):
            ttft, chunks, total = asyncio.run(streamed(server, args.max_tokens))
            ttfts.append(ttft)
            totals.append(chunks)
            if chunks > 1:
                rates.append((chunks - 1) / (total - ttft))
        fresh = [asyncio.run(streamed(server, 1, fresh_prompt(i)))[0] for i in range(args.runs)]
        print(f"time to first token, new prompt ({len(json.dumps(PROMPT))} chars): "
              f"median {statistics.median(fresh) * 1000:.0f} ms  min {min(fresh) * 1000:.0f} ms")
        print(f"time to first token, prompt in the KV cache: median {statistics.median(ttfts) * 1000:.0f} ms  "
              f"min {min(ttfts) * 1000:.0f} ms")
        print(f"generation (streamed): median {statistics.median(rates):.1f} tokens/s over "
              f"{statistics.median(totals):.0f} tokens")
        speeds = []
        for _ in range(args.runs):
            prompt_tokens, completion_tokens, seconds = asyncio.run(whole(server, args.max_tokens))
            speeds.append(completion_tokens / seconds)
        print(f"non-streamed call: median {statistics.median(speeds):.1f} completion tokens/s "
              f"({prompt_tokens} prompt + {completion_tokens} completion tokens)")
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
