"""Merge the scored rows of several ``rlm eval`` runs into one table and plot (what bench/EVAL.md shows).

A measurement sometimes comes from more than one run: one mode re-run after a fix, or a slow size run on
its own.  Each row is one (item, mode); a later file's row replaces an earlier file's row for the same
(id, mode), so list the files in the order they were made.  Prints the same summary table as ``rlm eval``
and, with ``--plot``, draws the same figure (needs rlm-eval[plot]).

    python bench/eval_report.py run1.jsonl run2.jsonl -o merged.jsonl --plot merged.png
"""

from __future__ import annotations

import argparse
import json
import sys

from rlm_eval.report import plot, summarize, table
from rlm_eval.runner import write_rows


def merge(paths: list[str]) -> list[dict]:
    rows: dict[tuple[str, str], dict] = {}
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    row = json.loads(line)
                    rows[(row["id"], row["mode"])] = row
    # the order rlm eval writes: by task, size and item, then mode
    return sorted(rows.values(), key=lambda r: (r["task"], r["target_tokens"], r["id"], r["mode"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="+", help="rows files written by rlm eval -o, oldest first")
    parser.add_argument("-o", "--output", help="write the merged rows here")
    parser.add_argument("--plot", help="draw score, cost and time vs input length to this PNG")
    args = parser.parse_args(argv)
    rows = merge(args.rows)
    if args.output:
        write_rows(rows, args.output)
    cells = summarize(rows)
    print(table(cells))
    if args.plot:
        plot(cells, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
