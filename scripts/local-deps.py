"""Prints `-e PATH` for each distribution of this repository that DIST depends on (dependencies and
its `test` extra), transitively, so pip installs them from the checkout instead of a package index.
The kernel and rlm-testing are left out: .ci/run installs them in every venv."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def local_dists() -> dict[str, Path]:
    out = subprocess.run(["bash", str(ROOT / "scripts/dists.sh")], capture_output=True, text=True, check=True)
    found = {}
    for rel in out.stdout.split() + ["plugins/_template"]:
        meta = tomllib.loads((ROOT / rel / "pyproject.toml").read_text())["project"]
        found[meta["name"].lower()] = ROOT / rel
    return found


def requirement_names(path: Path, *, with_test: bool) -> list[str]:
    project = tomllib.loads((path / "pyproject.toml").read_text())["project"]
    reqs = list(project.get("dependencies", []))
    if with_test:
        reqs += project.get("optional-dependencies", {}).get("test", [])
    return [re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower() for r in reqs]


def main(dist: str) -> None:
    dists = local_dists()
    start = (ROOT / dist).resolve()
    always = {ROOT / "kernel", ROOT / "plugins/rlm-testing"}  # .ci/run installs these in every venv
    todo, seen = [(start, True)], {start, *always}
    order: list[Path] = []
    while todo:
        path, with_test = todo.pop()
        for name in requirement_names(path, with_test=with_test):
            target = dists.get(name)
            if target is not None and target not in seen:
                seen.add(target)
                order.append(target)
                todo.append((target, False))
    print(" ".join(f"-e {p.relative_to(ROOT)}" for p in order))


if __name__ == "__main__":
    main(sys.argv[1])
