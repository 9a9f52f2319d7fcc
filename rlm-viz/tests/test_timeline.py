"""Issue 25 in the app (``AppTest``) and its data layer: the iteration timeline (turns, badges,
sub-calls nested under the block that spawned them, prev/next), call labels with a prompt preview,
the one-line error summary and its jump target, charts bounded for 1,000 calls, the tool counts of
the tools protocol, a live run's elapsed time, a search without a match, the batch/eval view and
the Streamlit command without a Deploy button."""

from __future__ import annotations

import json
import sys
import time

import pytest
from rlm_viz import batch, page, stats
from rlm_viz.reader import TrajectoryLoader
from rlm_viz.runs import list_runs

BIG = "20250101-000000-many0000"


def load(tmp_path, events, name="r.jsonl"):
    from pathlib import Path

    path = Path(tmp_path) / name
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return TrajectoryLoader(str(path)).load_all()


def markdowns(at) -> list[str]:
    return [str(m.value) for m in at.markdown]


def specs(at) -> list[dict]:
    """The Vega-Lite specs of the page's charts."""
    def walk(node):
        yield node
        for child in getattr(node, "children", {}).values():
            yield from walk(child)

    return [json.loads(n.proto.spec) for n in walk(at._tree)
            if "vega_lite_chart" in str(getattr(n, "type", "")) and getattr(n, "proto", None) is not None]


@pytest.fixture
def app_at(monkeypatch):
    pytest.importorskip("streamlit")
    from rlm_viz.cli import app_path
    from streamlit.testing.v1 import AppTest

    def start(directory, timeout=60):
        monkeypatch.setattr(sys, "argv", ["app.py", "--dir", str(directory)])
        monkeypatch.delenv("RLM_VIZ_DIR", raising=False)
        at = AppTest.from_file(app_path(), default_timeout=timeout).run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return start


def pick(at, task: str):
    box = at.sidebar.selectbox(key="run")
    box.select(next(o for o in box.options if task in o)).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


# --- the data layer ----------------------------------------------------------------------------


def test_turns_nest_sub_calls_under_the_block_that_spawned_them(tmp_path, traj):
    t = load(tmp_path, traj.ok_run("r", 1000.0))
    turns = page.turns(t, t.calls["c0"])
    assert [x.number for x in turns] == [0, 1, 2]
    assert [b.step.type for b in turns[0].blocks] == ["run_start"]
    one = turns[1]
    assert [(b.step.type, b.children) for b in one.blocks] == [
        ("repl_execution", ()), ("tool_results", ()), ("tool_results", ("c1",))]  # the rlm_sub_complete result
    assert (one.input_tokens, one.output_tokens, one.cost) == (100, 20, 0.001) and one.badges == ()
    assert turns[2].badges == ("FINAL",) and turns[2].tokens == 230


def test_badges_err_and_limit(tmp_path, traj):
    t = load(tmp_path, traj.failed_run("f", 1000.0))
    (intro, one) = page.turns(t, t.calls["f0"])
    assert intro.number == 0 and one.number == 1 and one.badges == ("ERR",)
    assert page.error_turn(t, "f0") == 1
    big = load(tmp_path, traj.many_calls_run(BIG, 1000), "big.jsonl")
    assert page.turns(t, t.calls["f0"])[-1].badges == ("ERR",)
    (limited,) = page.turns(big, big.calls["q500"])[1:]
    assert "LIMIT" in limited.badges and "FINAL" in limited.badges
    (failed,) = page.turns(big, big.calls["q97"])[1:]
    assert failed.badges == ("ERR",)
    top = page.turns(big, big.calls["c0"])
    assert len(top) == 22 and top[7].badges == ("ERR",) and top[-1].badges == ("FINAL",)
    assert [len(b.children) for b in top[3].blocks] == [50, 0]  # 50 llm_query calls under its code run
    assert page.error_turn(big, "c0") == 7


def test_call_title_previews_the_prompt(tmp_path, traj):
    t = load(tmp_path, traj.ok_run("r", 1000.0))
    assert page.call_title(t.calls["c1"]) == "sub_complete c1 · “Find the Q3 total”"
    assert page.prompt_preview("a  b\n\nc" + "x" * 100, 10) == "a b cxxxx…"


def test_tool_distribution_counts_each_code_run_once(tmp_path, traj):
    tools = load(tmp_path, traj.many_calls_run(BIG, 60, turns=3), "tools.jsonl")
    assert {r["tool"]: (r["calls"], r["errors"]) for r in stats.tool_distribution(tools)} == {"execute_code": (3, 0)}
    repl = load(tmp_path, traj.failed_run("f", 1000.0), "repl.jsonl")  # repl protocol: code blocks, no tool
    assert {r["tool"]: (r["calls"], r["errors"]) for r in stats.tool_distribution(repl)} == {
        "(REPL code block)": (1, 1)}


def test_per_call_charts_keep_the_top_calls_and_sum_the_others(tmp_path, traj):
    t = load(tmp_path, traj.many_calls_run(BIG, 1000), "big.jsonl")
    rows = stats.tokens_per_call(t)
    names = list(dict.fromkeys(r["call"] for r in rows))
    assert len(names) == stats.TOP_CALLS + 1 and names[-1] == f"others ({1000 - stats.TOP_CALLS:,} calls)"
    assert sum(r["tokens"] for r in rows) == sum(c.total_tokens for c in t.calls.values())  # nothing lost
    time_rows = stats.time_per_call(t)
    assert len({r["call"] for r in time_rows}) == stats.TOP_CALLS + 1
    assert sum(r["ms"] for r in time_rows) == pytest.approx(sum(c.llm_ms + c.tool_ms + c.repl_ms
                                                                 for c in t.calls.values()), abs=0.1)
    hist = stats.tokens_histogram(t)
    assert len(hist) == stats.BINS and sum(r["calls"] for r in hist) == 1000
    assert sum(r["calls"] > 0 for r in hist) >= 5  # equal-ratio bins: the sub-calls are not one bar


def test_histogram_edges():
    assert stats.histogram([]) == []
    assert stats.histogram([3.0, 3.0]) == [{"bin": "3", "from": 3.0, "to": 3.0, "calls": 2}]
    rows = stats.histogram([0.0, 1.0, 2.0, 3.0, 4.0], bins=4)
    assert [r["calls"] for r in rows] == [1, 1, 1, 2] and rows[0]["bin"] == "0–1"


def test_call_end_error_is_an_error_of_the_run(tmp_path, traj):
    t = load(tmp_path, traj.many_calls_run(BIG, 200, turns=4), "e.jsonl")
    assert ("q97", "call failed: RateLimitError: HTTP 429: rate limited") in t.errors
    assert t.calls["q97"].errors and not t.calls["q96"].errors


def test_batch_rows_join_scores_by_trajectory_id(tmp_path, traj):
    d = tmp_path / "logs"
    d.mkdir()
    for n, (tid, build) in enumerate([("t-ok", traj.ok_run), ("t-bad", traj.failed_run)]):
        events = [{**e, "batch_id": "b-1a2b3c4d5e6f"} if e["type"] == "run_start" else e
                  for e in build(tid, 1000.0 + n)]
        traj.write(d / f"{tid}.jsonl", events)
    results = tmp_path / "eval.jsonl"
    results.write_text(json.dumps({"id": "q1", "trajectory_id": "t-ok", "score": 0.5}) + "\n"
                       + json.dumps({"id": "q2", "trajectory_id": "t-bad", "score": 1.0}) + "\nnot json\n"
                       + json.dumps({"id": "q2", "trajectory_id": "t-bad", "score": 0.0}) + "\n", encoding="utf-8")
    read = batch.read_results(str(results))
    assert read.skipped == 1 and read.scored
    rows = batch.batch_rows(list_runs(str(d)), read)
    assert [(r["item"], r["score"], r["status"]) for r in rows] == [("q1", 0.5, "ok"), ("q2", 0.0, "error")]
    assert rows[1]["error"] == "HTTP 500 from provider"
    total = batch.batch_totals(rows)
    assert (total["runs"], total["ok"], total["failed"], total["mean_score"]) == (2, 1, 1, 0.25)
    assert total["cost"] == pytest.approx(0.0165)
    assert "score" not in batch.batch_rows(list_runs(str(d)))[0]  # no results file: no score column


def test_a_bad_results_file_says_what_to_give(tmp_path):
    from rlm.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot read the results file .*`rlm batch` output"):
        batch.read_results(str(tmp_path / "missing.jsonl"))
    (tmp_path / "x.jsonl").write_text('{"id": 1}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="no line with a trajectory_id"):
        batch.read_results(str(tmp_path / "x.jsonl"))


def test_the_streamlit_command_hides_the_deploy_button():
    from rlm_viz.cli import streamlit_command

    cmd = streamlit_command("/logs", 8502)
    assert cmd[cmd.index("--client.toolbarMode") + 1] == "viewer"
    assert cmd.index("--client.toolbarMode") < cmd.index("--")  # a Streamlit option, not the app's


# --- the app -----------------------------------------------------------------------------------


def test_timeline_steps_through_the_turns(app_at, log_dir, traj):
    at = pick(app_at(log_dir), traj.TASK)
    md = markdowns(at)
    assert any(m.startswith("**Turn 1 of 2**") for m in md) and not any("Turn 2 of 2" in m for m in md)
    # the sub-call is nested right under the tool result that spawned it, inside turn 1
    i_tool = md.index("**tool** `rlm_sub_complete` · 900 ms")
    assert md[i_tool + 1].startswith("↳ ✅ **sub_complete c1 · “Find the Q3 total”**")
    assert "1 sub-call spawned here" in [c.value for c in at.caption]
    key = f"turn:{'20250101-000000-aaaaaaaa'}:c0"
    assert at.button(key=f"prev:{key}").disabled
    at.button(key=f"next:{key}").click().run()
    md = markdowns(at)
    assert any(m.startswith("**Turn 2 of 2** :green-badge[FINAL]") for m in md)
    assert at.button(key=f"next:{key}").disabled
    at.button(key=f"prev:{key}").click().run()
    assert any(m.startswith("**Turn 1 of 2**") for m in markdowns(at))
    at.toggle(key="allturns:20250101-000000-aaaaaaaa:c0").set_value(True).run()
    assert sum(m.startswith("**Turn ") for m in markdowns(at)) == 2


def test_opening_a_sub_call_focuses_the_timeline_on_it(app_at, log_dir, traj):
    at = pick(app_at(log_dir), traj.TASK)
    at.button(key="open:children:20250101-000000-aaaaaaaa:c0:11:c1").click().run()
    md = markdowns(at)
    assert md[0].startswith("**sub_complete c1 · “Find the Q3 total”**")
    assert [b.label for b in at.button if b.key.startswith("up:")] == ["↑ run c0"]
    assert any(m.startswith("**Turn 1 of 1** :green-badge[FINAL]") for m in md)


def test_errors_are_one_summary_line_with_a_jump_link(app_at, log_dir, traj):
    at = app_at(log_dir)  # the failed run is the newest
    summary = [e.value for e in at.error if "#errors" in e.value]
    assert summary == ["**3 errors** · first in `f0`: REPL error: FileNotFoundError: [Errno 2] No such file or "
                       "directory: 'x' (and 2 more) · [details ↓](#errors)"]
    assert "\n" not in summary[0]
    assert [s.value for s in at.subheader if s.value.startswith("Errors")] == ["Errors (3)"]
    assert any(m.startswith("**Turn 1 of 1** :red-badge[ERR]") for m in markdowns(at))


def test_call_labels_preview_the_prompt(app_at, log_dir, traj):
    at = pick(app_at(log_dir), traj.TASK)
    labels = [e.label for e in at.expander]
    assert labels[0].startswith(f"run c0 · “{traj.TASK}”")
    assert labels[2].startswith("↳ ↳ llm_query c2 · “deep question”")


def test_a_search_without_a_match_says_so(app_at, log_dir):
    at = app_at(log_dir)
    at.sidebar.text_input(key="search").input("zzz-no-match").run()
    assert [i.value for i in at.main.info] == [
        f"No run matches the search “zzz-no-match” in {log_dir}: change or clear the search box."]
    assert not any("No runs to show" in i.value for i in at.info)


def test_a_live_run_shows_the_elapsed_time(app_at, tmp_path, traj):
    started = time.time() - 120
    traj.write(tmp_path / "20990101-000000-live0000.jsonl", traj.ok_run("live", started)[:4])  # last event at +1.5 s
    at = app_at(tmp_path)
    (elapsed,) = [m for m in at.metric if m.label == "Elapsed"]
    assert 119 <= float(elapsed.value.removesuffix(" s")) < 3600
    assert not [m for m in at.metric if m.label == "Duration"]


def test_the_batch_view_shows_scores_costs_and_failures(app_at, tmp_path, traj):
    d = tmp_path / "logs"
    d.mkdir()
    for n, (tid, build) in enumerate([("t-ok", traj.ok_run), ("t-bad", traj.failed_run)]):
        events = [{**e, "batch_id": "b-1a2b3c4d5e6f"} if e["type"] == "run_start" else e
                  for e in build(tid, 1000.0 + n)]
        traj.write(d / f"{tid}.jsonl", events)
    results = tmp_path / "eval.jsonl"
    results.write_text("".join(json.dumps({"id": f"q{n}", "trajectory_id": tid, "score": s}) + "\n"
                               for n, (tid, s) in enumerate([("t-ok", 1.0), ("t-bad", 0.0)])), encoding="utf-8")
    at = app_at(d)
    at.sidebar.selectbox(key="batch").select("b-1a2b3c4d5e6f").run()
    assert "Batch b-1a2b3c4d5e6f" in [s.value for s in at.subheader]
    metrics = {m.label: m.value for m in reversed(at.metric)}  # the batch's Cost, not the run's below it
    assert metrics["Runs"] == "2" and metrics["OK / failed"] == "1 / 1" and metrics["Cost"] == "$0.0165"
    assert metrics["Mean score"] == "—"
    at.text_input(key="results:b-1a2b3c4d5e6f").input(str(results)).run()
    assert {m.label: m.value for m in at.metric}["Mean score"] == "0.500"
    table = at.dataframe[0].value
    assert list(table["score"]) == [1.0, 0.0] and list(table["status"]) == ["ok", "error"]
    at.text_input(key="results:b-1a2b3c4d5e6f").input(str(tmp_path / "nope.jsonl")).run()
    assert not at.exception and any("cannot read the results file" in e.value for e in at.error)


def test_a_thousand_calls_keep_the_charts_bounded(app_at, tmp_path, traj):
    traj.write(tmp_path / f"{BIG}.jsonl", traj.many_calls_run(BIG, 1000))
    at = app_at(tmp_path, timeout=120)
    md = markdowns(at)
    assert any(m.startswith("**Turn 1 of 21**") for m in md)
    assert at.caption and any(c.value.startswith("21 turns · ERR in turn 7 · FINAL in turn 21") for c in at.caption)
    assert sum(m.startswith("↳ ✅ **llm_query") for m in md) == page.CHILDREN_PER_PAGE  # 50 spawned, paged
    assert len([e for e in at.error if "#errors" in e.value]) == 1  # 11 errors, one line
    for tab in ("Tokens", "Durations"):
        at.session_state[f"charts:{BIG}"] = tab
        at.run()
        for spec in specs(at):
            assert spec.get("height", 0) <= 420, spec.get("height")
            values = spec.get("data", {}).get("values") or next(iter(spec.get("datasets", {}).values()), [])
            calls = {v.get("call") for v in values if "call" in v}
            assert len(calls) <= stats.TOP_CALLS + 1
    assert [s.value for s in at.subheader if s.value.startswith("Calls by")] == ["Calls by duration"]


def test_final_and_a_forced_turn_get_their_badges(tmp_path, traj):
    ev = traj.ev
    events = [ev("run_start", "r0", ts=1000.0, prompt="p", model="m", environment="local", protocol="repl"),
              ev("llm_call", "r0", ts=1001.0, model="m", prompt=[], response="```repl\nFINAL_VAR(x)\n```", tool_calls=[],
                 token_usage={"input": 5, "output": 5, "total": 10}, cost=0.0, duration_ms=10.0, forced=False),
              ev("repl_execution", "r0", ts=1002.0, code="FINAL_VAR(x)", output="", value=None, error=None,
                 duration_ms=1.0, final={"kind": "final_var", "value": "42"}),
              ev("llm_call", "r0", ts=1003.0, model="m", prompt=[], response="42", tool_calls=[],
                 token_usage={"input": 5, "output": 5, "total": 10}, cost=0.0, duration_ms=10.0, forced=True)]
    t = load(tmp_path, events)
    turns = page.turns(t, t.calls["r0"])
    assert [x.badges for x in turns] == [(), ("FINAL",), ("LIMIT",)]  # no run_end yet: the run is live
    assert "final_var" in turns[1].blocks[0].step.text("final")


def test_a_turn_of_many_steps_is_paged(app_at, tmp_path, traj):
    ev = traj.ev
    events = [ev("run_start", "c0", ts=1000.0, prompt="many tools", model="m", environment="local", protocol="tools"),
              ev("llm_call", "c0", ts=1001.0, model="m", prompt=[], response="go", tool_calls=[],
                 token_usage={"input": 5, "output": 5, "total": 10}, cost=0.0, duration_ms=10.0)]
    events += [ev("tool_results", "c0", ts=1002.0 + i, tool_results=[
        {"call_id": f"x{i}", "name": "file_read", "content": f"chunk {i}", "is_error": False, "duration_ms": 1.0}])
        for i in range(45)]
    traj.write(tmp_path / "20250101-000000-tools000.jsonl", events)
    at = app_at(tmp_path)
    assert f"steps 1–{page.STEPS_PER_PAGE} of 45 in this turn" in [c.value for c in at.caption]
    body = "\n".join(str(x.value) for x in at.text)
    # the timeline's first page holds chunks 0-19 (the tree's first page only 0-17), and not the rest
    assert "chunk 19" in body and "chunk 20" not in body and "chunk 44" not in body
