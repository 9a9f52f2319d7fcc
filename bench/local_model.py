"""Benchmark of the embedded local model: server start-up, time to first token, tokens/s.

Starts llama.cpp's server exactly as the ``local`` backend does: the
backend's own ServerSpec (``python .../rlm_backend_local/serve.py
--model=... --set=...``, llama.cpp's C++ server through xllamacpp) run by
its LlamaServer (same process handling, same health check), and measures:

* start-up, process start to the first 200 on ``/v1/models``: once with the
  model file evicted from the page cache (``posix_fadvise(DONTNEED)``; "cold")
  and then with it cached ("warm");
* time to first token of a streamed chat completion for a fixed prompt
  (after one warm-up request, so the chat template is compiled and the
  system prompt's KV cache state is comparable), and for a new prompt;
* generation speed: streamed content chunks per second after the first,
  completion_tokens / wall time of a non-streamed call, and the server's own
  ``timings`` (prompt and generation tokens/s as llama.cpp measured them).

    python bench/local_model.py                 # 3 runs each, the configured default model
    python bench/local_model.py -n 5 --max-tokens 200 --model qwen2.5-coder-0.5b-instruct
    python bench/local_model.py --model-path my.gguf --server-arg n_batch=512

Needs xllamacpp and the model (scripts/install-local-model.sh).  Prints
numbers; asserts nothing.
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
from rlm.errors import RLMError
from rlm_backend_local import http
from rlm_backend_local.backend import LocalBackend
from rlm_backend_local.models import CATALOG
from rlm_backend_local.server import RUNTIME, LlamaServer
from rlm_backend_local.settings import DEFAULT_MODEL, LocalSettings

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


def runtime_version(python: str) -> str:
    """The xllamacpp version installed for ``python`` (without importing it here)."""
    if python == sys.executable:
        from importlib import metadata

        try:
            return metadata.version(RUNTIME)
        except metadata.PackageNotFoundError:
            return "(not installed)"
    import subprocess

    code = f"import importlib.metadata as m; print(m.version({RUNTIME!r}))"
    result = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    return result.stdout.strip() or "(not installed)"


def start(spec, timeout: float) -> tuple[LlamaServer, float]:
    server = LlamaServer(spec, startup_timeout=timeout)
    started = time.perf_counter()
    server.ensure_started()
    return server, time.perf_counter() - started


def fresh_prompt(run: int) -> list[dict[str, str]]:
    """PROMPT with a different first line, so no prefix of it is in the server's KV cache."""
    return [{"role": "system", "content": f"Session {run}-{time.time_ns()}. " + PROMPT[0]["content"]}, PROMPT[1]]


async def streamed(server: LlamaServer, max_tokens: int, messages=PROMPT) -> tuple[float, int, float, dict]:
    """(time to first token, content chunks, total seconds, the server's timings) of one streamed call."""
    body = {"model": server.spec.alias, "messages": messages, "max_tokens": max_tokens, "temperature": 0.0,
            "stream": True, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    first = None
    chunks = 0
    timings: dict = {}
    stream = await http.open_stream(f"{server.base_url}/chat/completions", payload=body, api_key=server.api_key)
    try:
        if stream.status != 200:
            raise SystemExit(f"the server answered {stream.status}: {(await stream.body())[:500]!r}")
        async for data in stream.events():
            chunk = json.loads(data)
            timings = chunk.get("timings") or timings
            delta = (chunk.get("choices") or [{}])[0].get("delta") or {}
            if delta.get("content"):
                chunks += 1
                if first is None:
                    first = time.perf_counter() - started
    finally:
        stream.close()
    return first or float("nan"), chunks, time.perf_counter() - started, timings


async def whole(server: LlamaServer, max_tokens: int) -> tuple[int, int, float, dict]:
    """(prompt tokens, completion tokens, seconds, the server's timings) of one non-streamed call."""
    body = {"model": server.spec.alias, "messages": PROMPT, "max_tokens": max_tokens, "temperature": 0.0}
    started = time.perf_counter()
    response = await http.request("POST", f"{server.base_url}/chat/completions", payload=body,
                                  api_key=server.api_key)
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise SystemExit(f"the server answered {response.status}: {response.body[:500]!r}")
    data = response.json()
    usage = data["usage"]
    return usage["prompt_tokens"], usage["completion_tokens"], elapsed, data.get("timings") or {}


def median_of(timings: list[dict], key: str) -> str:
    values = [t[key] for t in timings if isinstance(t.get(key), (int, float))]
    return f"{statistics.median(values):.1f}" if values else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--model", default=DEFAULT_MODEL, choices=sorted(CATALOG),
                        help=f"catalog model (default {DEFAULT_MODEL})")
    parser.add_argument("--model-path", help="a GGUF file instead of the catalog model")
    parser.add_argument("--n-ctx", type=int, default=8192)
    parser.add_argument("--threads", type=int, help="inference threads (default: all cores)")
    parser.add_argument("--server-arg", action="append", default=[], metavar="NAME=VALUE",
                        help="extra llama.cpp server parameter, as [plugins.backend-local] server_args")
    parser.add_argument("--python", help="the Python that runs the server (default: this one)")
    parser.add_argument("--startup-timeout", type=float, default=300)
    args = parser.parse_args()

    try:
        local = LocalSettings(model=args.model, model_path=args.model_path, n_ctx=args.n_ctx,
                              n_threads=args.threads, server_args=args.server_arg, python=args.python)
    except ValueError as exc:
        parser.error(str(exc))
    backend = LocalBackend(settings=BackendSettings(options=local))
    t0 = time.perf_counter()
    try:
        spec = backend.server_spec("local/default")  # the backend's own spec; assembles the model on first use
    except RLMError as exc:
        raise SystemExit(f"local_model: {exc}") from None
    prepare = time.perf_counter() - t0
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"server:  {RUNTIME} {runtime_version(spec.python)}, {spec.python} {spec.argv(0, '')[1]}")
    print(f"model:   {spec.model_path} ({Path(spec.model_path).stat().st_size / 2**20:.0f} MiB), "
          f"n_ctx {spec.n_ctx}, {spec.n_threads} threads (prepare {prepare:.2f}s)"
          + (f", server_args {' '.join(spec.extra_args)}" if spec.extra_args else ""))

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
        ttfts, rates, totals, server_timings = [], [], [], []
        for _ in range(args.runs):
            ttft, chunks, total, timings = asyncio.run(streamed(server, args.max_tokens))
            ttfts.append(ttft)
            totals.append(chunks)
            server_timings.append(timings)
            if chunks > 1:
                rates.append((chunks - 1) / (total - ttft))
        fresh_runs = [asyncio.run(streamed(server, 1, fresh_prompt(i))) for i in range(args.runs)]
        fresh = [run[0] for run in fresh_runs]
        print(f"time to first token, new prompt ({len(json.dumps(PROMPT))} chars): "
              f"median {statistics.median(fresh) * 1000:.0f} ms  min {min(fresh) * 1000:.0f} ms  "
              f"(server: prompt {median_of([run[3] for run in fresh_runs], 'prompt_per_second')} tokens/s)")
        print(f"time to first token, prompt in the KV cache: median {statistics.median(ttfts) * 1000:.0f} ms  "
              f"min {min(ttfts) * 1000:.0f} ms")
        if rates:
            print(f"generation (streamed): median {statistics.median(rates):.1f} tokens/s over "
                  f"{statistics.median(totals):.0f} tokens  "
                  f"(server: {median_of(server_timings, 'predicted_per_second')} tokens/s)")
        speeds, whole_timings = [], []
        for _ in range(args.runs):
            prompt_tokens, completion_tokens, seconds, timings = asyncio.run(whole(server, args.max_tokens))
            speeds.append(completion_tokens / seconds)
            whole_timings.append(timings)
        print(f"non-streamed call: median {statistics.median(speeds):.1f} completion tokens/s "
              f"({prompt_tokens} prompt + {completion_tokens} completion tokens; "
              f"server: {median_of(whole_timings, 'predicted_per_second')} tokens/s)")
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
