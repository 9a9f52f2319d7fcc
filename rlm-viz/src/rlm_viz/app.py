"""The Streamlit script of ``rlm visualize`` (run by ``streamlit run``; all data work is in the data layer).

Sections: the run picker (sidebar, newest first, searchable; a Batch box narrows it to one
``rlm batch`` when any listed run belongs to one), the run header
with errors highlighted, the execution tree (one expander per call, indented
by depth), and charts (Altair) of tokens per call, where time went, tool use
and cost by model and depth.  A run with no ``run_end`` yet is re-read from
its last offset every :data:`REFRESH_S` seconds (``st.fragment(run_every=...)``).

The browser gets one bounded screen (:mod:`rlm_viz.page`): the tree is paged by calls and each
call by steps; in a run of more than :data:`~rlm_viz.page.EAGER_CALLS` calls a call's steps, and
a tab's charts, are computed and sent only while it is open; texts are previews with a "full
text" toggle that reads the field back from the file and shows it a page at a time (or as a
download).  The parsed trajectory and the chart rows are cached per file and read offset,
shared by all sessions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import os
import sys

import altair as alt
import streamlit as st

from rlm_viz import page
from rlm_viz.model import Call, RunSummary, Step, Trajectory
from rlm_viz.reader import CHUNK, TrajectoryLoader
from rlm_viz.runs import batch_groups, list_runs

REFRESH_S = 2.0
#: this Streamlit can leave a closed expander's or tab's content out of the page (1.5x+)
LAZY = all("on_change" in inspect.signature(f).parameters for f in (st.expander, st.tabs))


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


@st.cache_resource(max_entries=8, show_spinner=False)
def prepared(path: str, offset: int) -> page.Prepared:
    """The snapshot of ``path`` read up to ``offset`` and its chart rows (shared by all sessions)."""
    return page.prepare(loader(path).snapshot())


@st.cache_resource(max_entries=4, show_spinner="finding the event in the file…")
def offsets(path: str, size: int, mtime_ns: int) -> list[int]:
    return page.event_offsets(path)


@st.cache_resource(max_entries=8, show_spinner="reading the full text…")
def full_text(path: str, size: int, mtime_ns: int, index: int, field: page.Field, _step: Step) -> str:
    """The whole ``field`` of event ``index`` (``_step``, not hashed: its index, file size and mtime are)."""
    return page.full_text(path, offsets(path, size, mtime_ns), _step, field)


def load(path: str) -> page.Prepared:
    """Read what is new in ``path`` (a progress bar on a large first read)."""
    ld = loader(path)
    if ld.size - ld.offset > CHUNK:
        bar = st.progress(0.0, text="reading trajectory…")
        while ld.update(CHUNK):
            bar.progress(min(ld.offset / max(ld.size, 1), 1.0), text=f"reading trajectory… {ld.offset >> 20} MiB")
        bar.empty()
    else:
        ld.update()
    return prepared(path, ld.offset)


def pager(pages: int, key: str) -> int:
    """The chosen page (1-based) of ``pages``; no widget for a single page."""
    if pages <= 1:
        return 1
    if hasattr(st, "pagination"):
        return st.pagination(pages, key=key, max_visible_pages=9)
    return int(st.number_input("page", min_value=1, max_value=pages, key=key))


def show(text: str, language: str | None) -> None:
    """``text`` as code in ``language``, or as plain text (a statement, not an expression: Streamlit's
    "magic" would render the value of a bare expression)."""
    if language:
        st.code(text, language=language)
    else:
        st.text(text)


def long_text(t: Trajectory, s: Step, field: page.Field, text: str, language: str | None = None) -> None:
    """A clipped text of step ``s`` as a preview; when cut, a "full text" toggle reads ``field`` of its
    event back from the file and shows it :data:`~rlm_viz.page.FULL_PAGE_CHARS` characters at a time."""
    shown, cut = page.preview(text)
    show(shown, language)
    if not cut:
        return
    key = f"full:{t.trajectory_id}:{s.index}:{'.'.join(map(str, field))}"
    if not st.toggle("full text", key=key):
        return
    try:
        stat = os.stat(t.path)
        full = full_text(t.path, stat.st_size, stat.st_mtime_ns, s.index, field, s)
    except (OSError, LookupError) as exc:
        st.error(f"cannot read the full text: {exc}")
        return
    rows = page.page_range(len(full), pager(page.pages(len(full), page.FULL_PAGE_CHARS), key + ":page"),
                           page.FULL_PAGE_CHARS)
    st.caption(f"characters {rows.start + 1:,}–{rows.stop:,} of {len(full):,}")
    show(full[rows.start:rows.stop], language)
    st.download_button("download the full text", full, file_name=f"{t.trajectory_id}-{s.index}-{field[-1]}.txt",
                       mime="text/plain", key=key + ":download")


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


def header(p: page.Prepared, summary: RunSummary) -> None:
    t, total = p.trajectory, p.totals
    st.header(summary.task[:200] or t.trajectory_id)
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
        st.error(f"**{call_id}** — {page.preview(message)[0]}", icon="🚨")
    if len(t.errors) > 20:
        st.error(f"… and {len(t.errors) - 20} more errors")
    if t.bad_lines:
        st.warning(f"{t.bad_lines} unreadable lines were skipped.")


def step_view(t: Trajectory, s: Step) -> None:
    if s.type == "llm_call":
        st.markdown(f"**LLM** `{s.model}` · {s.input_tokens:,} in / {s.output_tokens:,} out · "
                    f"{fmt_cost(s.cost)} · {s.duration_ms:,.0f} ms")
        if s.text("response"):
            long_text(t, s, ("response",), s.text("response"))
        for i, u in enumerate(s.tools):
            st.markdown(f"→ tool call `{u.name}`")
            long_text(t, s, ("tool_calls", i, "arguments"), u.arguments, "json")
    elif s.type == "repl_execution":
        st.markdown(f"**REPL** · {s.duration_ms:,.0f} ms")
        long_text(t, s, ("code",), s.text("code"), "python")
        if s.text("output"):
            long_text(t, s, ("output",), s.text("output"), "text")
        if s.text("value"):
            st.caption(f"value: {s.text('value')[:500]}")
        if s.error:
            st.error(page.preview(s.error)[0])
    elif s.type == "tool_results":
        for i, u in enumerate(s.tools):
            line = f"**tool** `{u.name}` · {u.duration_ms:,.0f} ms"
            (st.error if u.is_error else st.markdown)(line + (" — failed" if u.is_error else ""))
            long_text(t, s, ("tool_results", i, "content"), u.content)
    elif s.type == "error":
        st.error(page.preview(s.error or "error")[0])
    elif s.type == "limit_hit":
        st.warning(f"limit hit: {page.preview(s.text('limit'))[0]}")
    elif s.type == "no_answer":
        st.error(page.preview(s.error or "no answer")[0])
    elif s.type == "repeated_code":
        st.warning(s.text("repeated"))
        long_text(t, s, ("code",), s.text("code"), "python")
    elif s.type == "context_injected":
        st.markdown(f"**context** · {s.text('context')}")
        st.caption(f"query: {s.text('query')[:500]}")
        if s.error:
            st.warning(f"context provider failed: {page.preview(s.error)[0]}")
    elif s.type in ("call_end", "run_end"):
        st.markdown(f"**answer** · {s.duration_ms:,.0f} ms")
        long_text(t, s, ("response",), s.text("response"))
        if s.error:
            st.error(page.preview(s.error)[0])
    elif s.type in ("call_start", "run_start"):
        st.markdown("**prompt**")
        long_text(t, s, ("prompt",), s.text("prompt"))
    else:
        st.caption(f"{s.type}: {' '.join(t for _, t in s.texts)[:500]}")


def call_label(c: Call) -> str:
    mark = "❌ " if c.errors else ("⏳ " if not c.finished else "")
    indent = "↳ " * c.depth
    return (f"{indent}{mark}{c.label} · depth {c.depth} · {c.total_tokens:,} tok · {fmt_cost(c.cost)} · "
            f"{c.duration_ms / 1000:.1f} s · {len(c.children)} sub-calls")


def tree(p: page.Prepared) -> None:
    """The calls, :data:`~rlm_viz.page.CALLS_PER_PAGE` at a time; in a large run a call's steps are
    rendered only while its expander is open."""
    t, calls = p.trajectory, p.calls
    n_pages = page.pages(len(calls), page.CALLS_PER_PAGE)
    shown = page.page_range(len(calls), pager(n_pages, f"calls:{t.trajectory_id}"), page.CALLS_PER_PAGE)
    if n_pages > 1:
        st.caption(f"calls {shown.start + 1:,}–{shown.stop:,} of {len(calls):,} (depth first)")
    lazy = LAZY and len(calls) > page.EAGER_CALLS
    for i in shown:
        c = calls[i]
        box = st.columns([min(c.depth, 8), 40 - min(c.depth, 8)])[1] if c.depth else st.container()
        first = i == 0 and c.parent_call_id is None
        if lazy:
            exp = box.expander(call_label(c), expanded=first, key=f"open:{t.trajectory_id}:{c.call_id}",
                               on_change="rerun")
            if exp.open is False:  # closed: its steps are neither computed nor sent
                continue
        else:
            exp = box.expander(call_label(c), expanded=first and len(calls) < 10)
        with exp:
            steps(t, c)


def steps(t: Trajectory, c: Call) -> None:
    """The steps of one call, :data:`~rlm_viz.page.STEPS_PER_PAGE` at a time."""
    n_pages = page.pages(len(c.steps), page.STEPS_PER_PAGE)
    shown = page.page_range(len(c.steps), pager(n_pages, f"steps:{t.trajectory_id}:{c.call_id}"),
                            page.STEPS_PER_PAGE)
    if n_pages > 1:
        st.caption(f"steps {shown.start + 1:,}–{shown.stop:,} of {len(c.steps):,}")
    for i in shown:
        step_view(t, c.steps[i])


def charts(p: page.Prepared) -> None:
    """Four tabs of charts; in a large run only the open tab's charts are computed and sent."""
    names = ["Tokens", "Durations", "Tools", "Cost"]
    if LAZY and len(p.calls) > page.EAGER_CALLS:
        tabs = st.tabs(names, key=f"charts:{p.trajectory.trajectory_id}", on_change="rerun")
    else:
        tabs = st.tabs(names)
    for tab, draw in zip(tabs, (tokens_tab, durations_tab, tools_tab, cost_tab), strict=True):
        if getattr(tab, "open", None) is not False:  # None: this tab does not track its state
            with tab:
                draw(p)


def tokens_tab(p: page.Prepared) -> None:
    st.subheader("Tokens per call")
    st.altair_chart(alt.Chart(alt.Data(values=p.tokens_per_call)).mark_bar().encode(
        x=alt.X("call:N", sort=None, title="call"), y=alt.Y("tokens:Q"), color=alt.Color("kind:N"),
        tooltip=["call:N", "kind:N", "tokens:Q", "depth:Q"]))


def durations_tab(p: page.Prepared) -> None:
    st.subheader("Where time went")
    st.altair_chart(alt.Chart(alt.Data(values=p.time_by_category)).mark_bar().encode(
        x=alt.X("category:N"), y=alt.Y("ms:Q", title="milliseconds"), color="category:N",
        tooltip=["category:N", "ms:Q"]))
    st.altair_chart(alt.Chart(alt.Data(values=p.time_per_call)).mark_bar().encode(
        y=alt.Y("call:N", sort="-x"), x=alt.X("ms:Q", title="milliseconds"), color="category:N",
        tooltip=["call:N", "category:N", "ms:Q"]))
    st.caption("Tool and REPL time include the sub-calls made from them.")
    st.dataframe(p.slowest_steps, hide_index=True)


def tools_tab(p: page.Prepared) -> None:
    st.subheader("Tool distribution")
    if p.tool_distribution:
        st.altair_chart(alt.Chart(alt.Data(values=p.tool_distribution)).mark_bar().encode(
            x=alt.X("calls:Q"), y=alt.Y("tool:N", sort="-x"), tooltip=["tool:N", "calls:Q", "errors:Q", "ms:Q"],
            color=alt.condition("datum.errors > 0", alt.value("#d62728"), alt.value("#1f77b4"))))
    else:
        st.caption("no tool calls")


def cost_tab(p: page.Prepared) -> None:
    st.subheader("Cost by model")
    st.altair_chart(alt.Chart(alt.Data(values=p.cost_by_model)).mark_bar().encode(
        x=alt.X("model:N"), y=alt.Y("cost:Q", title="USD"), tooltip=["model:N", "cost:Q", "tokens:Q", "llm_calls:Q"]))
    st.subheader("Cost by depth")
    st.altair_chart(alt.Chart(alt.Data(values=p.cost_by_depth)).mark_bar().encode(
        x=alt.X("depth:O"), y=alt.Y("cost:Q", title="USD"), tooltip=["depth:O", "cost:Q", "tokens:Q", "calls:Q"]))


def run_view(summary: RunSummary, live: bool = False) -> None:
    p = load(summary.path)
    if live and not p.trajectory.live:
        st.rerun()  # run_end arrived: leave the auto-refreshing fragment
    header(p, summary)
    st.subheader("Execution tree")
    tree(p)
    charts(p)


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
    ld = loader(summary.path)
    live = ld.end is None if ld.offset else summary.status in ("running", "incomplete")
    if live:
        st.fragment(run_every=REFRESH_S)(run_view)(summary, live=True)
    else:
        run_view(summary)


main()
