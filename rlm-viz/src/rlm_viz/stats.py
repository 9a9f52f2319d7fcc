"""Aggregations for the charts, as lists of plain dict rows (Altair's ``alt.Data(values=...)`` or a DataFrame).

Time notes: LLM time is exact per call; tool and REPL time of a call include
the sub-calls made from those tools or from ``llm_query`` inside the REPL, so
per-category totals over all calls count nested time once per level.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from typing import Any

from rlm_viz.model import Call, Trajectory

Row = dict[str, Any]


#: how many calls a per-call chart shows by name; the rest are one "others" bar
TOP_CALLS = 15
#: bars of a histogram of calls
BINS = 20


def _name(c: Call) -> str:
    return f"{c.call_id} (d{c.depth})"


def tokens_per_call(t: Trajectory, *, limit: int = TOP_CALLS) -> list[Row]:
    """Long format: one row per (call, kind) with kind ``input``/``output``: the ``limit`` calls with the
    most tokens, in the run's order, then one ``others (N calls)`` row pair summing the rest."""
    walk = t.walk()
    top = {c.call_id for c in sorted(walk, key=lambda c: c.total_tokens, reverse=True)[:limit]}
    rows = []
    for c in walk:
        if c.call_id in top:
            rows.append({"call": _name(c), "kind": "input", "tokens": c.input_tokens, "depth": c.depth})
            rows.append({"call": _name(c), "kind": "output", "tokens": c.output_tokens, "depth": c.depth})
    rest = [c for c in walk if c.call_id not in top]
    if rest:
        name = f"others ({len(rest):,} calls)"
        rows.append({"call": name, "kind": "input", "tokens": sum(c.input_tokens for c in rest), "depth": None})
        rows.append({"call": name, "kind": "output", "tokens": sum(c.output_tokens for c in rest), "depth": None})
    return rows


def histogram(values: list[float], *, bins: int = BINS) -> list[Row]:
    """``values`` counted in ``bins`` bins: rows ``{"bin", "from", "to", "calls"}`` in order, empty bins
    included; [] for no values, one bin when they are all equal.  Values spread over more than two
    orders of magnitude (a top call next to a thousand small sub-calls) get bins of equal ratio, not
    width, so the small ones do not all land in the first bin."""
    if not values:
        return []
    low, high = min(values), max(values)
    if high == low:
        return [{"bin": _fmt(low), "from": low, "to": high, "calls": len(values)}]
    positive = [v for v in values if v > 0]
    if positive and low >= 0 and high / min(positive) > 100:
        first = min(positive)
        ratio = (high / first) ** (1 / bins)
        edges = [0.0 if (i == 0 and low == 0) else first * ratio ** i for i in range(bins)] + [high]
    else:
        edges = [low + (high - low) * i / bins for i in range(bins)] + [high]
    counts = [0] * bins
    for v in values:
        i = bisect.bisect_right(edges, v) - 1
        counts[min(max(i, 0), bins - 1)] += 1
    return [{"bin": f"{_fmt(edges[i])}–{_fmt(edges[i + 1])}", "from": round(edges[i], 3),
             "to": round(edges[i + 1], 3), "calls": n} for i, n in enumerate(counts)]


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def tokens_histogram(t: Trajectory) -> list[Row]:
    """How many calls spent how many tokens (:func:`histogram` of the calls' total tokens)."""
    return histogram([float(c.total_tokens) for c in t.calls.values()])


def duration_histogram(t: Trajectory) -> list[Row]:
    """How many calls took how many seconds (:func:`histogram` of the calls' durations)."""
    return histogram([c.duration_ms / 1000 for c in t.calls.values()])


def time_by_category(t: Trajectory) -> list[Row]:
    """Total milliseconds in LLM calls, tools and REPL executions over the run."""
    totals = {"LLM": 0.0, "tools": 0.0, "REPL": 0.0}
    for c in t.calls.values():
        totals["LLM"] += c.llm_ms
        totals["tools"] += c.tool_ms
        totals["REPL"] += c.repl_ms
    return [{"category": k, "ms": round(v, 3)} for k, v in totals.items()]


def time_per_call(t: Trajectory, *, limit: int = TOP_CALLS) -> list[Row]:
    """Long format: per call, milliseconds in LLM, tools, REPL: the ``limit`` slowest calls, slowest
    first, then one ``others (N calls)`` row per category summing the rest."""
    def spent(c: Call) -> float:
        return c.llm_ms + c.tool_ms + c.repl_ms

    walk = sorted(t.walk(), key=spent, reverse=True)
    rows = []
    for c in walk[:limit]:
        for category, ms in (("LLM", c.llm_ms), ("tools", c.tool_ms), ("REPL", c.repl_ms)):
            rows.append({"call": _name(c), "category": category, "ms": round(ms, 3)})
    rest = walk[limit:]
    if rest:
        name = f"others ({len(rest):,} calls)"
        for category, attr in (("LLM", "llm_ms"), ("tools", "tool_ms"), ("REPL", "repl_ms")):
            rows.append({"call": name, "category": category, "ms": round(sum(getattr(c, attr) for c in rest), 3)})
    return rows


def slowest_steps(t: Trajectory, *, limit: int = 20) -> list[Row]:
    """The ``limit`` longest single steps (LLM calls, REPL executions, tool batches)."""
    steps = [s for c in t.calls.values() for s in c.steps if s.type in ("llm_call", "repl_execution", "tool_results")]
    steps.sort(key=lambda s: s.duration_ms, reverse=True)
    return [{"call": s.call_id, "step": s.type, "ms": round(s.duration_ms, 3),
             "detail": (s.model or ", ".join(u.name for u in s.tools) or s.text("code")[:80])}
            for s in steps[:limit]]


def tool_distribution(t: Trajectory) -> list[Row]:
    """Per tool name: how many calls, how many failed, total milliseconds; each code run is counted once
    (as ``execute_code`` in the tools protocol, as ``(REPL code block)`` in the repl protocol)."""
    count: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    ms: defaultdict[str, float] = defaultdict(float)
    for c in t.calls.values():
        for s in c.steps:
            if s.type != "tool_results":
                continue
            for u in s.tools:
                count[u.name] += 1
                failed[u.name] += int(u.is_error)
                ms[u.name] += u.duration_ms
        # a REPL execution is a tool of its own only where no execute_code tool call ran it (the repl
        # protocol's code blocks); in the tools protocol it is the execute_code result, counted above
        runs = [s for s in c.steps if s.type == "repl_execution"]
        by_tool = sum(1 for s in c.steps if s.type == "tool_results" for u in s.tools if u.name == "execute_code")
        blocks = runs[by_tool:]
        if blocks:
            count["(REPL code block)"] += len(blocks)
            failed["(REPL code block)"] += sum(1 for s in blocks if s.error)
            ms["(REPL code block)"] += sum(s.duration_ms for s in blocks)
    return [{"tool": name, "calls": n, "errors": failed[name], "ms": round(ms[name], 3)}
            for name, n in count.most_common()]


def cost_by_model(t: Trajectory) -> list[Row]:
    """Cost, tokens and LLM calls per model."""
    acc: dict[str, Row] = {}
    for c in t.calls.values():
        for s in c.steps:
            if s.type != "llm_call":
                continue
            row = acc.setdefault(s.model or "?", {"model": s.model or "?", "cost": 0.0, "tokens": 0, "llm_calls": 0})
            row["cost"] += s.cost or 0.0
            row["tokens"] += s.input_tokens + s.output_tokens
            row["llm_calls"] += 1
    return sorted(acc.values(), key=lambda r: (-r["cost"], -r["tokens"]))


def cost_by_depth(t: Trajectory) -> list[Row]:
    """Cost, tokens and calls per recursion depth."""
    acc: dict[int, Row] = {}
    for c in t.calls.values():
        row = acc.setdefault(c.depth, {"depth": c.depth, "cost": 0.0, "tokens": 0, "calls": 0})
        row["cost"] += c.cost
        row["tokens"] += c.total_tokens
        row["calls"] += 1
    return [acc[d] for d in sorted(acc)]


def totals(t: Trajectory) -> Row:
    """Run totals: from ``run_end`` when written, else summed over what was read."""
    calls = list(t.calls.values())
    llm = sum(1 for c in calls for s in c.steps if s.type == "llm_call")
    summed = {"input": sum(c.input_tokens for c in calls), "output": sum(c.output_tokens for c in calls)}
    end = t.end or {}
    usage = end.get("token_usage") or {}
    return {
        "tokens": usage.get("total", summed["input"] + summed["output"]),
        "input_tokens": usage.get("input", summed["input"]),
        "output_tokens": usage.get("output", summed["output"]),
        "cost": end.get("cost") if t.end is not None else sum(c.cost for c in calls),
        "duration_ms": end.get("duration_ms") if t.end is not None else
        max((c.duration_ms for c in calls if c.parent_call_id is None), default=0.0),
        "calls": len(calls),
        "llm_calls": llm,
        "errors": len(t.errors),
    }
