"""The Streamlit script of ``rlm visualize`` (run by ``streamlit run``; all data work is in the data layer).

Sections: the run picker (sidebar, newest first, searchable; a Batch box narrows it to one
``rlm batch`` when any listed run belongs to one, and shows that batch's table: scores, costs,
failures per run), the run header with its errors summed up in one line (linked to the error list
at the bottom), the iteration timeline of one call (turn by turn: model text, code and output, the
sub-calls each block spawned, FINAL / ERR / LIMIT badges; prev/next buttons and the ← → keys), the
execution tree (one expander per call, indented by depth, labelled with a prompt preview), and
charts (Altair) of tokens per call, where time went, tool use and cost by model and depth (the top
calls and "others", histograms for many calls, bounded heights).  A run with no ``run_end`` yet is re-read from
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
import time

import altair as alt
import streamlit as st

from rlm_viz import batch, page, stats
from rlm_viz.model import Call, RunSummary, Step, Trajectory
from rlm_viz.reader import CHUNK, TrajectoryLoader
from rlm_viz.runs import batch_groups, list_runs

REFRESH_S = 2.0
#: the most pixels a chart is tall (a chart of many calls shows the top ones and "others")
CHART_MAX_PX = 420
#: a bar of a horizontal bar chart, in pixels
BAR_PX = 22
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


def long_text(t: Trajectory, s: Step, field: page.Field, text: str, language: str | None = None, *,
              scope: str = "tree") -> None:
    """A clipped text of step ``s`` as a preview; when cut, a "full text" toggle reads ``field`` of its
    event back from the file and shows it :data:`~rlm_viz.page.FULL_PAGE_CHARS` characters at a time."""
    shown, cut = page.preview(text)
    show(shown, language)
    if not cut:
        return
    key = f"full:{scope}:{t.trajectory_id}:{s.index}:{'.'.join(map(str, field))}"
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
        st.sidebar.info(f"no runs match “{query}”" if query.strip() else "no trajectories here yet")
        return None
    rows = batch_filter(rows, directory)
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


def batch_filter(rows: list[RunSummary], directory: str) -> list[RunSummary]:
    """The "Batch" box (only when a listed run belongs to a batch): the rows of the chosen batch,
    or all of them ("all runs", the option ``""``; a batch id is never empty).  A chosen batch gets
    its batch view (:func:`batch_view`) above the run."""
    groups = {g.batch_id: g for g in batch_groups(rows)}
    if not groups:
        return rows
    chosen = st.sidebar.selectbox("Batch", ["", *groups], key="batch",
                                  format_func=lambda b: groups[b].label if b in groups else "all runs")
    if chosen not in groups:
        return rows
    chosen_rows = [r for r in rows if r.batch_id == chosen]
    batch_view(groups[chosen].batch_id, chosen_rows)
    return chosen_rows


def batch_view(batch_id: str, rows: list[RunSummary]) -> None:
    """One batch (an ``rlm batch`` or ``rlm eval`` run) as a table: per run its item and score (from
    the results file, when given), status, failure, cost, tokens and time; totals above."""
    st.subheader(f"Batch {batch_id}", anchor="batch")
    path = st.text_input("results file (optional)", key=f"results:{batch_id}",
                         placeholder="the JSONL of `rlm batch -o` or `rlm eval -o`: adds item ids and scores",
                         help="Runs are matched to its lines by trajectory_id.")
    results = None
    if path.strip():
        try:
            results = batch.read_results(os.path.expanduser(path.strip()))
        except Exception as exc:  # noqa: BLE001 - ConfigError: cause and fix, shown, never a traceback
            st.error(str(exc))
    table = batch.batch_rows(rows, results)
    total = batch.batch_totals(table)
    cols = st.columns(5)
    cols[0].metric("Runs", f"{total['runs']}", help=f"{total['unfinished']} unfinished")
    cols[1].metric("OK / failed", f"{total['ok']} / {total['failed']}", help=f"{total['limit']} stopped by a limit")
    cols[2].metric("Cost", fmt_cost(total["cost"]))
    cols[3].metric("Tokens", f"{total['tokens']:,}")
    cols[4].metric("Mean score", "—" if total["mean_score"] is None else f"{total['mean_score']:.3f}")
    if results is not None and results.skipped:
        st.caption(f"{results.skipped} lines of the results file had no trajectory_id and were skipped")
    st.dataframe(table, hide_index=True, height=min(38 + 35 * len(table), 400))


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
    if t.live and summary.status != "incomplete":  # running: the time since it started, not its last event
        started = float(t.start.get("timestamp") or summary.started)
        cols[3].metric("Elapsed", f"{max(time.time() - started, 0.0):.1f} s",
                       help=f"running; the last event was {(total['duration_ms'] or 0) / 1000:.1f} s after the start")
    else:
        cols[3].metric("Duration", f"{(total['duration_ms'] or 0) / 1000:.1f} s")
    cols[4].metric("Calls", f"{total['calls']:,}", help=f"{total['llm_calls']:,} LLM calls")
    if t.live:
        st.info(f"Live: no run_end yet — re-reading new lines every {REFRESH_S:g} s "
                f"({t.events} events, {t.bytes_read >> 10} KiB read).")
    if t.errors:
        call_id, message = t.errors[0]
        more = f" (and {len(t.errors) - 1:,} more)" if len(t.errors) > 1 else ""
        first = page.prompt_preview(message, 160)
        st.error(f"**{len(t.errors):,} error{'s' if len(t.errors) != 1 else ''}** · first in `{call_id}`: "
                 f"{first}{more} · [details ↓](#errors)", icon="🚨")
    if t.bad_lines:
        st.warning(f"{t.bad_lines} unreadable lines were skipped.")


def step_view(t: Trajectory, s: Step, scope: str = "tree") -> None:
    """One step of a call (``scope`` keeps the keys of its widgets apart where a step shows twice)."""
    if s.type == "llm_call":
        st.markdown(f"**LLM** `{s.model}` · {s.input_tokens:,} in / {s.output_tokens:,} out · "
                    f"{fmt_cost(s.cost)} · {s.duration_ms:,.0f} ms")
        if s.text("response"):
            long_text(t, s, ("response",), s.text("response"), scope=scope)
        for i, u in enumerate(s.tools):
            st.markdown(f"→ tool call `{u.name}`")
            long_text(t, s, ("tool_calls", i, "arguments"), u.arguments, "json", scope=scope)
    elif s.type == "repl_execution":
        st.markdown(f"**REPL** · {s.duration_ms:,.0f} ms")
        long_text(t, s, ("code",), s.text("code"), "python", scope=scope)
        if s.text("output"):
            long_text(t, s, ("output",), s.text("output"), "text", scope=scope)
        if s.text("value"):
            st.caption(f"value: {s.text('value')[:500]}")
        if s.error:
            st.error(page.preview(s.error)[0])
    elif s.type == "tool_results":
        for i, u in enumerate(s.tools):
            line = f"**tool** `{u.name}` · {u.duration_ms:,.0f} ms"
            (st.error if u.is_error else st.markdown)(line + (" — failed" if u.is_error else ""))
            long_text(t, s, ("tool_results", i, "content"), u.content, scope=scope)
    elif s.type == "error":
        st.error(page.preview(s.error or "error")[0])
    elif s.type == "limit_hit":
        st.warning(f"limit hit: {page.preview(s.text('limit'))[0]}")
    elif s.type == "no_answer":
        st.error(page.preview(s.error or "no answer")[0])
    elif s.type == "repeated_code":
        st.warning(s.text("repeated"))
        long_text(t, s, ("code",), s.text("code"), "python", scope=scope)
    elif s.type == "context_injected":
        st.markdown(f"**context** · {s.text('context')}")
        st.caption(f"query: {s.text('query')[:500]}")
        if s.error:
            st.warning(f"context provider failed: {page.preview(s.error)[0]}")
    elif s.type in ("call_end", "run_end"):
        st.markdown(f"**answer** · {s.duration_ms:,.0f} ms")
        long_text(t, s, ("response",), s.text("response"), scope=scope)
        if s.error:
            st.error(page.preview(s.error)[0])
    elif s.type in ("call_start", "run_start"):
        st.markdown("**prompt**")
        long_text(t, s, ("prompt",), s.text("prompt"), scope=scope)
    else:
        st.caption(f"{s.type}: {' '.join(t for _, t in s.texts)[:500]}")


def call_label(c: Call) -> str:
    mark = "❌ " if c.errors else ("⏳ " if not c.finished else "")
    indent = "↳ " * c.depth
    return (f"{indent}{mark}{page.call_title(c)} · depth {c.depth} · {c.total_tokens:,} tok · {fmt_cost(c.cost)} · "
            f"{c.duration_ms / 1000:.1f} s · {len(c.children)} sub-calls")


def focus(key: str, call_id: str, turn_key: str | None = None, turn: int | None = None) -> None:
    """Put ``call_id`` in the timeline (a button's callback), at ``turn`` when given."""
    st.session_state[key] = call_id
    if turn_key is not None and turn is not None:
        st.session_state[turn_key] = max(turn, 1)


def focus_error(t: Trajectory, key: str, call_id: str) -> None:
    """Put ``call_id`` in the timeline at its first turn with an error (a button's callback)."""
    focus(key, call_id, f"turn:{t.trajectory_id}:{call_id}", page.error_turn(t, call_id))


def step_turn(key: str, delta: int, count: int) -> None:
    """Move the timeline's turn ``key`` by ``delta`` within 1..``count`` (a button's callback)."""
    st.session_state[key] = min(max(int(st.session_state.get(key, 1)) + delta, 1), count)


BADGE_COLORS = {"FINAL": "green", "ERR": "red", "LIMIT": "orange"}


def badges(names: tuple[str, ...]) -> str:
    """Markdown badges of a turn (:data:`rlm_viz.page.BADGES`)."""
    if not hasattr(st, "badge"):  # Markdown badges came with st.badge (1.44)
        return " ".join(f"**[{b}]**" for b in names)
    return " ".join(f":{BADGE_COLORS[b]}-badge[{b}]" for b in names)


def call_stats(c: Call) -> str:
    return (f"depth {c.depth} · {c.total_tokens:,} tok · {fmt_cost(c.cost)} · {c.duration_ms / 1000:.1f} s · "
            f"{len(c.children):,} sub-calls")


def timeline(p: page.Prepared) -> None:
    """The iteration timeline of the call in focus (the top call at first): its prompt, then one turn at
    a time (prev/next buttons, the ← → keys, or the turn number; or every turn, paged), each with the
    model's text, the code it ran and the output, the sub-calls each block spawned (a button opens one
    here), FINAL / ERR / LIMIT badges, tokens, cost and time."""
    t = p.trajectory
    if not p.calls:
        return
    st.subheader("Timeline", anchor="timeline")
    fkey = f"focus:{t.trajectory_id}"
    c = t.calls.get(st.session_state.get(fkey, "")) or p.calls[0]
    chain = []
    up = c
    while up.parent_call_id in t.calls and len(chain) < 50:
        up = t.calls[up.parent_call_id]
        chain.append(up)
    if chain:
        cols = st.columns(min(len(chain), 4))
        for col, parent in zip(cols, reversed(chain[:4]), strict=False):
            col.button(f"↑ {parent.label}", key=f"up:{t.trajectory_id}:{c.call_id}:{parent.call_id}",
                       on_click=focus, args=(fkey, parent.call_id), help=page.prompt_preview(parent.prompt, 200))
    mark = "❌ " if c.errors else ("⏳ " if not c.finished else "")
    st.markdown(f"{mark}**{page.call_title(c)}** · {call_stats(c)}")
    ts = page.turns(t, c)
    intro = [x for x in ts if x.number == 0]
    model_turns = [x for x in ts if x.number > 0]
    for x in intro:
        with st.container(border=True):
            turn_blocks(t, x, c)
    if not model_turns:
        st.caption("no model turn yet")
        return
    n = len(model_turns)
    tkey = f"turn:{t.trajectory_id}:{c.call_id}"
    st.session_state[tkey] = min(max(int(st.session_state.get(tkey, 1)), 1), n)
    marked = {b: [x.number for x in model_turns if b in x.badges] for b in ("ERR", "LIMIT", "FINAL")}
    st.caption(f"{n:,} turn{'s' if n != 1 else ''}" + "".join(
        f" · {b} in turn{'s' if len(v) > 1 else ''} {', '.join(map(str, v[:12]))}{'…' if len(v) > 12 else ''}"
        for b, v in marked.items() if v))
    if n == 1:
        turn_view(t, c, model_turns[0], n)
        return
    if st.toggle("all turns", key=f"allturns:{t.trajectory_id}:{c.call_id}"):
        shown = page.page_range(n, pager(page.pages(n, page.TURNS_PER_PAGE), f"turnpage:{t.trajectory_id}:{c.call_id}"),
                                page.TURNS_PER_PAGE)
        for i in shown:
            turn_view(t, c, model_turns[i], n)
        return
    keys = {"shortcut": ("Left", "Right")} if "shortcut" in inspect.signature(st.button).parameters else {}
    cols = st.columns([1, 1, 1, 5])
    cols[0].button("◀ prev", key=f"prev:{tkey}", on_click=step_turn, args=(tkey, -1, n),
                   disabled=st.session_state[tkey] <= 1, **({"shortcut": keys["shortcut"][0]} if keys else {}))
    cols[1].button("next ▶", key=f"next:{tkey}", on_click=step_turn, args=(tkey, 1, n),
                   disabled=st.session_state[tkey] >= n, **({"shortcut": keys["shortcut"][1]} if keys else {}))
    cols[2].number_input("turn", min_value=1, max_value=n, step=1, key=tkey, label_visibility="collapsed")
    turn_view(t, c, model_turns[st.session_state[tkey] - 1], n)


def turn_view(t: Trajectory, c: Call, x: page.Turn, n: int) -> None:
    with st.container(border=True):
        st.markdown(f"**Turn {x.number} of {n}** {badges(x.badges)} · {x.input_tokens:,} in / "
                    f"{x.output_tokens:,} out tok · {fmt_cost(x.cost)} · {x.duration_ms / 1000:.2f} s")
        if x.llm is not None:
            s = x.llm
            st.caption(f"model `{s.model}`" + (" · the forced last turn after a limit" if s.text("forced") else ""))
            if s.text("response"):
                long_text(t, s, ("response",), s.text("response"), scope="tl")
            for i, u in enumerate(s.tools):
                st.markdown(f"→ tool call `{u.name}`")
                long_text(t, s, ("tool_calls", i, "arguments"), u.arguments, "json", scope="tl")
        turn_blocks(t, x, c)


def turn_blocks(t: Trajectory, x: page.Turn, c: Call) -> None:
    """The blocks of a turn, each followed by the sub-calls it spawned, :data:`~rlm_viz.page.STEPS_PER_PAGE`
    at a time."""
    shown = paged_steps(len(x.blocks), f"blocks:{t.trajectory_id}:{c.call_id}:{x.number}", " in this turn")
    for i in shown:
        b = x.blocks[i]
        if b.step is not x.llm:
            step_view(t, b.step, scope="tl")
        if b.children:
            sub_calls(t, c, b)


def sub_calls(t: Trajectory, c: Call, b: page.Block) -> None:
    """The sub-calls a block spawned, nested under it, :data:`~rlm_viz.page.CHILDREN_PER_PAGE` at a time."""
    fkey = f"focus:{t.trajectory_id}"
    key = f"children:{t.trajectory_id}:{c.call_id}:{b.step.index}"
    kids = [t.calls[k] for k in b.children if k in t.calls]
    n_pages = page.pages(len(kids), page.CHILDREN_PER_PAGE)
    _, box = st.columns([1, 24])
    with box:
        st.caption(f"{len(kids):,} sub-call{'s' if len(kids) != 1 else ''} spawned here")
        for k in page.page_range(len(kids), pager(n_pages, key), page.CHILDREN_PER_PAGE):
            kid = kids[k]
            mark = "❌ " if kid.errors else ("⏳ " if not kid.finished else "✅ ")
            with st.container(border=True):
                st.markdown(f"↳ {mark}**{page.call_title(kid)}** · {call_stats(kid)}")
                if kid.response:
                    st.caption(f"answer: {page.prompt_preview(kid.response, 200)}")
                st.button("open in the timeline", key=f"open:{key}:{kid.call_id}", on_click=focus,
                          args=(fkey, kid.call_id))


def errors_section(p: page.Prepared) -> None:
    """Every error of the run, 20 at a time, each with a button that shows its turn in the timeline
    (the header's summary line links here)."""
    t = p.trajectory
    if not t.errors:
        return
    st.subheader(f"Errors ({len(t.errors):,})", anchor="errors")
    fkey = f"focus:{t.trajectory_id}"
    shown = page.page_range(len(t.errors), pager(page.pages(len(t.errors), 20), f"errors:{t.trajectory_id}"), 20)
    for i in shown:
        call_id, message = t.errors[i]
        cols = st.columns([5, 1])
        cols[0].markdown(f"🚨 `{call_id}` — {page.prompt_preview(message, 300)}")
        cid = call_id or "run"
        if cid in t.calls:
            cols[1].button("show in the timeline", key=f"err:{t.trajectory_id}:{i}", on_click=focus_error,
                           args=(t, fkey, cid))


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
    for i in paged_steps(len(c.steps), f"steps:{t.trajectory_id}:{c.call_id}"):
        step_view(t, c.steps[i])


def paged_steps(total: int, key: str, where: str = "") -> range:
    """The indexes of the steps shown, :data:`~rlm_viz.page.STEPS_PER_PAGE` at a time: a pager (``key``) and a
    caption when there is more than one page."""
    n_pages = page.pages(total, page.STEPS_PER_PAGE)
    shown = page.page_range(total, pager(n_pages, key), page.STEPS_PER_PAGE)
    if n_pages > 1:
        st.caption(f"steps {shown.start + 1:,}–{shown.stop:,} of {total:,}{where}")
    return shown


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


def bar_height(rows: int) -> int:
    """The height of a horizontal bar chart of ``rows`` bars, at most :data:`CHART_MAX_PX`."""
    return min(max(rows, 1) * BAR_PX + 40, CHART_MAX_PX)


def histogram(rows: list[dict], title: str) -> None:
    """Calls counted in bins (:func:`rlm_viz.stats.histogram`)."""
    st.altair_chart(alt.Chart(alt.Data(values=rows)).mark_bar().encode(
        x=alt.X("bin:N", sort=None, title=title), y=alt.Y("calls:Q", title="calls"),
        tooltip=["bin:N", "calls:Q"]).properties(height=240))


def many(p: page.Prepared) -> bool:
    """More calls than the per-call charts name: they show the top ones and "others", and histograms."""
    return len(p.calls) > stats.TOP_CALLS


def tokens_tab(p: page.Prepared) -> None:
    st.subheader("Tokens per call" + (f" (top {stats.TOP_CALLS} of {len(p.calls):,}, and the others)" if many(p) else ""))
    st.altair_chart(alt.Chart(alt.Data(values=p.tokens_per_call)).mark_bar().encode(
        y=alt.Y("call:N", sort=None, title="call"), x=alt.X("tokens:Q"), color=alt.Color("kind:N"),
        tooltip=["call:N", "kind:N", "tokens:Q", "depth:Q"]).properties(height=bar_height(len(p.tokens_per_call) // 2)))
    if many(p):
        st.subheader("Calls by tokens")
        histogram(p.tokens_histogram, "tokens per call")


def durations_tab(p: page.Prepared) -> None:
    st.subheader("Where time went")
    st.altair_chart(alt.Chart(alt.Data(values=p.time_by_category)).mark_bar().encode(
        x=alt.X("category:N"), y=alt.Y("ms:Q", title="milliseconds"), color="category:N",
        tooltip=["category:N", "ms:Q"]).properties(height=240))
    st.altair_chart(alt.Chart(alt.Data(values=p.time_per_call)).mark_bar().encode(
        y=alt.Y("call:N", sort=None, title="call" + (f" (slowest {stats.TOP_CALLS}, and the others)" if many(p) else "")),
        x=alt.X("ms:Q", title="milliseconds"), color="category:N",
        tooltip=["call:N", "category:N", "ms:Q"]).properties(height=bar_height(len(p.time_per_call) // 3)))
    st.caption("Tool and REPL time include the sub-calls made from them.")
    if many(p):
        st.subheader("Calls by duration")
        histogram(p.duration_histogram, "seconds per call")
    st.dataframe(p.slowest_steps, hide_index=True)


def tools_tab(p: page.Prepared) -> None:
    st.subheader("Tool distribution")
    if p.tool_distribution:
        st.altair_chart(alt.Chart(alt.Data(values=p.tool_distribution)).mark_bar().encode(
            x=alt.X("calls:Q"), y=alt.Y("tool:N", sort="-x"), tooltip=["tool:N", "calls:Q", "errors:Q", "ms:Q"],
            color=alt.condition("datum.errors > 0", alt.value("#d62728"), alt.value("#1f77b4")))
            .properties(height=bar_height(len(p.tool_distribution))))
        st.caption("Each code run counts once: as execute_code in the tools protocol, as a REPL code block in "
                   "the repl protocol.")
    else:
        st.caption("no tool calls")


def cost_tab(p: page.Prepared) -> None:
    st.subheader("Cost by model")
    st.altair_chart(alt.Chart(alt.Data(values=p.cost_by_model)).mark_bar().encode(
        x=alt.X("model:N"), y=alt.Y("cost:Q", title="USD"), tooltip=["model:N", "cost:Q", "tokens:Q", "llm_calls:Q"])
        .properties(height=240))
    st.subheader("Cost by depth")
    st.altair_chart(alt.Chart(alt.Data(values=p.cost_by_depth)).mark_bar().encode(
        x=alt.X("depth:O"), y=alt.Y("cost:Q", title="USD"), tooltip=["depth:O", "cost:Q", "tokens:Q", "calls:Q"])
        .properties(height=240))


def run_view(summary: RunSummary, live: bool = False) -> None:
    p = load(summary.path)
    if live and not p.trajectory.live:
        st.rerun()  # run_end arrived: leave the auto-refreshing fragment
    header(p, summary)
    timeline(p)
    st.subheader("Execution tree")
    tree(p)
    charts(p)
    errors_section(p)


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
        query = str(st.session_state.get("search") or "").strip()
        if query:
            st.info(f"No run matches the search “{query}” in {directory}: change or clear the search box.")
        else:
            st.info(f"No runs to show in {directory}. Run `rlm run \"...\"` to record one.")
        return
    ld = loader(summary.path)
    live = ld.end is None if ld.offset else summary.status in ("running", "incomplete")
    if live:
        st.fragment(run_every=REFRESH_S)(run_view)(summary, live=True)
    else:
        run_view(summary)


main()
