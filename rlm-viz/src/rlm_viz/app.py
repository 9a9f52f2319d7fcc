"""The Streamlit script of ``rlm visualize`` (run by ``streamlit run``; all data work is in the data layer).

Sections: the run picker (sidebar, newest first, searchable; a Batch box narrows it to one
``rlm batch`` when any listed run belongs to one), the run header
with errors highlighted, the execution tree (one expander per call, indented
by depth), and charts (Altair) of tokens per call, where time went, tool use
and cost by model and depth.  A run with no ``run_end`` yet is re-read from
its last offset every :data:`REFRESH_S` seconds (``st.fragment(run_every=...)``).
What is rendered is capped (:data:`MAX_NODES`, :data:`MAX_STEPS`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys

import altair as alt
import streamlit as st

from rlm_viz import stats
from rlm_viz.model import Call, RunSummary, Step, Trajectory
from rlm_viz.reader import CHUNK, TrajectoryLoader
from rlm_viz.runs import batch_groups, list_runs

REFRESH_S = 2.0
MAX_NODES = 150
MAX_STEPS = 60


def log_dir() -> str:
    """``--dir`` after ``--`` on the command line, else ``RLM_VIZ_DIR``, else ``logs``."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--dir")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args.dir or os.environ.get("RLM_VIZ_DIR") or "logs"


@st.cache_resource(max_entries=8)
def loader(path: str) -> TrajectoryLoader:
    return TrajectoryLoader(path)


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def runs(directory: str, query: str) -> list[RunSummary]:
    return list_runs(directory, query=query)


def load(path: str) -> Trajectory:
    """Read what is new in ``path`` (a progress bar on a large first read)."""
    ld = loader(path)
    if ld.size - ld.offset > CHUNK:
        bar = st.progress(0.0, text="reading trajectory…")
        while ld.update(CHUNK):
            bar.progress(min(ld.offset / max(ld.size, 1), 1.0), text=f"reading trajectory… {ld.offset >> 20} MiB")
        bar.empty()
    else:
        ld.update()
    return ld.snapshot()


def fmt_cost(cost: float | None) -> str:
    return "—" if cost is None else f"${cost:.4f}"


def picker(directory: str) -> RunSummary | None:
    st.sidebar.title("rlm trajectories")
    st.sidebar.caption(f"`{directory}`")
    query = st.sidebar.text_input("Search runs", key="search", placeholder="task, model, id, status…")
    rows = runs(directory, query)
    if not rows:
        st.sidebar.info("no runs match" if query else "no trajectories here yet")
        return None
    rows = batch_filter(rows)
    labels = {r.trajectory_id: r for r in rows}
    chosen = st.sidebar.selectbox(
        "Run", list(labels), key="run",
        format_func=lambda tid: f"{'❌ ' if labels[tid].status == 'error' else ''}{labels[tid].task[:60]}  ·  {tid}")
    st.sidebar.dataframe(
        [{"task": r.task[:80], "status": r.status, "model": r.model,
          "started": dt.datetime.fromtimestamp(r.started).strftime("%Y-%m-%d %H:%M:%S"),
          "cost": fmt_cost(r.cost), "tokens": r.tokens, "duration_s": r.duration_s, "id": r.trajectory_id,
          **({"batch": r.batch_id} if any(x.batch_id for x in rows) else {})}
         for r in rows], hide_index=True)
    return labels.get(chosen) if chosen else None


def batch_filter(rows: list[RunSummary]) -> list[RunSummary]:
    """The "Batch" box (only when a listed run belongs to a batch): the rows of the chosen batch,
    or all of them ("all runs", the option ``""``; a batch id is never empty)."""
    groups = {g.batch_id: g for g in batch_groups(rows)}
    if not groups:
        return rows
    chosen = st.sidebar.selectbox("Batch", ["", *groups], key="batch",
                                  format_func=lambda b: groups[b].label if b in groups else "all runs")
    return [r for r in rows if r.batch_id == chosen] if chosen in groups else rows


def header(t: Trajectory, summary: RunSummary) -> None:
    st.header(summary.task[:200] or t.trajectory_id)
    total = stats.totals(t)
    st.caption(f"`{t.trajectory_id}` · model `{t.start.get('model', '?')}` · environment "
               f"`{t.start.get('environment', '?')}` · protocol `{t.start.get('protocol', '?')}`"
               + (f" · batch `{summary.batch_id}`" if summary.batch_id else ""))
    cols = st.columns(5)
    cols[0].metric("Status", "running" if t.live else summary.status)
    cols[1].metric("Tokens", f"{total['tokens']:,}", help=f"in {total['input_tokens']:,} / out {total['output_tokens']:,}")
    cols[2].metric("Cost", fmt_cost(total["cost"]))
    cols[3].metric("Duration", f"{(total['duration_ms'] or 0) / 1000:.1f} s")
    cols[4].metric("Calls", f"{total['calls']} ({total['llm_calls']} LLM)")
    if t.live:
        st.info(f"Live: no run_end yet — re-reading new lines every {REFRESH_S:g} s "
                f"({t.events} events, {t.bytes_read >> 10} KiB read).")
    for call_id, message in t.errors[:20]:
        st.error(f"**{call_id}** — {message}", icon="🚨")
    if len(t.errors) > 20:
        st.error(f"… and {len(t.errors) - 20} more errors")
    if t.bad_lines:
        st.warning(f"{t.bad_lines} unreadable lines were skipped.")


def step_view(s: Step) -> None:
    if s.type == "llm_call":
        st.markdown(f"**LLM** `{s.model}` · {s.input_tokens:,} in / {s.output_tokens:,} out · "
                    f"{fmt_cost(s.cost)} · {s.duration_ms:,.0f} ms")
        if s.text("response"):
            st.text(s.text("response"))
        for u in s.tools:
            st.markdown(f"→ tool call `{u.name}`")
            st.code(u.arguments, language="json")
    elif s.type == "repl_execution":
        st.markdown(f"**REPL** · {s.duration_ms:,.0f} ms")
        st.code(s.text("code"), language="python")
        if s.text("output"):
            st.code(s.text("output"), language="text")
        if s.text("value"):
            st.caption(f"value: {s.text('value')[:500]}")
        if s.error:
            st.error(s.error)
    elif s.type == "tool_results":
        for u in s.tools:
            line = f"**tool** `{u.name}` · {u.duration_ms:,.0f} ms"
            (st.error if u.is_error else st.markdown)(line + (" — failed" if u.is_error else ""))
            st.text(u.content[:2000])
    elif s.type == "error":
        st.error(s.error or "error")
    elif s.type == "limit_hit":
        st.warning(f"limit hit: {s.text('limit')}")
    elif s.type == "no_answer":
        st.error(s.error or "no answer")
    elif s.type == "repeated_code":
        st.warning(s.text("repeated"))
        st.code(s.text("code"), language="python")
    elif s.type == "context_injected":
        st.markdown(f"**context** · {s.text('context')}")
        st.caption(f"query: {s.text('query')}")
        if s.error:
            st.warning(f"context provider failed: {s.error}")
    elif s.type in ("call_end", "run_end"):
        st.markdown(f"**answer** · {s.duration_ms:,.0f} ms")
        st.text(s.text("response"))
        if s.error:
            st.error(s.error)
    elif s.type in ("call_start", "run_start"):
        st.markdown("**prompt**")
        st.text(s.text("prompt"))
    else:
        st.caption(f"{s.type}: {' '.join(t for _, t in s.texts)[:500]}")


def call_label(c: Call) -> str:
    mark = "❌ " if c.errors else ("⏳ " if not c.finished else "")
    indent = "↳ " * c.depth
    return (f"{indent}{mark}{c.label} · depth {c.depth} · {c.total_tokens:,} tok · {fmt_cost(c.cost)} · "
            f"{c.duration_ms / 1000:.1f} s · {len(c.children)} sub-calls")


def tree(t: Trajectory) -> None:
    calls = t.walk()
    if len(calls) > MAX_NODES:
        st.caption(f"showing the first {MAX_NODES} of {len(calls)} calls")
    for c in calls[:MAX_NODES]:
        box = st.columns([min(c.depth, 8), 40 - min(c.depth, 8)])[1] if c.depth else st.container()
        with box.expander(call_label(c), expanded=c.parent_call_id is None and len(calls) < 10):
            for s in c.steps[:MAX_STEPS]:
                step_view(s)
            if len(c.steps) > MAX_STEPS:
                st.caption(f"… {len(c.steps) - MAX_STEPS} more steps (see `rlm logs {t.trajectory_id}`)")


def charts(t: Trajectory) -> None:
    tok, dur, tools, cost = st.tabs(["Tokens", "Durations", "Tools", "Cost"])
    with tok:
        rows = stats.tokens_per_call(t)
        st.subheader("Tokens per call")
        st.altair_chart(alt.Chart(alt.Data(values=rows)).mark_bar().encode(
            x=alt.X("call:N", sort=None, title="call"), y=alt.Y("tokens:Q"), color=alt.Color("kind:N"),
            tooltip=["call:N", "kind:N", "tokens:Q", "depth:Q"]))
    with dur:
        st.subheader("Where time went")
        st.altair_chart(alt.Chart(alt.Data(values=stats.time_by_category(t))).mark_bar().encode(
            x=alt.X("category:N"), y=alt.Y("ms:Q", title="milliseconds"), color="category:N",
            tooltip=["category:N", "ms:Q"]))
        st.altair_chart(alt.Chart(alt.Data(values=stats.time_per_call(t))).mark_bar().encode(
            y=alt.Y("call:N", sort="-x"), x=alt.X("ms:Q", title="milliseconds"), color="category:N",
            tooltip=["call:N", "category:N", "ms:Q"]))
        st.caption("Tool and REPL time include the sub-calls made from them.")
        st.dataframe(stats.slowest_steps(t), hide_index=True)
    with tools:
        st.subheader("Tool distribution")
        rows = stats.tool_distribution(t)
        if rows:
            st.altair_chart(alt.Chart(alt.Data(values=rows)).mark_bar().encode(
                x=alt.X("calls:Q"), y=alt.Y("tool:N", sort="-x"), tooltip=["tool:N", "calls:Q", "errors:Q", "ms:Q"],
                color=alt.condition("datum.errors > 0", alt.value("#d62728"), alt.value("#1f77b4"))))
        else:
            st.caption("no tool calls")
    with cost:
        st.subheader("Cost by model")
        st.altair_chart(alt.Chart(alt.Data(values=stats.cost_by_model(t))).mark_bar().encode(
            x=alt.X("model:N"), y=alt.Y("cost:Q", title="USD"), tooltip=["model:N", "cost:Q", "tokens:Q", "llm_calls:Q"]))
        st.subheader("Cost by depth")
        st.altair_chart(alt.Chart(alt.Data(values=stats.cost_by_depth(t))).mark_bar().encode(
            x=alt.X("depth:O"), y=alt.Y("cost:Q", title="USD"), tooltip=["depth:O", "cost:Q", "tokens:Q", "calls:Q"]))


def run_view(summary: RunSummary, live: bool = False) -> None:
    t = load(summary.path)
    if live and not t.live:
        st.rerun()  # run_end arrived: leave the auto-refreshing fragment
    header(t, summary)
    st.subheader("Execution tree")
    tree(t)
    charts(t)


def main() -> None:
    st.set_page_config(page_title="rlm trajectories", page_icon="🌳", layout="wide")
    directory = log_dir()
    if not os.path.isdir(directory):
        st.error(f"No trajectory directory {directory!r}: pass `rlm visualize --dir <your log directory>` "
                 "(default ./logs; `rlm run` writes there).")
        return
    summary = picker(directory)
    if summary is None:
        st.title("rlm trajectories")
        st.info(f"No runs to show in {directory}. Run `rlm run \"...\"` to record one.")
        return
    live = loader(summary.path).snapshot().live if loader(summary.path).offset else summary.status in (
        "running", "incomplete")
    if live:
        st.fragment(run_every=REFRESH_S)(run_view)(summary, live=True)
    else:
        run_view(summary)


main()
