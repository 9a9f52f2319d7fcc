"""Startup benchmark: wall and CPU time of ``rlm --help``, ``python -c "import rlm"`` and ``rlm version``.

Runs each command N times in fresh subprocesses (the ``rlm`` script and the
Python of the current venv, with whatever plugins are installed there), the
commands taking turns (round-robin, so a change of load on the machine hits all
of them alike), and prints the median and min wall time and the median CPU time
(user + system of the child, from ``resource.getrusage(RUSAGE_CHILDREN)``
deltas; CPU time is what a loaded machine does not inflate), with ``python -c
pass`` as the floor and ``python -c "import re"``: what the ``rlm`` script pip
writes imports before ours (``import re``, for its ``sys.argv[0]`` rewrite).
Then the CPU time of one entry-point discovery (group ``rlm``, fresh process,
import included) by the kernel's own scan (``rlm.entrypoints``) and by the
``importlib_metadata`` backport.  Then reports which heavy modules each of
them imported (none expected) and whether the CLI framework / logging library
were imported.  No assertions.

    python bench/startup.py            # 20 runs each
    python bench/startup.py -n 50
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("litellm", "openai", "anthropic", "docker", "wasmtime", "streamlit", "mcp", "httpx", "pydantic")
NOTABLE = ("structlog", "cyclopts", "rich", "cattrs", "importlib.metadata")

DUMP = "import json, sys; sys.__stderr__.write('\\nMODULES=' + json.dumps(sorted(sys.modules)))"
PROBES = {
    "rlm --help": "import contextlib, io\nfrom rlm.cli import main\n"
                  "with contextlib.redirect_stdout(io.StringIO()):\n    main(['--help'])\n",
    "import rlm": "import rlm\n",
    "rlm version": "import contextlib, io\nfrom rlm.cli import main\n"
                   "with contextlib.redirect_stdout(io.StringIO()):\n    main(['version'])\n",
}


def find_rlm_script(python: str) -> str:
    candidate = Path(python).parent / ("rlm.exe" if os.name == "nt" else "rlm")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("rlm")
    if not found:
        sys.exit("no `rlm` script found next to the interpreter or on PATH: pip install -e kernel")
    return found


def interleaved_runs(commands: dict[str, list[str]], runs: int) -> dict[str, tuple[list[float], list[float]]]:
    """``label -> (wall seconds, CPU seconds)`` of ``runs`` executions of each command, taking turns
    (after one warm-up run of each)."""
    for cmd in commands.values():
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    out: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label in commands}
    for _ in range(runs):
        for label, cmd in commands.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            out[label][0].append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            out[label][1].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return out


def cpu_runs(cmd: list[str], runs: int) -> list[float]:
    """CPU seconds (user + system) of ``runs`` executions of ``cmd`` (after one warm-up run)."""
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    times = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return times


#: One discovery of the ``rlm`` entry points, in a fresh process, import of the reader included.
DISCOVERY = {  # label: (import, expression giving the entry points)
    "python -c pass (floor)": ("pass", "()"),
    "rlm.entrypoints scan": ("from rlm.entrypoints import entry_points", "entry_points('rlm')"),
    "importlib_metadata": ("import importlib_metadata", "importlib_metadata.entry_points(group='rlm')"),
    "importlib.metadata (stdlib)": ("import importlib.metadata", "importlib.metadata.entry_points(group='rlm')"),
}


def imported_modules(python: str, code: str) -> set[str]:
    """Modules ``code`` imported, on its second run (the first one fills the help cache of this ``sys.path``)."""
    subprocess.run([python, "-c", code], capture_output=True, check=False)
    result = subprocess.run([python, "-c", code + DUMP], capture_output=True, text=True, check=False)
    marker = result.stderr.rfind("MODULES=")
    if marker < 0:
        print(f"  (probe failed: {result.stderr.strip()[-300:]})")
        return set()
    return set(json.loads(result.stderr[marker + len("MODULES="):]))


def matching(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted({n for n in names for m in modules if m == n or m.startswith(n + ".")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=20, help="runs per command (default 20)")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the venv to measure")
    args = parser.parse_args()

    rlm = find_rlm_script(args.python)
    commands = {
        "python -c pass (floor)": [args.python, "-c", "pass"],
        'python -c "import re"': [args.python, "-c", "import re"],
        "rlm --help": [rlm, "--help"],
        'python -c "import rlm"': [args.python, "-c", "import rlm"],
        "rlm version": [rlm, "version"],
    }
    print(f"interpreter: {args.python}\nrlm script:  {rlm}\nruns:        {args.runs} (after 1 warm-up)\n")
    print(f"{'command':<28}{'median ms':>10}{'min ms':>10}{'max ms':>10}{'CPU med ms':>12}{'CPU min ms':>12}")
    for label, (times, cpu) in interleaved_runs(commands, args.runs).items():
        print(f"{label:<28}{statistics.median(times) * 1000:>10.1f}{min(times) * 1000:>10.1f}"
              f"{max(times) * 1000:>10.1f}{statistics.median(cpu) * 1000:>12.1f}{min(cpu) * 1000:>12.1f}")

    print("\nentry-point discovery (group 'rlm'), CPU of a fresh process doing one discovery")
    print(f"{'reader':<30}{'CPU med ms':>12}{'CPU min ms':>12}{'minus floor':>12}{'entry points':>14}")
    floor = None
    for label, (setup, expr) in DISCOVERY.items():
        cpu = cpu_runs([args.python, "-c", f"{setup}\n{expr}"], args.runs)
        found = subprocess.run([args.python, "-c", f"{setup}\nprint(len(list({expr})))"],
                               capture_output=True, text=True, check=False)
        median = statistics.median(cpu) * 1000
        floor = median if floor is None else floor
        count = found.stdout.strip() or "-"
        print(f"{label:<30}{median:>12.1f}{min(cpu) * 1000:>12.1f}{median - floor:>12.1f}{count:>14}")

    print("\nmodules imported (heavy: none expected)")
    for label, code in PROBES.items():
        modules = imported_modules(args.python, code)
        heavy = matching(modules, HEAVY)
        notable = matching(modules, NOTABLE)
        plugins = sorted(m for m in modules if m.startswith("rlm_") and "." not in m)
        print(f"  {label:<14} {len(modules):>4} modules; heavy: {', '.join(heavy) or 'none'}; "
              f"also: {', '.join(notable) or 'none'}; plugin packages: {', '.join(plugins) or 'none'}")


if __name__ == "__main__":
    main()
