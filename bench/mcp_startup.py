"""MCP startup benchmark: ``rlm mcp-serve`` spawn -> ``initialize`` answered.

Spawns ``rlm mcp-serve`` (stdio, the venv's ``rlm`` script, environment
``local``, in a temporary directory with an empty rlm.toml) N times, writes an
``initialize`` request at once, and measures the wall time from spawn until
the answer's line arrives on stdout, plus the CPU time (user + system, from
``/proc/PID/stat``) the server process used up to that moment.  Then each
server gets ``notifications/initialized`` and ``tools/list`` (timed too: the
first answer that needs the SDK) and stdin is closed.  ``python -c pass`` is
the floor.  Prints medians and mins; asserts nothing.

    python bench/mcp_startup.py            # 12 spawns
    python bench/mcp_startup.py -n 20
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from startup import find_rlm_script  # bench/ is on sys.path when this runs as a script

INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                         "clientInfo": {"name": "bench", "version": "0"}}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
LIST_TOOLS = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except (OSError, ValueError, IndexError):
        return None


def read_answer(proc: subprocess.Popen, wanted: int) -> dict:
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the server closed stdout: " + proc.stderr.read().decode()[-1500:])
        data = json.loads(line)
        if data.get("id") == wanted:
            return data


def one_spawn(cmd: list[str], cwd: str, env: dict[str, str]) -> tuple[float, float | None, float]:
    """(seconds to the initialize answer, server CPU seconds by then, seconds to the tools/list answer)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=cwd, env=env)
    try:
        proc.stdin.write((json.dumps(INITIALIZE) + "\n").encode())
        proc.stdin.flush()
        answer = read_answer(proc, 1)
        wall = time.perf_counter() - start
        cpu = cpu_seconds(proc.pid)
        if "result" not in answer:
            raise RuntimeError(f"initialize failed: {answer}")
        proc.stdin.write((json.dumps(INITIALIZED) + "\n" + json.dumps(LIST_TOOLS) + "\n").encode())
        proc.stdin.flush()
        read_answer(proc, 2)
        tools = time.perf_counter() - start
        proc.stdin.close()
        proc.wait(timeout=30)
        return wall, cpu, tools
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def floor(python: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([python, "-c", "pass"], check=False)
        times.append(time.perf_counter() - start)
    return times


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:7.1f} ms   min {min(values) * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=12, help="fresh spawns (default 12)")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the venv to measure")
    args = parser.parse_args()

    rlm = find_rlm_script(args.python)
    cmd = [rlm, "mcp-serve", "--env", "local"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLM_")}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "rlm.toml").write_text("")
        env["RLM_CONFIG"] = str(Path(tmp) / "rlm.toml")
        one_spawn(cmd, tmp, env)  # warm-up: page cache, .pyc files
        walls, cpus, tools = [], [], []
        for _ in range(args.runs):
            wall, cpu, tool = one_spawn(cmd, tmp, env)
            walls.append(wall)
            tools.append(tool)
            if cpu is not None:
                cpus.append(cpu)
    floor(args.python, 1)
    base = floor(args.python, args.runs)

    print(f"rlm mcp-serve startup, {args.runs} fresh spawns ({' '.join(cmd)})")
    print(f"  python -c pass (floor)              {ms(base)}")
    print(f"  spawn -> initialize answered        {ms(walls)}")
    if cpus:
        print(f"  server CPU by then (user+sys)       {ms(cpus)}")
    print(f"  spawn -> tools/list answered        {ms(tools)}")


if __name__ == "__main__":
    main()
