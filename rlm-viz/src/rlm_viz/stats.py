"""Aggregations for the charts, as lists of plain dict rows (Altair's ``alt.Data(values=...)`` or a DataFrame).

Time notes: LLM time is exact per call; tool and REPL time of a call include
the sub-calls made from those tools or from ``llm_query`` inside the REPL, so
per-category totals over all calls count nested time once per level.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from rlm_viz.model import Trajectory

Row = dict[str, Any]


def tokens_per_call(t: Trajectory, *, limit: int = 200) -> list[Row]:
    """Long format: one row per (call, kind) with kind ``input``/``output``; the ``limit`` biggest calls."""
    calls = sorted(t.walk(), key=lambda c: c.total_tokens, reverse=True)[:limit]
    order = {c.call_id: i for i, c in enumerate(t.walk())}
    calls.sort(key=lambda c: order[c.call_id])
    rows = []
    for c in calls:
        name = f"{c.call_id} (d{c.depth})"
        rows.append({"call": name, "kind": "input", "tokens": c.input_tokens, "depth": c.depth})
        rows.append({"call": name, "kind": "output", "tokens": c.output_tokens, "depth": c.depth})
    return rows


def time_by_category(t: Trajectory) -> list[Row]:
    """Total milliseconds in LLM calls, tools and REPL executions over the run."""
    totals = {"LLM": 0.0, "tools": 0.0, "REPL": 0.0}
    for c in t.calls.values():
        totals["LLM"] += c.llm_ms
        totals["tools"] += c.tool_ms
        totals["REPL"] += c.repl_ms
    return [{"category": k, "ms": round(v, 3)} for k, v in totals.items()]


def time_per_call(t: Trajectory, *, limit: int = 200) -> list[Row]:
    """Long format: per call, milliseconds in LLM, tools, REPL (the ``limit`` slowest calls)."""
    calls = sorted(t.walk(), key=lambda c: c.llm_ms + c.tool_ms + c.repl_ms, reverse=True)[:limit]
    rows = []
    for c in calls:
        for category, ms in (("LLM", c.llm_ms), ("tools", c.tool_ms), ("REPL", c.repl_ms)):
            rows.append({"call": f"{c.call_id} (d{c.depth})", "category": category, "ms": round(ms, 3)})
    return rows


def slowest_steps(t: Trajectory, *, limit: int = 20) -> list[Row]:
    """The ``limit`` longest single steps (LLM calls, REPL executions, tool batches)."""
    steps = [s for c in t.calls.values() for s in c.steps if s.type in ("llm_call", "repl_execution", "tool_results")]
    steps.sort(key=lambda s: s.duration_ms, reverse=True)
    return [{"call": s.call_id, "step": s.type, "ms": round(s.duration_ms, 3),
             "detail": (s.model or ", ".join(u.name for u in s.tools) or s.text("code")[:80])}
            for s in steps[:limit]]


def tool_distribution(t: Trajectory) -> list[Row]:
    """Per tool name: how many calls, how many failed, total milliseconds."""
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
        repl = sum(1 for s in c.steps if s.type == "repl_execution")
        if repl:
            count["(REPL code block)"] += repl
            failed["(REPL code block)"] += sum(1 for s in c.steps if s.type == "repl_execution" and s.error)
            ms["(REPL code block)"] += c.repl_ms
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
