"""What an eval prints and draws: the summary table (per task x size x mode) and ``--plot``."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import define


@define(frozen=True, kw_only=True)
class Cell:
    """One (task, size, mode) of the summary."""

    task: str
    size: str
    target_tokens: int
    mode: str
    n: int
    mean_score: float
    overflow: int
    failed: int
    cost_per_query: float | None  # None: some item's cost is unknown (no price)
    p50_s: float | None
    p95_s: float | None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by the nearest-rank rule; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summarize(rows: Sequence[Mapping[str, Any]]) -> list[Cell]:
    """One :class:`Cell` per (task, size, mode), in the order the rows first name them."""
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["size"], r["mode"]), []).append(r)
    cells = []
    for (task, size, mode), group in groups.items():
        costs = [r.get("total_cost_usd") for r in group]
        times = [r["duration_s"] for r in group if isinstance(r.get("duration_s"), (int, float)) and not r["overflow"]]
        known = all(isinstance(c, (int, float)) for c in costs)
        cells.append(Cell(task=task, size=size, target_tokens=int(group[0]["target_tokens"]), mode=mode, n=len(group),
                          mean_score=sum(float(r["score"]) for r in group) / len(group),
                          overflow=sum(1 for r in group if r["overflow"]),
                          failed=sum(1 for r in group if r.get("status") != "ok" and not r["overflow"]),
                          cost_per_query=sum(costs) / len(group) if known else None,  # type: ignore[arg-type]
                          p50_s=percentile(times, 0.5), p95_s=percentile(times, 0.95)))
    return cells


def table(cells: Sequence[Cell]) -> str:
    """The summary as plain text columns (overflowed runs score 0 and are marked ``*``, as in the paper)."""
    head = f"{'task':<7} {'size':>6} {'mode':<5} {'n':>4} {'score':>7} {'overflow':>8} {'failed':>6} " \
           f"{'$/query':>9} {'p50 s':>7} {'p95 s':>7}"
    lines = [head, "-" * len(head)]
    for c in cells:
        cost = "?" if c.cost_per_query is None else f"{c.cost_per_query:.4f}"
        star = "*" if c.overflow else " "
        lines.append(f"{c.task:<7} {c.size:>6} {c.mode:<5} {c.n:>4} {c.mean_score * 100:>6.1f}{star} {c.overflow:>8} "
                     f"{c.failed:>6} {cost:>9} {_seconds(c.p50_s):>7} {_seconds(c.p95_s):>7}")
    lines.append("score: mean x 100 (exact match, 0.75^|error| for numbers, F1 for pairs); * some inputs overflowed "
                 "the context window (scored 0)")
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def check_plot_support() -> None:
    """Raise :class:`rlm.errors.PluginError` naming the install when matplotlib is missing (checked before
    an eval starts, not after it ran)."""
    from rlm.errors import PluginError

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PluginError("--plot needs matplotlib, which is not installed",
                          fix="pip install 'rlm-eval[plot]' (or drop --plot)") from None


def plot(cells: Sequence[Cell], path: str | os.PathLike[str]) -> None:
    """Score, cost per query and median time per query vs input length (one line per task and mode), to
    ``path``; the time panel is what tells modes apart when the model is free (a local one)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, (left, right, timed) = plt.subplots(1, 3, figsize=(16, 4.2))
    for task in dict.fromkeys(c.task for c in cells):
        for mode in dict.fromkeys(c.mode for c in cells):
            series = sorted((c for c in cells if c.task == task and c.mode == mode), key=lambda c: c.target_tokens)
            if not series:
                continue
            label = f"{task} {mode}"
            style = "-o" if mode == "rlm" else "--s"
            left.plot([c.target_tokens for c in series], [c.mean_score * 100 for c in series], style, label=label)
            for c in series:
                if c.overflow:
                    left.annotate("*", (c.target_tokens, c.mean_score * 100), textcoords="offset points",
                                  xytext=(4, 4))
            priced = [c for c in series if c.cost_per_query is not None]
            if priced:
                right.plot([c.target_tokens for c in priced], [c.cost_per_query for c in priced], style, label=label)
            answered = [c for c in series if c.p50_s is not None]  # all overflowed: nothing was sent
            if answered:
                timed.plot([c.target_tokens for c in answered], [c.p50_s for c in answered], style, label=label)
    timed.set_yscale("log")
    for axis, title, ylabel in ((left, "score vs input length", "score (x100)"),
                                (right, "cost per query vs input length", "USD per query"),
                                (timed, "median time per query vs input length", "seconds (p50)")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("input length (tokens)")
        axis.set_ylabel(ylabel)
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=8)
    left.set_ylim(-5, 105)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
