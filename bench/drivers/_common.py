"""Stdlib-only helpers shared by the two drivers (each runs in its own venv; nothing rlm is imported here)."""

from __future__ import annotations

import json
import os
import resource
import sys
import time

# what the scripted server replies to a run is decided from the prompt (see bench/drivers/server.py)
NOOP_CODE = "x = 1"
EXEC_CODE = "total = sum(range(100))\nprint(total)"


def prompt(kind: str, n: int, side: str) -> str:
    return f"BENCH {kind} n={n} side={side}"


def emit(obj: object) -> None:
    sys.stdout.write("\nRESULT=" + json.dumps(obj) + "\n")
    sys.stdout.flush()


def peak_rss_mib() -> dict:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"self_mib": own, "children_mib": kids}


def quiet_env() -> None:
    # litellm otherwise tries to download its model-price map at import (no internet here)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench")


class Timer:
    def __enter__(self):
        self.t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.s = time.perf_counter() - self.t
