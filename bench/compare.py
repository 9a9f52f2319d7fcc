"""Side-by-side benchmark: rlm (this repo) against rlm-runtime 2.1.3, the product it replaces.

    python bench/compare.py                 # full run (~5 min), prints a markdown table
    python bench/compare.py --quick         # fewer repeats
    python bench/compare.py --write bench/RESULTS.md

Stdlib only; any Python 3.11 runs it.  It sets up, idempotently:
- ``bench/.venv-theirs``: a venv with ``rlm-runtime[mcp,docker,wasm]==2.1.3`` from PyPI;
- ``rlm-bench-theirs:ci``: ``rlm-sandbox:ci`` plus a ``python`` -> ``python3`` link (their Docker REPL
  runs ``python script.py``; the sandbox image only has ``python3``), so both run the same image.
Each side is measured in subprocesses running its own venv's python (drivers under bench/drivers/),
against the same scripted OpenAI-compatible server (bench/drivers/server.py, run with our venv),
one at zero latency and one at 200 ms.  Figures are medians over repeated runs; ratio = ours / theirs
(< 1: ours is faster / smaller).  Nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import select
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DRIVERS = BENCH / "drivers"
THEIRS_VENV = BENCH / ".venv-theirs"
THEIRS_SPEC = "rlm-runtime[mcp,docker,wasm]==2.1.3"
# their MCP server calls Server.list_tools, gone in mcp 2.x (pip resolves mcp>=1.0.0 to 2.x today:
# `rlm mcp-serve` then dies with AttributeError), so their venv pins the 1.x line
THEIRS_PINS = ("mcp<2",)
SANDBOX = "rlm-sandbox:ci"
THEIRS_IMAGE = "rlm-bench-theirs:ci"
ENV = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "OPENAI_API_KEY": "sk-bench", "PYTHONWARNINGS": "ignore"}


def log(msg: str) -> None:
    print(f"[compare] {msg}", file=sys.stderr, flush=True)


# --- set-up -----------------------------------------------------------------------------------


def ensure_theirs() -> Path:
    python = THEIRS_VENV / "bin" / "python"
    probe = [str(python), "-c", "import importlib.metadata as m; print(m.version('rlm-runtime'))"]
    probe[-1] += "; print(m.version('mcp'))"
    if python.exists() and subprocess.run(probe, capture_output=True, text=True).stdout.split()[:1] == ["2.1.3"] \
            and subprocess.run(probe, capture_output=True, text=True).stdout.split()[1:2] < ["2"]:
        return python
    log(f"creating {THEIRS_VENV} with {THEIRS_SPEC} (once)")
    base = sys.executable if sys.version_info[:2] == (3, 11) else (shutil.which("python3.11") or sys.executable)
    subprocess.run([base, "-m", "venv", str(THEIRS_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", THEIRS_SPEC, *THEIRS_PINS], check=True)
    return python


def ensure_theirs_image() -> str | None:
    """The image their DockerREPL can run, or None (with the reason logged) when Docker is unusable."""
    if not shutil.which("docker"):
        return None
    if subprocess.run(["docker", "image", "inspect", THEIRS_IMAGE], capture_output=True).returncode == 0:
        return THEIRS_IMAGE
    if subprocess.run(["docker", "image", "inspect", SANDBOX], capture_output=True).returncode != 0:
        log(f"no {SANDBOX} image: docker rows skipped")
        return None
    dockerfile = f'FROM {SANDBOX}\nUSER root\nRUN ln -sf "$(command -v python3)" /usr/local/bin/python\n'
    built = subprocess.run(["docker", "build", "-q", "-t", THEIRS_IMAGE, "-"], input=dockerfile, text=True,
                           capture_output=True)
    if built.returncode:
        log(f"cannot build {THEIRS_IMAGE}: {built.stderr.strip()[-300:]}")
        return None
    return THEIRS_IMAGE


class Server:
    def __init__(self, python: Path, latency: float) -> None:
        self.proc = subprocess.Popen([str(python), str(DRIVERS / "server.py"), "--latency", str(latency)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "URL":
            raise SystemExit("the scripted server did not start")
        self.url = line[1]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


# --- measurements -----------------------------------------------------------------------------


class Failed(Exception):
    pass


def driver(python: Path, side: str, *args: str, timeout: float = 900) -> dict:
    proc = subprocess.run([str(python), str(DRIVERS / f"{side}.py"), *args], capture_output=True, text=True,
                          env=ENV, timeout=timeout, cwd=_scratch())
    marker = proc.stdout.rfind("RESULT=")
    if proc.returncode or marker < 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise Failed(" / ".join(tail[-2:])[-300:] or f"exit {proc.returncode}")
    return json.loads(proc.stdout[marker + len("RESULT="):])


def _scratch() -> str:
    path = BENCH / ".scratch"  # cwd of the drivers: their config loader reads .env / rlm.toml / ./logs from it
    path.mkdir(exist_ok=True)
    return str(path)


def wall(cmd: list[str], runs: int) -> list[float]:
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=_scratch())
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, cwd=_scratch())
        times.append(time.perf_counter() - started)
        if proc.returncode:
            raise Failed(proc.stderr.decode(errors="replace").strip().splitlines()[-1][-300:])
    return times


INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-03-26", "capabilities": {},
                   "clientInfo": {"name": "rlm-bench", "version": "0"}}}


def mcp_initialize(rlm_script: Path, runs: int) -> list[float]:
    """Seconds from spawning ``rlm mcp-serve`` (stdio) to its answer to ``initialize``."""
    times = []
    for index in range(runs + 1):
        started = time.perf_counter()
        proc = subprocess.Popen([str(rlm_script), "mcp-serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=ENV, cwd=_scratch())
        try:
            proc.stdin.write((json.dumps(INIT) + "\n").encode())
            proc.stdin.flush()
            deadline = started + 60
            line = b""
            while time.perf_counter() < deadline:
                ready, _, _ = select.select([proc.stdout], [], [], 0.5)
                if ready:
                    line = proc.stdout.readline()
                    if not line or b'"id":1' in line.replace(b" ", b""):
                        break
                elif proc.poll() is not None:
                    break
            elapsed = time.perf_counter() - started
            if b'"result"' not in line:
                err = proc.stderr.read1(4000).decode(errors="replace") if proc.poll() is not None else ""
                raise Failed((err.strip().splitlines() or [line.decode(errors="replace") or "no answer"])[-1][-300:])
            if index:
                times.append(elapsed)
        finally:
            if proc.poll() is None:
                proc.stdin.close()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    return times


def med(values: list[float]) -> float:
    return statistics.median(values)


# --- the table --------------------------------------------------------------------------------


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []

    def add(self, name: str, unit: str, scale: float, ours, theirs, note: str = "") -> None:
        def cell(value) -> str:
            if isinstance(value, Failed):
                return f"cannot: {value}"
            return f"{med(value) * scale:.3f} {unit}" if med(value) * scale < 10 else f"{med(value) * scale:.1f} {unit}"

        ratio = "n/a"
        if not isinstance(ours, Failed) and not isinstance(theirs, Failed) and med(theirs) > 0:
            ratio = f"{med(ours) / med(theirs):.2f}"
        self.rows.append((name, cell(ours), cell(theirs), ratio, note))
        log(f"{name}: ours {cell(ours)} | theirs {cell(theirs)} | {ratio}")

    def markdown(self) -> str:
        lines = ["| measurement | ours (rlm) | theirs (rlm-runtime 2.1.3) | ours / theirs | notes |",
                 "|---|---|---|---|---|"]
        lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in self.rows]
        return "\n".join(lines)


def attempt(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Failed as exc:
        return exc
    except subprocess.TimeoutExpired as exc:
        return Failed(f"timed out after {exc.timeout:.0f} s")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--ours-python", default=str(ROOT / ".venv" / "bin" / "python"))
    parser.add_argument("--write", metavar="FILE", help="also write the table (markdown) to FILE")
    args = parser.parse_args()
    q = args.quick
    n_start, n_mcp, n_runs, n_batch = (3, 2, 2, 1) if q else (10, 5, 5, 3)
    n_warm, n_cold, n_docker_warm = (30, 2, 2) if q else (200, 5, 5)

    ours = Path(args.ours_python)
    theirs = ensure_theirs()
    theirs_image = ensure_theirs_image()
    started_at = datetime.datetime.now().astimezone()
    load_before = loadavg()
    log(f"{machine()}; load {load_before}")
    table = Table()

    # 1. start-up
    for label, make in (("CLI cold start: `rlm --help`", lambda py: [str(py.parent / "rlm"), "--help"]),
                        ('import time: `python -c "import rlm"`', lambda py: [str(py), "-c", "import rlm"])):
        table.add(label, "ms", 1000, attempt(wall, make(ours), n_start), attempt(wall, make(theirs), n_start),
                  f"wall time of a fresh process, median of {n_start} (after 1 warm-up)")
    table.add("MCP server: spawn `rlm mcp-serve` to `initialize` answered", "ms", 1000,
              attempt(mcp_initialize, ours.parent / "rlm", n_mcp), attempt(mcp_initialize, theirs.parent / "rlm", n_mcp),
              f"stdio, one JSON-RPC initialize; median of {n_mcp}")

    fast, slow = Server(ours, 0.0), Server(ours, 0.2)
    try:
        # 2. orchestrator
        turns = 50
        o = attempt(driver, ours, "ours", "turns", "--base-url", fast.url, "--kind", "noop", "--n", str(turns),
                    "--repeat", str(n_runs))
        t = attempt(driver, theirs, "theirs", "turns", "--base-url", fast.url, "--kind", "noop", "--n", str(turns),
                    "--repeat", str(n_runs))
        per_turn = [lambda r: [s / (turns + 1) for s in r["wall_s"]]]  # noqa: E731
        table.add(f"orchestrator: time per model turn ({turns} `noop` tool turns, 0 ms server)", "ms", 1000,
                  o if isinstance(o, Failed) else per_turn[0](o), t if isinstance(t, Failed) else per_turn[0](t),
                  f"run wall / {turns + 1} requests; HTTP + SDK + loop + logging; median of {n_runs} fresh runs")
        for env in ("local",):
            o = attempt(driver, ours, "ours", "turns", "--base-url", fast.url, "--kind", "exec", "--n", "20",
                        "--repeat", str(n_runs), "--env", env)
            t = attempt(driver, theirs, "theirs", "turns", "--base-url", fast.url, "--kind", "exec", "--n", "20",
                        "--repeat", str(n_runs), "--env", env)
            table.add(f"20-turn run, `execute_code` each turn ({env} env, 0 ms server)", "s", 1,
                      o if isinstance(o, Failed) else o["wall_s"], t if isinstance(t, Failed) else t["wall_s"],
                      "fresh RLM per run, environment started inside the run; 21 requests")
        o = attempt(driver, ours, "ours", "batch", "--base-url", slow.url, "--n", "50", "--repeat", str(n_batch))
        t = attempt(driver, theirs, "theirs", "batch", "--base-url", slow.url, "--n", "50", "--repeat", str(n_batch))
        ideal = 3 * 0.2
        note = "ideal 0.600 s (2 top-level turns + 1 overlapped round of 50, max_parallel 50)"
        for side, res in (("ours", o), ("theirs", t)):
            if not isinstance(res, Failed):
                note += f"; {side} {med(res['wall_s']) / ideal:.2f}x ideal"
        table.add("50 batched sub-calls (`rlm_batch_complete`) at 200 ms latency", "s", 1,
                  o if isinstance(o, Failed) else o["wall_s"], t if isinstance(t, Failed) else t["wall_s"], note)
        # 5. memory
        o = attempt(driver, ours, "ours", "memory", "--base-url", fast.url, "--n", "20")
        t = attempt(driver, theirs, "theirs", "memory", "--base-url", fast.url, "--n", "20")
        table.add("peak RSS of a process doing one 20-turn `execute_code` run (local env)", "MiB", 1,
                  o if isinstance(o, Failed) else [o["self_mib"]], t if isinstance(t, Failed) else [t["self_mib"]],
                  "ru_maxrss of the driver process (imports included; ours' REPL worker process not counted"
                  + ("" if isinstance(o, Failed) else f", its children peak {o['children_mib']:.0f} MiB") + ")")
    finally:
        fast.close()
        slow.close()

    # 4. environments
    for env in ("local", "docker", "wasm"):
        extra_o = ["--image", SANDBOX] if env == "docker" else []
        extra_t = ["--image", theirs_image or SANDBOX] if env == "docker" else []
        warm_t = n_docker_warm if env == "docker" else n_warm
        o = attempt(driver, ours, "ours", "env", "--kind", env, "--warm", str(n_warm), "--cold", str(n_cold), *extra_o)
        t = attempt(driver, theirs, "theirs", "env", "--kind", env, "--warm", str(warm_t), "--cold", str(n_cold),
                    *extra_t)
        notes = {"local": "ours: a sandboxed worker process; theirs: RestrictedPython exec() in the host process",
                 "docker": "theirs runs a new container per execute (no warm session)",
                 "wasm": ""}
        table.add(f"warm `execute_code` latency: {env}", "ms", 1000,
                  o if isinstance(o, Failed) else o["warm_s"], t if isinstance(t, Failed) else t["warm_s"],
                  f"`x = 1`, median of {n_warm} (theirs {warm_t}) in one session; " + notes[env])
        table.add(f"cold session start + first execute: {env}", "ms", 1000,
                  o if isinstance(o, Failed) else o["cold_s"], t if isinstance(t, Failed) else t["cold_s"],
                  f"median of {n_cold}, after the process's first session")

    finished_at = datetime.datetime.now().astimezone()
    header = (f"date: {started_at:%Y-%m-%d %H:%M %Z} (took {(finished_at - started_at).total_seconds():.0f} s)  \n"
              f"machine: {machine()}  \n"
              f"load average (1/5/15 min): {load_before} before, {loadavg()} after  \n"
              f"ours: {ours}  \ntheirs: {theirs} ({THEIRS_SPEC})  \n"
              f"command: python bench/compare.py{' --quick' if q else ''}\n")
    out = header + "\n" + table.markdown() + "\n"
    print(out)
    if args.write:
        Path(args.write).write_text(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
