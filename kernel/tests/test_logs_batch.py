"""``rlm logs`` and the runs of ``rlm batch``: the batch id of ``run_start`` in the listing, and
``rlm logs --batch ID`` listing only that batch's runs.

A batch id counts only as a non-empty printable str of at most 64 characters; anything else in a
file reads as no batch.  A bad ``--batch`` value is a one-line usage error (exit 2).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from rlm.runs import batch_id, summarize_file

BATCH = "b-1a2b3c4d5e6f"
OTHER = "b-ffffffffffff"


def _run(directory: Path, name: str, *, batch: object = None, prompt: str = "hi", error: str | None = None,
         ended: bool = True, age_s: float = 0) -> Path:
    """A trajectory ``name``.jsonl: ``run_start`` (with ``batch_id`` unless it is None), one model
    call and, when ``ended``, a ``run_end``; modified ``age_s`` seconds ago."""
    directory.mkdir(parents=True, exist_ok=True)
    now = time.time() - age_s
    start = {"type": "run_start", "timestamp": now, "model": "fake-model", "prompt": prompt}
    if batch is not None:
        start["batch_id"] = batch
    events = [start, {"type": "llm_call", "timestamp": now + 1, "token_usage": {"total": 10}, "cost": 0.01}]
    if ended:
        events.append({"type": "run_end", "timestamp": now + 2, "error": error, "token_usage": {"total": 10},
                       "cost": 0.01})
    path = directory / f"{name}.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    os.utime(path, (now, now))
    return path


@pytest.fixture
def logs(project: Path) -> Path:
    """A log directory: three runs of BATCH (one failed), one of OTHER, two outside any batch."""
    d = project / "logs"
    _run(d, "run-a1", batch=BATCH, prompt="first of batch", age_s=60)
    _run(d, "run-a2", batch=BATCH, prompt="second of batch", error="boom", age_s=50)
    _run(d, "run-a3", batch=BATCH, prompt="third of batch", age_s=40)
    _run(d, "run-o1", batch=OTHER, prompt="other batch", age_s=30)
    _run(d, "run-s1", prompt="single run", age_s=20)
    _run(d, "run-s2", prompt="another single", age_s=10)
    return d


# --- the row --------------------------------------------------------------------------------


def test_summarize_file_reads_the_batch_id(logs):
    assert summarize_file(str(logs / "run-a1.jsonl"))["batch_id"] == BATCH
    assert summarize_file(str(logs / "run-s1.jsonl"))["batch_id"] is None


@pytest.mark.parametrize("value", ["", "x" * 65, 42, ["b-1"], {"id": "b"}, True, "b-1\nfake", "b-\x1b[31m"])
def test_a_malformed_batch_id_reads_as_none(tmp_path, value):
    path = _run(tmp_path, "run-bad", batch=value)
    assert summarize_file(str(path))["batch_id"] is None
    assert batch_id({"batch_id": value}) is None


def test_a_batch_id_of_64_characters_counts(tmp_path):
    long_id = "b-" + "0" * 62
    assert summarize_file(str(_run(tmp_path, "run-long", batch=long_id)))["batch_id"] == long_id
    assert batch_id({}) is None


# --- the listing ----------------------------------------------------------------------------


def test_listing_shows_a_batch_column_only_when_a_run_has_one(rlm_cli, logs, project):
    result = rlm_cli("logs")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert set(lines) == {"run-a1", "run-a2", "run-a3", "run-o1", "run-s1", "run-s2"}
    assert f"  {BATCH}  fake-model  first of batch" in lines["run-a1"]
    assert f"  {OTHER}  fake-model  other batch" in lines["run-o1"]
    assert f"s  {'-':<{len(BATCH)}}  fake-model  single run" in lines["run-s1"]

    alone = project / "alone"
    _run(alone, "run-x", prompt="no batch here")
    plain = rlm_cli("logs", "--log-dir", "alone").stdout
    assert "s  fake-model  no batch here" in plain and " - " not in plain


def test_json_listing_carries_batch_id(rlm_cli, logs):
    result = rlm_cli("logs", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["trajectory_id"]: r for r in json.loads(result.stdout)}
    assert rows["run-a2"]["batch_id"] == BATCH and rows["run-o1"]["batch_id"] == OTHER
    assert rows["run-s1"]["batch_id"] is None and "batch_id" in rows["run-s2"]


def test_batch_filter_lists_only_that_batch(rlm_cli, logs):
    result = rlm_cli("logs", "--batch", BATCH)
    assert result.returncode == 0, result.stderr
    heading, *rows = result.stdout.splitlines()
    assert heading == f"batch {BATCH}: 3 runs (2 ok, 1 failed)"
    assert [r.split()[0] for r in rows] == ["run-a3", "run-a2", "run-a1"]  # newest first
    assert "failed" in rows[1] and BATCH not in "".join(rows)  # the id is in the heading, not each row

    as_json = json.loads(rlm_cli("logs", "--batch", OTHER, "--json").stdout)
    assert [(r["trajectory_id"], r["batch_id"]) for r in as_json] == [("run-o1", OTHER)]


def test_batch_filter_limit_counts_the_batch_runs_only(rlm_cli, logs):
    result = rlm_cli("logs", "--batch", BATCH, "--limit", "2")
    assert result.returncode == 0, result.stderr
    heading, *rows = result.stdout.splitlines()
    assert heading == f"batch {BATCH}: 2 runs (1 ok, 1 failed) (the newest; --limit lists more)"
    assert [r.split()[0] for r in rows] == ["run-a3", "run-a2"]
    exact = rlm_cli("logs", "--batch", BATCH, "--limit", "3").stdout.splitlines()[0]
    assert exact == f"batch {BATCH}: 3 runs (2 ok, 1 failed)"


def test_batch_filter_counts_a_running_run(rlm_cli, project):
    _run(project / "logs", "run-live", batch=BATCH, ended=False)
    assert rlm_cli("logs", "--batch", BATCH).stdout.splitlines()[0] == f"batch {BATCH}: 1 run (1 running)"


def test_batch_with_no_runs_names_the_fix(rlm_cli, logs):
    result = rlm_cli("logs", "--batch", "b-000000000000")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "no runs of batch 'b-000000000000' in logs/: run `rlm logs` to see the batch ids\n"
    assert json.loads(rlm_cli("logs", "--batch", "b-000000000000", "--json").stdout) == []


@pytest.mark.parametrize("value", ["", "x" * 65])
def test_a_bad_batch_value_is_one_line_exit_2(rlm_cli, logs, value):
    result = rlm_cli("logs", f"--batch={value}")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        (f"rlm: error: --batch {value!r}: not a batch id: give the id from the batch column of `rlm logs` "
         "(e.g. b-1a2b3c4d5e6f)")]


def test_batch_with_a_trajectory_id_is_one_line_exit_2(rlm_cli, logs):
    result = rlm_cli("logs", "run-a1", "--batch", BATCH)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "rlm: error: --batch filters the listing, not one run: drop --batch, or drop 'run-a1' to list the batch"]
    assert "Traceback" not in result.stderr
