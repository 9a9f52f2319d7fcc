"""Sub-call fan-out: one run whose model asks for N sub-calls at once, against a slow scripted server.

Two ways of asking, each through the real OpenAI SDK route (``RLM(model="openai/...", api_base=URL)``):

- ``tool``: the model calls ``rlm_batch_complete`` with N queries and ``max_parallel`` N;
- ``repl``: the model runs ``execute_code`` whose code calls ``llm_query_batched`` with N prompts
  (the local environment: its worker's start is in the wall time, as far as it does not overlap the first turn).

The scripted server (bench/drivers/server.py's ``answer``, plus the ``repl`` kind below) adds
``--latency`` to every reply.  The ideal is 3 x latency: the turn asking, one overlapped round of N, the
turn answering "done".  By default the server runs in its own process (``--server process``), so its
CPU is not charged to the driver and the two do not share one GIL; ``--server thread`` runs it in the
driver process.  Printed per (kind, N): median wall, ideal, wall / ideal, the driver process's CPU
time per sub-call (the two top-level turns included) and the server process's CPU per request (its N + 2
requests, from /proc in clock ticks; on a machine with few cores it competes with the driver for them);
"best" is the fastest sample (the machine's other load blurs the median on a shared 2-core box).  Each sample is a fresh ``RLM``; one warm-up run per
(kind, N) is not counted.  Asserts nothing, except that every run answered "done" (a run that did not do
the work fails instead of being timed).

``--gc-freeze`` moves every object alive after the warm-up run (the SDK's ~100k import-time objects) out of
the cyclic collector's reach (``gc.freeze()``), as an application may do once after start-up: a fan-out of
hundreds of calls otherwise triggers full collections that traverse them all (tens to hundreds of ms a run).

Usage: python bench/subcalls.py [--n 50,200] [--kinds tool,repl] [--latency 0.2] [--repeat 3]
       [--server process|thread] [--host 127.0.0.1|localhost] [--gc-freeze] [--profile FILE]
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(BENCH, "drivers"))
from _common import prompt, quiet_env  # noqa: E402

quiet_env()

#: the code the ``repl`` kind runs: N prompts through llm_query_batched, then how many answered "ok"
REPL_CODE = ("answers = llm_query_batched([f'SUB {{i}}' for i in range({n})])\n"
             "print('OK', sum(a == 'ok' for a in answers))")
_OK = re.compile(r"OK (\d+)")


def answer(req):
    """bench/drivers/server.py's answer, plus the ``repl`` kind (execute_code calling llm_query_batched)."""
    from rlm_testing.server import Reply
    from server import PATTERN, _text
    from server import answer as driver_answer

    messages = req.body.get("messages") or []
    users = [_text(m) for m in messages if m.get("role") == "user"]
    match = PATTERN.search(users[0]) if users else None
    if match is None or match.group(1) != "repl":
        return driver_answer(req)
    n = int(match.group(2))
    tools = [_text(m) for m in messages if m.get("role") == "tool"]
    if not tools:
        return Reply.tool_calls(("execute_code", {"code": REPL_CODE.format(n=n)}))
    found = _OK.search(tools[-1])
    if found is None or int(found.group(1)) != n:
        return Reply.text("REPL BATCH INCOMPLETE: " + tools[-1][:300])
    return Reply.text("done")


def serve(latency: float) -> None:
    """The server process: print ``URL <base url>``, serve until stdin closes."""
    from rlm_testing.server import ScriptedLLMServer

    with ScriptedLLMServer(answer, latency=latency) as server:
        print("URL", server.openai_base_url, flush=True)
        sys.stdin.read()


class Server:
    """The scripted server, in its own process or in a thread of this one."""

    def __init__(self, mode: str, latency: float) -> None:
        self.mode, self.latency = mode, latency
        self.proc: subprocess.Popen | None = None
        self.thread_server = None

    def __enter__(self) -> str:
        if self.mode == "thread":
            from rlm_testing.server import ScriptedLLMServer

            self.thread_server = ScriptedLLMServer(answer, latency=self.latency).start()
            return self.thread_server.openai_base_url
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", "--latency", str(self.latency)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("URL "):
            raise SystemExit(f"the server process did not start: {line!r}")
        return line.split()[1]

    def cpu(self) -> float | None:
        """CPU seconds the server process has used so far (Linux ``/proc``); None in a thread or elsewhere."""
        if self.proc is None:
            return None
        try:
            with open(f"/proc/{self.proc.pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __exit__(self, *exc: object) -> None:
        if self.thread_server is not None:
            self.thread_server.stop()
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)


def one_run(kind: str, n: int, base_url: str, log_dir: str,
            server: Server | None = None) -> tuple[float, float, float | None]:
    """(wall s, driver CPU s, server process CPU s or None) of one fresh run."""
    from rlm import RLM

    rlm = RLM(model="openai/scripted-model", api_base=base_url, log_dir=log_dir, environment="local",
              token_budget=10**9, max_turns=100, max_parallel=n, max_subcalls=n)
    server_cpu = server.cpu() if server is not None else None
    cpu, wall = time.process_time(), time.perf_counter()
    result = rlm.completion_sync(prompt("batch" if kind == "tool" else "repl", n, "ours"))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if server_cpu is not None:
        server_cpu = server.cpu() - server_cpu
    if not result.success or result.response != "done":
        raise SystemExit(f"{kind} n={n}: run failed: {result.error!r} {str(result.response)[:300]!r}")
    return wall, cpu, server_cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="50,200", help="sub-calls per run, comma-separated")
    parser.add_argument("--kinds", default="tool,repl", help="tool (rlm_batch_complete), repl (llm_query_batched)")
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--server", choices=("process", "thread"), default="process")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the host the client connects to: localhost makes it resolve a name, as a real provider's")
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after the first warm-up run")
    parser.add_argument("--profile", help="write a cProfile of the timed runs to this file")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.latency)
        return 0
    try:
        import rlm_backend_openai  # noqa: F401
        import rlm_testing  # noqa: F401
    except ImportError as exc:
        print(f"bench/subcalls.py needs rlm-backend-openai and rlm-testing: {exc}", file=sys.stderr)
        return 1
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU time: other processes do not blur it
    rows = []
    load_before = os.getloadavg()
    server = Server(args.server, args.latency)
    with server as base_url, tempfile.TemporaryDirectory() as tmp:
        base_url = base_url.replace("127.0.0.1", args.host)
        for kind in args.kinds.split(","):
            for n in (int(v) for v in args.n.split(",")):
                one_run(kind, n, base_url, tmp)  # warm-up: imports, SDK client, first connections
                if args.gc_freeze and not gc.get_freeze_count():
                    gc.collect()
                    gc.freeze()
                samples = []
                for _ in range(args.repeat):
                    if profiler is not None:
                        profiler.enable()
                    samples.append(one_run(kind, n, base_url, tmp, server))
                    if profiler is not None:
                        profiler.disable()
                wall = statistics.median(s[0] for s in samples)
                cpu = statistics.median(s[1] for s in samples)
                server_cpu = (statistics.median(s[2] for s in samples)
                              if all(s[2] is not None for s in samples) else None)
                rows.append((kind, n, wall, min(s[0] for s in samples), 3 * args.latency, cpu, server_cpu))
    if profiler is not None:
        profiler.dump_stats(args.profile)
    charged = "its CPU not charged to the driver" if args.server == "process" else "its CPU charged to the driver"
    frozen = "gc.freeze() after warm-up, " if args.gc_freeze else ""
    print(f"{os.cpu_count()} CPUs, latency {args.latency * 1000:.0f} ms, server in a {args.server} ({charged}), "
          f"client connects to {args.host}, "
          f"median of {args.repeat} fresh runs after 1 warm-up, {frozen}"
          f"load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"{'kind':<5} {'N':>4} {'wall s':>8} {'ideal s':>8} {'ratio':>6} {'best s':>7} {'best ratio':>10} "
          f"{'driver CPU ms/sub-call':>23} {'server CPU ms/request':>22}")
    for kind, n, wall, best, ideal, cpu, server_cpu in rows:
        served = "n/a" if server_cpu is None else f"{server_cpu / (n + 2) * 1000:.2f}"
        print(f"{kind:<5} {n:>4} {wall:>8.3f} {ideal:>8.3f} {wall / ideal:>6.2f} {best:>7.3f} {best / ideal:>10.2f} "
              f"{cpu / n * 1000:>23.2f} {served:>22}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
