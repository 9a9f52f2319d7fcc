"""The Streamlit app through ``streamlit.testing.v1.AppTest``: picker, tree, charts, errors, search, live view."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("streamlit")

from rlm_viz.cli import app_path
from streamlit.testing.v1 import AppTest


@pytest.fixture
def app(log_dir, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["app.py", "--dir", str(log_dir)])
    monkeypatch.delenv("RLM_VIZ_DIR", raising=False)
    at = AppTest.from_file(app_path(), default_timeout=30)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at) -> str:
    parts = [m.value for m in at.markdown] + [t.value for t in at.text] + [c.value for c in at.code]
    parts += [h.value for h in at.header] + [e.label for e in at.expander]
    return "\n".join(str(p) for p in parts)


def charts(at) -> list:
    return at.get("vega_lite_chart") or at.get("arrow_vega_lite_chart")  # name changed across 1.x


def test_dir_from_argv_reaches_the_app_and_picker_lists_newest_first(app, traj):
    (box,) = app.sidebar.selectbox
    assert len(box.options) == 2
    assert traj.FAILED_TASK in box.options[0] and traj.TASK in box.options[1]
    assert box.options[0].startswith("❌")  # the failed run is marked in the picker
    assert app.header[0].value == traj.FAILED_TASK


def test_env_var_reaches_the_app(log_dir, monkeypatch, traj):
    monkeypatch.setattr(sys, "argv", ["app.py"])
    monkeypatch.setenv("RLM_VIZ_DIR", str(log_dir))
    at = AppTest.from_file(app_path(), default_timeout=30).run()
    assert len(at.sidebar.selectbox[0].options) == 2


def test_errors_are_highlighted(app):
    errors = "\n".join(e.value for e in app.error)
    assert "HTTP 500 from provider" in errors and "FileNotFoundError" in errors
    assert any(e.label.startswith("❌") or "❌" in e.label for e in app.expander)


def test_tree_nests_and_shows_code_and_charts(app, traj):
    box = app.sidebar.selectbox[0]
    box.select(box.options[1]).run()
    assert not app.exception
    assert app.header[0].value == traj.TASK
    labels = [e.label for e in app.expander]
    assert len(labels) == 3
    assert labels[0].startswith("run c0") and labels[1].startswith("↳ sub_complete c1")
    assert labels[2].startswith("↳ ↳ llm_query c2")
    body = texts(app)
    assert "print(sum([1, 2]))" in body and "Q3 total is 42" in body and "deep question" in body
    assert len(charts(app)) >= 6  # tokens, time x2, tools, cost by model, cost by depth
    assert [t.label for t in app.tabs] == ["Tokens", "Durations", "Tools", "Cost"]
    assert not app.error


def test_search_filters_the_picker(app, traj):
    app.sidebar.text_input(key="search").input("quarterly").run()
    assert app.sidebar.selectbox[0].options == [o for o in app.sidebar.selectbox[0].options if traj.TASK in o]
    assert len(app.sidebar.selectbox[0].options) == 1
    app.sidebar.text_input(key="search").input("zzz-no-match").run()
    assert not app.sidebar.selectbox and any("no runs match" in i.value for i in app.sidebar.info)


def test_live_run_is_marked_and_picks_up_new_lines(tmp_path, monkeypatch, traj):
    path = tmp_path / "20990101-000000-live0000.jsonl"
    events = traj.ok_run("live", 4_000_000_000.0)
    traj.write(path, events[:4])
    monkeypatch.setattr(sys, "argv", ["app.py", "--dir", str(tmp_path)])
    at = AppTest.from_file(app_path(), default_timeout=30).run()
    assert not at.exception
    assert any("Live" in i.value for i in at.info)
    assert len(at.expander) == 1
    traj.write(path, events)
    at.run()
    assert len(at.expander) == 3 and not any("Live" in i.value for i in at.info)


def test_missing_directory_shows_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["app.py", "--dir", str(tmp_path / "nope")])
    at = AppTest.from_file(app_path(), default_timeout=30).run()
    assert "--dir" in at.error[0].value
