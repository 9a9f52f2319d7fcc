"""Startup benchmark: wall time of ``rlm --help``, ``python -c "import rlm"`` and ``rlm version``.

Runs each command N times in fresh subprocesses (the ``rlm`` script and the
Python of the current venv, with whatever plugins are installed there) and
prints the median and min wall time, with ``python -c pass`` as the floor.
Then reports which heavy modules each of them imported (none expected) and
whether the CLI framework / logging library were imported.  No assertions.

    python bench/startup.py            # 20 runs each
    python bench/startup.py -n 50
"""

from __future__ import annotations

import argparse
import json
import os
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


def time_runs(cmd: list[str], runs: int) -> list[float]:
    """Wall seconds of ``runs`` executions of ``cmd`` (after one warm-up run)."""
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return times


def imported_modules(python: str, code: str) -> set[str]:
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
        "rlm --help": [rlm, "--help"],
        'python -c "import rlm"': [args.python, "-c", "import rlm"],
        "rlm version": [rlm, "version"],
    }
    print(f"interpreter: {args.python}\nrlm script:  {rlm}\nruns:        {args.runs} (after 1 warm-up)\n")
    print(f"{'command':<28}{'median ms':>10}{'min ms':>10}{'max ms':>10}")
    for label, cmd in commands.items():
        times = time_runs(cmd, args.runs)
        print(f"{label:<28}{statistics.median(times) * 1000:>10.1f}{min(times) * 1000:>10.1f}"
              f"{max(times) * 1000:>10.1f}")

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
