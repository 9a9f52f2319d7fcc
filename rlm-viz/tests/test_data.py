"""The streamlit-free data layer: incremental reader, tree, summaries, aggregations."""

from __future__ import annotations

import json
import sys

import pytest
from rlm_viz import stats
from rlm_viz.model import TEXT_CAP, clip
from rlm_viz.reader import TrajectoryLoader
from rlm_viz.runs import check_dir, list_runs, summarize


def test_tree_nests_sub_calls_by_parent(tmp_path, traj):
    TASK, FAILED_TASK, ok_run, failed_run, write = traj.TASK, traj.FAILED_TASK, traj.ok_run, traj.failed_run, traj.write  # noqa: F841
    t = TrajectoryLoader(str(write(tmp_path / "r.jsonl", ok_run("r", 1000.0)))).load_all()
    assert t.roots == ("c0",) and t.calls["c0"].children == ("c1",) and t.calls["c1"].children == ("c2",)
    assert [c.call_id for c in t.walk()] == ["c0", "c1", "c2"]
    assert [c.depth for c in t.walk()] == [0, 1, 2]
    top = t.calls["c0"]
    assert top.prompt == TASK and top.response == "Sales grew 12%." and top.finished
    assert (top.input_tokens, top.output_tokens) == (300, 50) and top.repl_ms == 5.0 and top.tool_ms == 906.0
    assert t.calls["c2"].sub_call_type == "llm_query" and t.calls["c2"].duration_ms == 200.0
    assert not t.live and not t.errors and t.events == 14


def test_aggregations(tmp_path, traj):
    TASK, FAILED_TASK, ok_run, failed_run, write = traj.TASK, traj.FAILED_TASK, traj.ok_run, traj.failed_run, traj.write  # noqa: F841
    t = TrajectoryLoader(str(write(tmp_path / "r.jsonl", ok_run("r", 1000.0)))).load_all()
    assert stats.totals(t)["tokens"] == 445 and stats.totals(t)["cost"] == 0.0065
    by_model = {r["model"]: r for r in stats.cost_by_model(t)}
    assert by_model["openai/gpt-4o-mini"]["llm_calls"] == 3
    assert by_model["anthropic/claude-3-haiku"]["cost"] == pytest.approx(0.002)
    assert [(r["depth"], r["calls"]) for r in stats.cost_by_depth(t)] == [(0, 1), (1, 1), (2, 1)]
    # tools protocol: the one code run is its execute_code call, not also a "(REPL code block)"
    assert {r["tool"]: r["calls"] for r in stats.tool_distribution(t)} == {"execute_code": 1, "rlm_sub_complete": 1}
    cats = {r["category"]: r["ms"] for r in stats.time_by_category(t)}
    assert cats == {"LLM": 480.0, "tools": 906.0, "REPL": 5.0}
    rows = stats.tokens_per_call(t)
    assert {(r["call"], r["kind"], r["tokens"]) for r in rows} >= {("c0 (d0)", "input", 300), ("c2 (d2)", "output", 5)}
    assert stats.slowest_steps(t, limit=1)[0]["ms"] == 900.0


def test_errors_are_collected(tmp_path, traj):
    TASK, FAILED_TASK, ok_run, failed_run, write = traj.TASK, traj.FAILED_TASK, traj.ok_run, traj.failed_run, traj.write  # noqa: F841
    t = TrajectoryLoader(str(write(tmp_path / "f.jsonl", failed_run("f", 1000.0)))).load_all()
    messages = [m for _, m in t.errors]
    assert any("FileNotFoundError" in m for m in messages)
    assert any("BackendError: HTTP 500" in m for m in messages)
    assert any(m.startswith("run failed") for m in messages)
    assert t.calls["f0"].errors


def test_incremental_reads_only_appended_lines_and_waits_for_a_newline(tmp_path, traj):
    TASK, FAILED_TASK, ok_run, failed_run, write = traj.TASK, traj.FAILED_TASK, traj.ok_run, traj.failed_run, traj.write  # noqa: F841
    events = ok_run("r", 1000.0)
    path = tmp_path / "r.jsonl"
    half = json.dumps(events[5])
    write(path, events[:5], torn=half[:20])  # a line being written
    ld = TrajectoryLoader(str(path))
    assert ld.update() == 5
    t = ld.snapshot()
    assert t.live and set(t.calls) == {"c0"} and ld.bad_lines == 0
    offset = ld.offset
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(half[20:] + "\n" + "".join(json.dumps(e) + "\n" for e in events[6:]))
    assert ld.update() > 0 and ld.offset > offset
    t = ld.snapshot()
    assert not t.live and set(t.calls) == {"c0", "c1", "c2"} and ld.bad_lines == 0
    assert ld.update() == 0  # nothing new


def test_chunked_update_and_bad_lines(tmp_path, traj):
    TASK, FAILED_TASK, ok_run, failed_run, write = traj.TASK, traj.FAILED_TASK, traj.ok_run, traj.failed_run, traj.write  # noqa: F841
    path = tmp_path / "r.jsonl"
    events = ok_run("r", 1000.0)
    path.write_text("not json\n" + "".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    ld = TrajectoryLoader(str(path))
    steps = 0
    while ld.update(max_bytes=300):
        steps += 1
    assert steps > 3 and ld.done
    t = ld.snapshot()
    assert t.bad_lines == 1 and t.events == len(events) and not t.live


def test_long_texts_are_clipped(tmp_path, traj):
    TASK, FAILED_TASK, ok_run, failed_run, write = traj.TASK, traj.FAILED_TASK, traj.ok_run, traj.failed_run, traj.write  # noqa: F841
    events = ok_run("r", 1000.0)
    events[3]["output"] = "x" * 1_000_000
    t = TrajectoryLoader(str(write(tmp_path / "r.jsonl", events))).load_all()
    out = next(s for s in t.calls["c0"].steps if s.type == "repl_execution").text("output")
    assert len(out) < TEXT_CAP + 200 and "more characters" in out
    assert clip({"a": 1}) == '{\n "a": 1\n}' and clip(None) == ""


def test_run_picker_newest_first_with_status_and_search(log_dir, traj):
    TASK, FAILED_TASK, ok_run, failed_run, write = traj.TASK, traj.FAILED_TASK, traj.ok_run, traj.failed_run, traj.write  # noqa: F841
    rows = list_runs(str(log_dir))
    assert [r.task for r in rows] == [FAILED_TASK, TASK]
    failed, ok = rows
    assert failed.status == "error" and "HTTP 500" in failed.error and failed.tokens == 90
    assert ok.status == "ok" and ok.cost == 0.0065 and ok.duration_s == 4.0 and ok.model == "openai/gpt-4o-mini"
    assert [r.task for r in list_runs(str(log_dir), query="quarterly")] == [TASK]
    assert [r.task for r in list_runs(str(log_dir), query="error gpt-4o")] == [FAILED_TASK]
    assert list_runs(str(log_dir), query="nothing-like-this") == []


def test_live_and_incomplete_runs(tmp_path, traj):
    TASK, FAILED_TASK, ok_run, failed_run, write = traj.TASK, traj.FAILED_TASK, traj.ok_run, traj.failed_run, traj.write  # noqa: F841
    write(tmp_path / "live.jsonl", ok_run("live", 1000.0)[:4])
    (row,) = list_runs(str(tmp_path))
    assert row.status == "running" and row.cost is None
    row = summarize(row.path, now=1e12)
    assert row.status == "incomplete"


def test_missing_directory_names_the_fix(tmp_path):
    from rlm.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        check_dir(str(tmp_path / "nope"))
    assert "--dir" in str(err.value)
    assert list_runs(str(tmp_path / "nope")) == []


def test_data_layer_imports_no_streamlit():
    import subprocess

    code = ("import sys, rlm_viz.reader, rlm_viz.runs, rlm_viz.stats, rlm_viz.plugin, rlm_viz.cli;"
            "print('streamlit' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _example(tp):
    """A value of the type ``tp`` of rlm.events (the first member of a union, a shape filled in)."""
    import types
    import typing

    from rlm.events import get_type_hints, is_typeddict

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if is_typeddict(tp):
        return {name: _example(t) for name, t in get_type_hints(tp).items()}
    if origin is typing.Literal:
        return args[0]
    if origin in (typing.Union, types.UnionType):
        return _example(next(a for a in args if a is not type(None)))
    if origin is list:
        return [_example(args[0])] if args else []
    if tp is dict or origin is dict:
        return {}
    return {str: "text", int: 3, float: 1.5, bool: True}.get(tp, "x")


def test_every_event_type_of_the_schema_has_a_view_of_its_own(tmp_path, traj):
    """The dashboard reads every event type rlm.events declares (the contract), none as a raw dump."""
    from rlm.events import EVENT_TYPES

    events = []
    for i, (kind, cls) in enumerate(EVENT_TYPES.items()):
        event = _example(cls)
        event.update(type=kind, call_id="c1", parent_call_id=None, depth=0, timestamp=1000.0 + i, v=1,
                     trajectory_id="t")
        events.append(event)
    t = TrajectoryLoader(str(traj.write(tmp_path / "all.jsonl", events))).load_all()
    steps = [s for c in t.calls.values() for s in c.steps]
    shown = {s.type for s in steps}
    assert shown == set(EVENT_TYPES) - {"tool_start"}  # tool_start is shown with its llm_call and results
    assert not [s.type for s in steps if s.texts and s.texts[0][0] == "event"]  # the generic fallback
    assert any("no answer: text" in message for _, message in t.errors)
