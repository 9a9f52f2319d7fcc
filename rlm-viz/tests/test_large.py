"""A large trajectory in the app (``AppTest``): one bounded page reaches the browser, the pagers reach
the last call and the last turn, a cut text is shown in full on demand; and :mod:`rlm_viz.page`."""

from __future__ import annotations

import json
import sys

import pytest
from rlm_viz import page
from rlm_viz.model import TEXT_CAP
from rlm_viz.reader import TrajectoryLoader

TID = "20250101-000000-big00000"
TURNS = 75  # LLM turns of the top call (with run_start, a tool result, run_end: 78 steps, 4 pages)
SUBCALLS = 60  # sub-calls: more than one page of calls
HUGE = "huge-output-start " + "x" * 3_000_000 + " huge-output-END"  # one tool output of 3 MB
RESPONSE = "lorem ipsum " * 400  # ~4.8 KB: clipped by the reader, previewed by the page


def big_run(traj) -> list[dict]:
    ev = traj.ev
    c = {"tid": TID}
    events = [ev("run_start", "c0", ts=1000.0, prompt="A very long task", model="m", environment="local",
                 protocol="tools", **c),
              ev("tool_results", "c0", ts=1000.5, tool_results=[
                  {"call_id": "h", "name": "read_file", "content": HUGE, "is_error": False, "duration_ms": 5.0}], **c)]
    for turn in range(TURNS):
        events.append(ev("llm_call", "c0", ts=1001.0 + turn, model="m", prompt=[], response=f"turn {turn}: {RESPONSE}",
                         tool_calls=[], token_usage={"input": 10, "output": 5, "total": 15}, cost=0.001,
                         duration_ms=50.0, **c))
    for n in range(1, SUBCALLS + 1):
        sub = {"parent": "c0", "depth": 1, "sub": "sub_complete", **c}
        events += [ev("call_start", f"s{n}", ts=2000.0 + n, prompt=f"sub task {n}", **sub),
                   ev("llm_call", f"s{n}", ts=2000.1 + n, model="m", prompt=[], response=f"sub answer {n} {RESPONSE}",
                      tool_calls=[], token_usage={"input": 10, "output": 5, "total": 15}, cost=0.001,
                      duration_ms=50.0, **sub),
                   ev("call_end", f"s{n}", ts=2000.2 + n, response=f"sub answer {n}", duration_ms=200.0, **sub)]
    events.append(ev("run_end", "c0", ts=3000.0, response="all done", error=None, limit_hit=None,
                     answer_source="text", token_usage={"input": 1, "output": 1, "total": 2}, cost=0.1,
                     duration_ms=2000.0, **c))
    return events


@pytest.fixture
def big(tmp_path, monkeypatch, traj):
    pytest.importorskip("streamlit")
    from rlm_viz.cli import app_path
    from streamlit.testing.v1 import AppTest

    traj.write(tmp_path / f"{TID}.jsonl", big_run(traj))
    monkeypatch.setattr(sys, "argv", ["app.py", "--dir", str(tmp_path)])
    monkeypatch.delenv("RLM_VIZ_DIR", raising=False)
    at = AppTest.from_file(app_path(), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def nodes(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from nodes(child)


def sent(at) -> tuple[int, int]:
    """(elements, bytes of their protobufs): what the script sent to the browser."""
    elements = [n for n in nodes(at._tree) if getattr(n, "proto", None) is not None]
    return len(elements), sum(len(n.proto.SerializeToString()) for n in elements)


def vega(at) -> list:
    """The Altair/Vega-Lite charts of the page (whatever this Streamlit calls their element)."""
    return [n for n in nodes(at._tree) if "vega_lite_chart" in str(getattr(n, "type", ""))]


def body(at) -> str:
    return "\n".join(str(x.value) for kind in ("text", "code", "markdown", "caption") for x in at.get(kind))


def test_a_large_run_sends_one_bounded_page(big):
    elements, size = sent(big)
    # (the file is 3.6 MB; this page is ~200 elements and ~190 KB, charts included; rendering every
    # call's steps, as the dashboard once did, sent 760 elements and 530 KB, and 9.6 MB for 100 MB)
    assert elements < 300 and size < 300_000
    assert not big.help  # no value rendered by Streamlit's "magic" (a bare expression in the script)
    assert len(big.expander) == page.CALLS_PER_PAGE
    assert f"calls 1–{page.CALLS_PER_PAGE} of {SUBCALLS + 1}" in body(big)
    assert f"steps 1–{page.STEPS_PER_PAGE} of {TURNS + 3}" in body(big)  # the open top call, paged
    assert "sub task 1" not in body(big)  # a closed call's steps are not sent
    assert "huge-output-start" in body(big) and "huge-output-END" not in body(big)
    longest = max(len(str(x.value)) for kind in ("text", "code") for x in big.get(kind))
    assert longest <= page.PREVIEW_CHARS + 100


def test_pagers_reach_the_last_call_and_the_last_turn(big):
    big.pagination(key=f"steps:{TID}:c0").set_value(page.pages(TURNS + 3, page.STEPS_PER_PAGE)).run()
    assert f"turn {TURNS - 1}: lorem" in body(big) and "all done" in body(big)
    assert "turn 1: lorem" not in body(big)  # (the timeline above the tree shows turn 0, the top call's first)

    last = page.pages(SUBCALLS + 1, page.CALLS_PER_PAGE)
    big.pagination(key=f"calls:{TID}").set_value(last).run()
    assert not big.exception
    labels = [e.label for e in big.expander]
    assert labels[-1].startswith(f"↳ sub_complete s{SUBCALLS} ")
    big.session_state[f"open:{TID}:s{SUBCALLS}"] = True  # open the last call
    big.run()
    assert f"sub task {SUBCALLS}" in body(big) and f"sub answer {SUBCALLS}" in body(big)


def test_a_cut_output_is_shown_in_full_on_demand(big):
    toggles = [t for t in big.toggle if t.key.startswith(f"full:tree:{TID}:1:tool_results.0.content")]
    assert len(toggles) == 1 and toggles[0].label == "full text"
    toggles[0].set_value(True).run()
    assert not big.exception
    assert f"characters 1–{page.FULL_PAGE_CHARS:,} of {len(HUGE):,}" in body(big)
    assert "huge-output-END" not in body(big)  # still one page at a time, never the 3 MB whole
    assert sent(big)[1] < 500_000
    key = f"full:tree:{TID}:1:tool_results.0.content:page"
    big.pagination(key=key).set_value(page.pages(len(HUGE), page.FULL_PAGE_CHARS)).run()
    assert "huge-output-END" in body(big)
    assert [b.label for b in big.get("download_button")] == ["download the full text"]


def test_a_small_run_still_shows_every_call(log_dir, monkeypatch):
    """Runs of at most EAGER_CALLS calls keep every call's steps in the page (no pager, no lazy expander)."""
    pytest.importorskip("streamlit")
    from rlm_viz.cli import app_path
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr(sys, "argv", ["app.py", "--dir", str(log_dir)])
    at = AppTest.from_file(app_path(), default_timeout=30).run()
    at.sidebar.selectbox(key="run").select(at.sidebar.selectbox(key="run").options[1]).run()
    assert not at.get("pagination") and not [t for t in at.toggle if t.key.startswith("full:")] and not at.help
    assert "deep question" in body(at)  # the steps of a closed sub-call


# --- rlm_viz.page ------------------------------------------------------------------------------


def test_pages_and_previews():
    assert page.pages(0, 20) == 1 and page.pages(20, 20) == 1 and page.pages(21, 20) == 2
    assert page.page_range(45, 3, 20) == range(40, 45)
    assert page.page_range(45, 99, 20) == range(40, 45) and page.page_range(45, 0, 20) == range(0, 20)
    assert page.preview("abc", 5) == ("abc", False)
    shown, cut = page.preview("x" * 50, 10)
    assert cut and shown == "x" * 10 + "\n… [only the first 10 characters shown]"


def test_event_offsets_number_events_as_the_reader_does(tmp_path, traj):
    events = traj.ok_run("r", 1000.0)
    lines = [json.dumps(e) for e in events]
    # a blank line, a non-object, an unreadable line that looks like an object, a torn last line
    text = (lines[0] + "\n\n[1, 2]\n" + "\n".join(lines[1:4]) + "\n{not json}\n" + "\n".join(lines[4:]) + "\n"
            + lines[0][:30])
    path = tmp_path / "r.jsonl"
    path.write_text(text, encoding="utf-8")
    t = TrajectoryLoader(str(path)).load_all()
    steps = sorted((s for c in t.calls.values() for s in c.steps), key=lambda s: s.index)
    offsets = page.event_offsets(str(path))
    assert len(offsets) == len(events) + 1  # the unreadable line is taken for an object ...
    assert len(page.event_offsets(str(path), exact=True)) == len(events)  # ... unless parsed
    for step in steps:  # ... and read_event still finds every step, by an exact scan where they disagree
        event = page.read_event(str(path), offsets, step)
        assert event["type"] == step.type and event["timestamp"] == step.timestamp


def test_full_text_reads_one_field_back_unclipped(tmp_path, traj):
    events = traj.ok_run("r", 1000.0)
    events[3]["output"] = "y" * (TEXT_CAP * 3)
    events[4]["tool_results"].insert(0, "not a dict")  # the reader skips it: so does the field path
    path = str(traj.write(tmp_path / "r.jsonl", events))
    t = TrajectoryLoader(path).load_all()
    offsets = page.event_offsets(path)
    repl = next(s for s in t.calls["c0"].steps if s.type == "repl_execution")
    assert len(repl.text("output")) < TEXT_CAP + 200
    assert page.full_text(path, offsets, repl, ("output",)) == "y" * (TEXT_CAP * 3)
    tools = next(s for s in t.calls["c0"].steps if s.type == "tool_results")
    assert page.full_text(path, offsets, tools, ("tool_results", 0, "content")) == "3"
    assert page.full_text(path, offsets, tools, ("tool_results", 5, "content")) == ""
    traj.write(tmp_path / "r.jsonl", events[:2])  # replaced by a shorter file
    with pytest.raises(LookupError, match="reload the page"):
        page.full_text(path, page.event_offsets(path), repl, ("output",))


def test_only_the_open_tab_of_charts_is_sent(big):
    assert [t.label for t in big.tabs] == ["Tokens", "Durations", "Tools", "Cost"]
    # 61 calls: the top 15 and "others", and a histogram of all of them
    assert len(vega(big)) == 2 and [s.value for s in big.subheader][-2:] == [
        "Tokens per call (top 15 of 61, and the others)", "Calls by tokens"]
    big.session_state[f"charts:{TID}"] = "Cost"
    big.run()
    assert [s.value for s in big.subheader][-2:] == ["Cost by model", "Cost by depth"] and len(vega(big)) == 2


def test_page_and_browser_import_no_streamlit():
    import subprocess

    code = "import sys, rlm_viz.page, rlm_viz.browser; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
