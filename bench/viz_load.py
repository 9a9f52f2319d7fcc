"""Load a generated ~100 MB trajectory through rlm-viz's data layer; print time and memory.

Usage: python bench/viz_load.py [--mb 100] [--keep PATH]

It writes a synthetic trajectory (a top call with nested sub-calls, LLM calls
with long responses, REPL executions with long outputs, tool results) of about
``--mb`` megabytes, then measures, in this process:
  * the full load (TrajectoryLoader.load_all in 8 MiB chunks) and a snapshot,
  * the aggregations behind every chart,
  * an incremental update after appending 1 MB (a live run),
  * the run-picker summary (first and last lines only),
and the peak Python heap (tracemalloc) and the process's max RSS.

Measured on the dev container (2 cores, Python 3.11), 104.9 MB / 26,879 events / 1,582 calls:
  load_all 2.2 s (47 MB/s, 13 chunks of 8 MiB, so the UI shows progress between chunks),
  snapshot 0.06 s, all chart aggregations 0.08 s, incremental update after +1 MB 0.05 s,
  picker summary 0.3 ms, peak Python heap 153 MB (tracemalloc pass), max RSS 205 MB.
(Re-run to refresh; the numbers printed are the truth for your machine.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import tracemalloc

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "rlm-viz", "src"))

from rlm_viz import stats
from rlm_viz.reader import TrajectoryLoader
from rlm_viz.runs import summarize


def event(type_, call_id, parent, depth, i, **fields):
    return {"type": type_, "trajectory_id": "bench", "call_id": call_id, "parent_call_id": parent,
            "sub_call_type": "sub_complete" if parent else None, "depth": depth, "timestamp": 1e9 + i, **fields}


def generate(path: str, megabytes: float) -> int:
    target = int(megabytes * 1024 * 1024)
    text = ("lorem ipsum dolor sit amet " * 60)  # ~1.6 KB
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        def put(e):
            nonlocal n
            fh.write(json.dumps(e) + "\n")
            n += 1
        put(event("run_start", "c0", None, 0, 0, prompt="bench task " + text, model="openai/gpt-4o-mini",
                  environment="local", protocol="repl"))
        i, call = 0, 0
        while fh.tell() < target:
            call += 1
            cid, parent, depth = f"c{call}", f"c{max(call // 3, 0)}" if call > 1 else "c0", 1 + (call % 3)
            put(event("call_start", cid, parent, depth, i, prompt="sub task " + text))
            for _ in range(5):
                i += 1
                put(event("llm_call", cid, parent, depth, i, model="openai/gpt-4o-mini" if i % 2 else "anthropic/x",
                          prompt=[{"role": "user", "content": text}], response=text * 2,
                          tool_calls=[{"id": f"t{i}", "name": "execute_code", "arguments": {"code": "x = 1"}}],
                          token_usage={"input": 1000, "output": 200, "total": 1200}, cost=0.001, duration_ms=300.0))
                put(event("repl_execution", cid, parent, depth, i, code="print(x)\n" * 20, output=text * 3,
                          value=None, error="boom" if i % 97 == 0 else None, execution_time_ms=2.0, duration_ms=3.0))
                put(event("tool_results", cid, parent, depth, i, tool_results=[
                    {"call_id": f"t{i}", "name": "execute_code", "content": text, "is_error": False,
                     "duration_ms": 4.0}]))
            put(event("call_end", cid, parent, depth, i, response=text, duration_ms=2000.0))
        put(event("run_end", "c0", None, 0, i, response="done", error=None, limit_hit=None, answer_source="text",
                  token_usage={"input": 1, "output": 1, "total": 2}, cost=1.0, duration_ms=1.0))
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100)
    parser.add_argument("--keep", help="write the trajectory here and keep it")
    args = parser.parse_args()
    path = args.keep or os.path.join(tempfile.mkdtemp(), "bench.jsonl")
    t0 = time.perf_counter()
    n = generate(path, args.mb)
    size = os.path.getsize(path)
    print(f"generated {size / 1e6:.1f} MB, {n:,} events in {time.perf_counter() - t0:.1f} s: {path}")

    # memory pass (tracemalloc slows allocation several times: its time is not reported)
    tracemalloc.start()
    TrajectoryLoader(path).load_all()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    t0 = time.perf_counter()
    loader = TrajectoryLoader(path)
    chunks = 0
    while loader.update(8 * 1024 * 1024):
        chunks += 1
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    traj = loader.snapshot()
    snap_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for fn in (stats.totals, stats.tokens_per_call, stats.time_by_category, stats.time_per_call,
               stats.slowest_steps, stats.tool_distribution, stats.cost_by_model, stats.cost_by_depth):
        fn(traj)
    charts_s = time.perf_counter() - t0
    with open(path, "a", encoding="utf-8") as fh:
        extra = json.dumps(event("llm_call", "c1", "c0", 1, 0, model="m", prompt=[], response="y" * 1000,
                                 tool_calls=[], token_usage={"input": 1, "output": 1, "total": 2}, cost=0.0,
                                 duration_ms=1.0))
        fh.write((extra + "\n") * (1024 * 1024 // (len(extra) + 1)))
    t0 = time.perf_counter()
    new = loader.update()
    inc_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    row = summarize(path)
    summary_ms = (time.perf_counter() - t0) * 1000
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"load_all {load_s:.2f} s ({chunks} chunks, {traj.events:,} events, {len(traj.calls):,} calls, "
          f"{size / 1e6 / load_s:.0f} MB/s)")
    print(f"snapshot {snap_s:.3f} s, chart aggregations {charts_s:.3f} s")
    print(f"incremental update after +1 MB: {new:,} events in {inc_s:.3f} s")
    print(f"picker summary {summary_ms:.1f} ms (status {row.status}: lines were appended after run_end)")
    print(f"peak Python heap {peak / 1e6:.0f} MB (tracemalloc), max RSS {rss:.0f} MB")
    if not args.keep:
        os.remove(path)


if __name__ == "__main__":
    main()
