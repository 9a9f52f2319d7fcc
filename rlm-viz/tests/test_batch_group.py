"""Runs of ``rlm batch`` as a group: RunSummary.batch_id, search on it, the groups, and the app's
"Batch" box that narrows the run picker (shown only when a listed run belongs to a batch)."""

from __future__ import annotations

import sys

import pytest
from rlm_viz.model import BatchGroup
from rlm_viz.runs import batch_groups, list_runs, summarize

BATCH = "b-1a2b3c4d5e6f"
OTHER = "b-ffffffffffff"


def _with_batch(events: list[dict], batch: object) -> list[dict]:
    """``events`` with ``batch_id`` set on their ``run_start``."""
    return [{**e, "batch_id": batch} if e["type"] == "run_start" else e for e in events]


@pytest.fixture
def batch_dir(tmp_path, traj):
    """Two ok runs and one failed run of BATCH, one ok run of OTHER, one run outside any batch
    (newest first: solo, other, failed, ok-2, ok-1)."""
    d = tmp_path / "logs"
    d.mkdir()
    runs = [("20250101-000001-aaaa0001", traj.ok_run, BATCH), ("20250101-000002-aaaa0002", traj.ok_run, BATCH),
            ("20250101-000003-aaaa0003", traj.failed_run, BATCH), ("20250101-000004-bbbb0001", traj.ok_run, OTHER),
            ("20250101-000005-ssss0001", traj.ok_run, None)]
    for n, (tid, build, batch) in enumerate(runs):
        events = build(tid, 1_700_000_000.0 + n * 100)
        traj.write(d / f"{tid}.jsonl", _with_batch(events, batch) if batch else events)
    return d


def test_summary_reads_the_batch_id(batch_dir):
    assert summarize(str(batch_dir / "20250101-000003-aaaa0003.jsonl")).batch_id == BATCH
    assert summarize(str(batch_dir / "20250101-000005-ssss0001.jsonl")).batch_id is None


@pytest.mark.parametrize("value", ["", "x" * 65, 7, ["b"], "b-1\nx"])
def test_a_malformed_batch_id_reads_as_none(tmp_path, traj, value):
    path = traj.write(tmp_path / "r.jsonl", _with_batch(traj.ok_run("r", 1000.0), value))
    assert summarize(str(path)).batch_id is None


def test_search_matches_the_batch_id(batch_dir):
    found = list_runs(str(batch_dir), query="1A2B3C")
    assert sorted(r.trajectory_id for r in found) == [
        "20250101-000001-aaaa0001", "20250101-000002-aaaa0002", "20250101-000003-aaaa0003"]
    assert [r.trajectory_id for r in list_runs(str(batch_dir), query=f"{OTHER} quarterly")] == [
        "20250101-000004-bbbb0001"]
    assert len(list_runs(str(batch_dir), query="")) == 5


def test_groups_count_runs_ok_and_failed_newest_first(batch_dir):
    groups = batch_groups(list_runs(str(batch_dir)))
    assert groups == [BatchGroup(OTHER, runs=1, ok=1, failed=0), BatchGroup(BATCH, runs=3, ok=2, failed=1)]
    assert groups[1].label == f"{BATCH} · 3 runs · 2 ok · 1 failed"
    assert groups[0].label == f"{OTHER} · 1 run · 1 ok · 0 failed"
    assert batch_groups([r for r in list_runs(str(batch_dir)) if r.batch_id is None]) == []


# --- the app ----------------------------------------------------------------------------------


@pytest.fixture
def app_at(monkeypatch):
    pytest.importorskip("streamlit")
    from rlm_viz.cli import app_path
    from streamlit.testing.v1 import AppTest

    def start(directory):
        monkeypatch.setattr(sys, "argv", ["app.py", "--dir", str(directory)])
        monkeypatch.delenv("RLM_VIZ_DIR", raising=False)
        at = AppTest.from_file(app_path(), default_timeout=30).run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return start


def _ids(at) -> list[str]:
    return [o.rsplit("·", 1)[1].strip() for o in at.sidebar.selectbox(key="run").options]


def test_batch_box_filters_the_picker(app_at, batch_dir):
    at = app_at(batch_dir)
    box = at.sidebar.selectbox(key="batch")
    assert box.label == "Batch"
    assert box.options == ["all runs", f"{OTHER} · 1 run · 1 ok · 0 failed", f"{BATCH} · 3 runs · 2 ok · 1 failed"]
    assert len(_ids(at)) == 5

    box.select(BATCH).run()
    assert not at.exception
    assert _ids(at) == ["20250101-000003-aaaa0003", "20250101-000002-aaaa0002", "20250101-000001-aaaa0001"]
    assert any(f"batch `{BATCH}`" in c.value for c in at.caption)  # the run's header names its batch

    at.sidebar.selectbox(key="batch").select("").run()
    assert len(_ids(at)) == 5


def test_header_of_a_run_outside_a_batch_names_none(app_at, batch_dir):
    at = app_at(batch_dir)
    at.sidebar.selectbox(key="run").select("20250101-000005-ssss0001").run()
    assert not at.exception and not any("batch `" in c.value for c in at.caption)


def test_no_batch_box_without_batches(app_at, log_dir):
    at = app_at(log_dir)
    assert [b.label for b in at.sidebar.selectbox] == ["Run"]
