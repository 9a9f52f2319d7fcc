"""Batch executors: `rlm batch` on the local executor vs the Ray executor, on this machine.

N items, each one model call answered by the scripted OpenAI-compatible server after a fixed latency
(through the real OpenAI SDK, the tools protocol, trajectories written by the driver).  For each
executor it prints the wall time, the ideal (ceil(N / concurrency) x latency: every call overlapped,
nothing added), the overhead per item ((wall - ideal) x concurrency / N: what each item's slot spent
outside the model) and the driver's CPU time per item.  The Ray cluster's start is timed apart
(a long-lived cluster pays it once).  Asserts nothing.

Usage: python bench/batch.py [--items 200] [--latency 0.2] [--concurrency 16] [--executors local,ray]
Needs rlm-backend-openai and rlm-testing; the ray row needs rlm-executor-ray.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import time

import attrs


def run_once(executor: str, args: argparse.Namespace, base_url: str, workdir: str) -> dict:
    from rlm import RLM

    source = os.path.join(workdir, "in.jsonl")
    output = os.path.join(workdir, f"out-{executor}.jsonl")
    with open(source, "w") as fh:
        for i in range(args.items):
            fh.write(json.dumps({"id": str(i), "prompt": f"item {i}"}) + "\n")
    rlm = RLM(model="openai/gpt-4o-mini", api_base=base_url, protocol="tools", environment="local",
              log_dir=os.path.join(workdir, f"logs-{executor}"))

    async def go():
        try:
            return await rlm.batch(source, output, concurrency=args.concurrency, executor=executor)
        finally:
            await rlm.aclose()

    cpu, wall = time.process_time(), time.perf_counter()
    summary = asyncio.run(go())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    ideal = math.ceil(args.items / args.concurrency) * args.latency
    return {"executor": executor, "ok": summary.ok, "failed": summary.failed, "wall_s": wall, "ideal_s": ideal,
            "overhead_ms_per_item": (wall - ideal) * args.concurrency / args.items * 1000,
            "driver_cpu_ms_per_item": cpu / args.items * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--executors", default="local,ray")
    args = parser.parse_args()
    try:
        import rlm_backend_openai  # noqa: F401
        from rlm_testing.server import Reply, ScriptedLLMServer
    except ImportError as exc:
        print(f"bench/batch.py needs rlm-backend-openai and rlm-testing: {exc}", file=sys.stderr)
        return 1
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
    rows = []
    answer = attrs.evolve(Reply.text("ok", input_tokens=100, output_tokens=5), delay=args.latency)
    with ScriptedLLMServer(lambda request: answer) as server, \
            tempfile.TemporaryDirectory() as workdir:
        old = os.getcwd()
        os.chdir(workdir)
        try:
            for executor in args.executors.split(","):
                if executor == "ray":
                    try:
                        import ray
                    except ImportError:
                        print("ray: not installed (pip install rlm-executor-ray)", file=sys.stderr)
                        continue
                    cpus = os.cpu_count() or 1
                    os.environ.setdefault("RLM_PLUGINS__EXECUTOR_RAY__TASK_CPUS", "1")
                    started = time.perf_counter()
                    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
                    print(f"ray: local cluster of {cpus} CPUs started in {time.perf_counter() - started:.2f} s "
                          f"(one actor per CPU, each running up to ceil({args.concurrency} / {cpus}) items at once)")
                    try:
                        rows.append(run_once("ray", args, server.openai_base_url, workdir))
                    finally:
                        ray.shutdown()
                else:
                    rows.append(run_once(executor, args, server.openai_base_url, workdir))
        finally:
            os.chdir(old)
    print(f"{args.items} items, {args.latency * 1000:.0f} ms model latency, concurrency {args.concurrency}, "
          f"{os.cpu_count()} CPUs")
    print(f"{'executor':<9} {'ok':>4} {'failed':>6} {'wall s':>8} {'ideal s':>8} {'overhead ms/item':>17} "
          f"{'driver CPU ms/item':>19}")
    for row in rows:
        print(f"{row['executor']:<9} {row['ok']:>4} {row['failed']:>6} {row['wall_s']:>8.2f} {row['ideal_s']:>8.2f} "
              f"{row['overhead_ms_per_item']:>17.1f} {row['driver_cpu_ms_per_item']:>19.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
