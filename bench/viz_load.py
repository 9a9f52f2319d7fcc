"""Load a generated ~100 MB trajectory through rlm-viz's data layer, or the dashboard in Chromium; print times.

Usage:
  python bench/viz_load.py [--mb 100] [--keep PATH]            # the data layer, in this process
  python bench/viz_load.py --browser --mb 20 --mb 100          # `rlm visualize` in headless Chromium

It writes a synthetic trajectory (a top call with nested sub-calls, LLM calls
with long responses, REPL executions with long outputs, tool results, a few
outputs of 200 KB and, from 50 MB up, one of 10 MB) of about ``--mb`` megabytes.

Without ``--browser`` it measures, in this process:
  * the full load (TrajectoryLoader.load_all in 8 MiB chunks) and a snapshot,
  * the aggregations behind every chart,
  * an incremental update after appending 1 MB (a live run),
  * the run-picker summary (first and last lines only),
and the peak Python heap (tracemalloc) and the process's max RSS.

With ``--browser`` it measures, per size:
  * the server-side script: the first (cold: reads the file) and a second (warm) run of the
    Streamlit script under ``streamlit.testing.v1.AppTest``;
  * the page: the dashboard started as ``rlm visualize`` starts it, on a free port, and one fresh
    headless Chromium session (DevTools protocol, :mod:`rlm_viz.browser`) opening it: seconds until
    the run's header, the execution tree and its first call are in the DOM, and until the first
    screen is complete (Streamlit's "running" indicator gone: the page has taken in everything the
    script sent; no placeholder left of a widget still loading), and the bytes the browser received
    over Streamlit's websocket.  A page that does not get there in ``--deadline`` seconds is
    reported as such.  ``--app`` times another copy of the script (an older app.py, for a
    before/after).

(Re-run to refresh; the numbers printed are the truth for your machine.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
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
    big = "0123456789abcdef " * 12_000  # ~200 KB
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        def put(e):
            nonlocal n
            fh.write(json.dumps(e) + "\n")
            n += 1
        put(event("run_start", "c0", None, 0, 0, prompt="bench task " + text, model="openai/gpt-4o-mini",
                  environment="local", protocol="repl"))
        if megabytes >= 50:  # one huge single field: a 10 MB tool output
            put(event("tool_results", "c0", None, 0, 0, tool_results=[
                {"call_id": "t0", "name": "read_file", "content": "x" * 10_000_000, "is_error": False,
                 "duration_ms": 40.0}]))
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
                    {"call_id": f"t{i}", "name": "execute_code", "content": big if i % 50 == 0 else text,
                     "is_error": False, "duration_ms": 4.0}]))
            put(event("call_end", cid, parent, depth, i, response=text, duration_ms=2000.0))
        put(event("run_end", "c0", None, 0, i, response="done", error=None, limit_hit=None, answer_source="text",
                  token_usage={"input": 1, "output": 1, "total": 2}, cost=1.0, duration_ms=1.0))
    return n


def script_times(app: str, directory: str) -> tuple[float, float]:
    """The Streamlit script ``app`` over ``directory`` under AppTest: (first run s, second run s)."""
    from streamlit.testing.v1 import AppTest

    old = sys.argv
    sys.argv = ["app.py", "--dir", directory]
    try:
        at = AppTest.from_file(app, default_timeout=600)
        t0 = time.perf_counter()
        at.run()
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        at.run()
        warm = time.perf_counter() - t0
    finally:
        sys.argv = old
    if at.exception:
        raise SystemExit(f"the script failed: {[e.value for e in at.exception]}")
    return cold, warm


def browser(app: str, megabytes: float, deadline: float) -> None:
    """One size: the script under AppTest, then the dashboard (as `rlm visualize` starts it) in a fresh
    headless Chromium."""
    from rlm_viz.cli import app_path, streamlit_command

    directory = tempfile.mkdtemp(prefix="viz-bench-")
    path = os.path.join(directory, "20250101-000000-bench000.jsonl")
    n = generate(path, megabytes)
    size = os.path.getsize(path)
    cold, warm = script_times(app, directory)
    print(f"{size / 1e6:.1f} MB, {n:,} events: script (AppTest) first run {cold:.2f} s, second run {warm:.2f} s")
    from rlm_viz.browser import free_port, wait_http

    port = free_port()
    command = [app if part == app_path() else part for part in streamlit_command(directory, port)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url)
        for visit in ("first visit (server cold)", "second visit (new browser, server warm)"):
            visit_page(url, visit, deadline)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


def visit_page(url: str, visit: str, deadline: float) -> None:
    """One fresh headless Chromium opening ``url``: print how long until the first screen."""
    from rlm_viz.browser import Chromium

    with Chromium() as page:
        t0 = time.monotonic()
        page.open(url)
        shown, dom = page.wait_for(first_screen, deadline)
        header_s = time.monotonic() - t0
        done, dom = page.wait_for(lambda d: first_screen(d) and "stSkeleton" not in d and not page.running(),
                                  max(deadline - header_s, 0))
        done_s = time.monotonic() - t0
        print(f"  {visit}: header and tree in the DOM {'%.1f s' % header_s if shown else f'> {deadline:g} s'}; "
              f"first screen complete (script run over in the page) "
              f"{'%.1f s' % done_s if done else f'> {deadline:g} s (never finished)'}; "
              f"{page.ws_bytes / 1e6:.2f} MB received over the websocket, DOM {len(dom) / 1e6:.2f} MB")


def first_screen(dom: str) -> bool:
    """The run's header (its task), the execution tree and its first call are in the DOM."""
    return "bench task" in dom and "Execution tree" in dom and "run c0" in dom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, action="append", help="size in MB (repeat with --browser; default 100)")
    parser.add_argument("--keep", help="write the trajectory here and keep it")
    parser.add_argument("--browser", action="store_true", help="time `rlm visualize` in headless Chromium")
    parser.add_argument("--deadline", type=float, default=180.0, help="seconds the page gets (with --browser)")
    parser.add_argument("--app", help="the Streamlit script to time with --browser (default: rlm-viz's app.py; "
                                      "a copy of an older one gives a before/after)")
    args = parser.parse_args()
    sizes = args.mb or [100.0]
    if args.browser:
        from rlm_viz.cli import app_path

        for mb in sizes:
            browser(os.path.abspath(args.app or app_path()), mb, args.deadline)
        return
    args.mb = sizes[0]
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
