"""rlm.runs: the one module that lists, finds and summarises runs (``rlm logs`` and rlm-viz)."""

from __future__ import annotations

import json
import os

import pytest
from rlm.errors import ConfigError
from rlm.runs import find_trajectory, first_event, last_run_end, summarize_file, trajectory_files


def _write(path, events, *, mtime=None, torn=False):
    text = "".join(json.dumps(e) + "\n" for e in events) + ('{"type": "llm_c' if torn else "")
    path.write_text(text, encoding="utf-8")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return str(path)


START = {"type": "run_start", "timestamp": 100.0, "model": "m", "prompt": "hello\nworld"}
CALL = {"type": "llm_call", "timestamp": 101.0, "token_usage": {"total": 30}, "cost": 0.25}
END = {"type": "run_end", "timestamp": 103.5, "error": None, "token_usage": {"total": 30}, "cost": 0.25}


def test_listing_is_newest_first_and_skips_other_files(tmp_path):
    old = _write(tmp_path / "a-old.jsonl", [START], mtime=1_000)
    new = _write(tmp_path / "b-new.jsonl", [START], mtime=2_000)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "dir.jsonl").mkdir()
    assert trajectory_files(str(tmp_path)) == [new, old]
    assert trajectory_files(str(tmp_path / "missing")) == []
    assert find_trajectory([new, old], "last") == new
    assert find_trajectory([new, old], "a-") == old
    assert find_trajectory([new, old], "zzz") is None
    with pytest.raises(ConfigError, match="matches 2 trajectories"):
        find_trajectory([new, old], "")


def test_full_and_fast_reads_agree_on_a_finished_run(tmp_path):
    path = _write(tmp_path / "run-1.jsonl", [START, CALL, END])
    row = summarize_file(path)
    assert (row["trajectory_id"], row["status"], row["tokens"], row["cost"]) == ("run-1", "ok", 30, 0.25)
    assert (row["duration_s"], row["prompt"], row["skipped_lines"]) == (3.5, "hello world", 0)
    assert first_event(path) == START
    assert last_run_end(path) == END


def test_a_run_still_being_written(tmp_path):
    path = _write(tmp_path / "run-2.jsonl", [START, CALL], torn=True)
    row = summarize_file(path)
    assert (row["status"], row["tokens"], row["skipped_lines"]) == ("running", 30, 1)
    assert last_run_end(path) is None
    empty = tmp_path / "run-3.jsonl"
    empty.write_bytes(b"")
    assert (first_event(str(empty)), last_run_end(str(empty))) == ({}, None)
