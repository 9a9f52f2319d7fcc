"""``rlm logs rm ID`` and ``rlm logs prune --older-than D [--dry-run]``.

Only regular ``*.jsonl`` files directly in the log directory are ever deleted: never another file,
never a symbolic link nor what it points at.  Age is the file's modification time.  Exit codes:
0 done, 1 no such trajectory (rm) or a file that could not be deleted, 2 usage errors.  ``rlm logs``,
``rlm logs last``, ``rlm logs ID`` and ``rlm logs --schema`` work as before.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from rlm.runs import delete_trajectory, old_trajectories, parse_duration, removable

DAY = 86400


def _trajectory(directory: Path, name: str, *, age_days: float = 0, prompt: str = "hi") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(json.dumps({"type": "run_start", "prompt": prompt, "timestamp": time.time()}) + "\n")
    stamp = time.time() - age_days * DAY
    os.utime(path, (stamp, stamp))
    return path


@pytest.fixture
def logs(project: Path) -> Path:
    return project / "logs"


# --- the duration ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 7 * DAY), ("2w", 14 * DAY), ("1d12h", 1.5 * DAY),
    ("1.5h", 5400), (" 7D ", 7 * DAY), ("0s", 0),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["7", "d", "7x", "-1d", "", "7 days", "1e3s", "d7"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError):
        parse_duration(text)


# --- prune ----------------------------------------------------------------------------------


def test_prune_removes_only_old_trajectories(rlm_cli, project, logs, tmp_path):
    old = _trajectory(logs, "20250101-000000-aaaa.jsonl", age_days=10)
    older = _trajectory(logs, "20240101-000000-zzzz.jsonl", age_days=30)
    new = _trajectory(logs, "20250110-000000-bbbb.jsonl", age_days=1)
    notes = logs / "notes.txt"
    notes.write_text("mine")
    os.utime(notes, (time.time() - 30 * DAY,) * 2)
    outside = _trajectory(tmp_path / "elsewhere", "precious.jsonl", age_days=30)
    link = logs / "20240101-000000-link.jsonl"
    link.symlink_to(outside)
    os.utime(link, (time.time() - 30 * DAY,) * 2, follow_symlinks=False)
    folder = logs / "20240101-000000-dir.jsonl"
    folder.mkdir()
    os.utime(folder, (time.time() - 30 * DAY,) * 2)
    sizes = {p: p.stat().st_size for p in (old, older)}

    result = rlm_cli("logs", "prune", "--older-than", "7d")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [  # oldest first
        f"removed logs/{older.name} ({sizes[older]} bytes)",
        f"removed logs/{old.name} ({sizes[old]} bytes)",
        f"removed 2 trajectories, {sizes[old] + sizes[older]} bytes",
    ]
    assert not old.exists() and not older.exists()
    assert new.exists() and notes.read_text() == "mine" and folder.is_dir()
    assert link.is_symlink() and outside.exists()  # neither the link nor what it points at


def test_prune_dry_run_deletes_nothing(rlm_cli, logs):
    old = _trajectory(logs, "run-old.jsonl", age_days=3)
    new = _trajectory(logs, "run-new.jsonl")
    size = old.stat().st_size
    result = rlm_cli("logs", "prune", "--older-than", "2d", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"would remove logs/run-old.jsonl ({size} bytes)",
        f"would remove 1 trajectory, {size} bytes (dry run: nothing deleted)",
    ]
    assert old.exists() and new.exists()


def test_prune_with_nothing_old_enough_exits_0(rlm_cli, logs):
    _trajectory(logs, "run-new.jsonl", age_days=1)
    result = rlm_cli("logs", "prune", "--older-than", "1w")
    assert result.returncode == 0
    assert result.stdout == "no trajectories older than 1w in logs/\n"
    assert rlm_cli("logs", "prune", "--older-than", "1d", "--log-dir", "missing").stdout == \
        "no trajectories older than 1d in missing/\n"


def test_prune_honours_log_dir(rlm_cli, project):
    kept = _trajectory(project / "logs", "run-a.jsonl", age_days=5)
    gone = _trajectory(project / "other", "run-b.jsonl", age_days=5)
    result = rlm_cli("logs", "prune", "--older-than", "4d", "--log-dir", "other")
    assert result.returncode == 0, result.stderr
    assert kept.exists() and not gone.exists()


@pytest.mark.parametrize("value", ["7", "7x", "soon", "-3d"])
def test_prune_bad_duration_is_one_line_exit_2(rlm_cli, logs, value):
    old = _trajectory(logs, "run-old.jsonl", age_days=30)
    result = rlm_cli("logs", "prune", f"--older-than={value}")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"rlm: error: --older-than {value!r}: not a duration: give a number and a unit, s, m, h, d or w "
        "(e.g. 7d, 12h, 1w2d)"]
    assert old.exists()


def test_prune_without_older_than_is_a_usage_error(rlm_cli, logs):
    old = _trajectory(logs, "run-old.jsonl", age_days=30)
    result = rlm_cli("logs", "prune")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "--older-than" in result.stderr
    assert "Traceback" not in result.stderr and old.exists()


# --- rm -------------------------------------------------------------------------------------


def test_rm_deletes_exactly_one(rlm_cli, logs):
    a = _trajectory(logs, "20250101-000000-aaaa.jsonl", age_days=2)
    b = _trajectory(logs, "20250101-000001-bbbb.jsonl", age_days=1)
    c = _trajectory(logs, "20250102-000000-cccc.jsonl")
    size = a.stat().st_size
    result = rlm_cli("logs", "rm", "20250101-000000-aaaa")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"removed logs/{a.name} ({size} bytes)\n"
    assert not a.exists() and b.exists() and c.exists()

    assert rlm_cli("logs", "rm", "last").stdout.startswith(f"removed logs/{c.name} ")  # the newest
    assert not c.exists() and b.exists()
    assert rlm_cli("logs", "rm", "20250101").returncode == 0  # a unique prefix
    assert not b.exists()


def test_rm_unknown_id_exits_1_with_a_clear_message(rlm_cli, logs):
    kept = _trajectory(logs, "run-a.jsonl")
    result = rlm_cli("logs", "rm", "nope")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == ["rlm: error: no trajectory 'nope' in logs/: run `rlm logs` to list them"]
    assert kept.exists()
    assert rlm_cli("logs", "rm", "last", "--log-dir", "empty").returncode == 1


def test_rm_ambiguous_prefix_or_no_id_is_a_usage_error(rlm_cli, logs):
    a = _trajectory(logs, "run-a.jsonl")
    b = _trajectory(logs, "run-b.jsonl")
    result = rlm_cli("logs", "rm", "run-")
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["rlm: error: 'run-' matches 2 trajectories: give more of the id"]
    missing = rlm_cli("logs", "rm")
    assert missing.returncode == 2 and len(missing.stderr.splitlines()) == 1
    assert a.exists() and b.exists()


def test_rm_does_not_follow_a_symlink(rlm_cli, logs, tmp_path):
    outside = _trajectory(tmp_path / "elsewhere", "precious.jsonl")
    logs.mkdir()
    link = logs / "run-link.jsonl"
    link.symlink_to(outside)
    result = rlm_cli("logs", "rm", "run-link")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "rlm: error: logs/run-link.jsonl is a symbolic link: rlm logs rm deletes only trajectory files: "
        "remove it yourself if you mean to"]
    assert link.is_symlink() and outside.exists()


def test_delete_trajectory_refuses_anything_but_a_trajectory_file_of_the_directory(tmp_path):
    logs = tmp_path / "logs"
    inside = _trajectory(logs, "run.jsonl")
    other = _trajectory(tmp_path / "other", "run.jsonl")
    (logs / "notes.txt").write_text("x")
    for path in (other, logs / "notes.txt", logs / ".." / "other" / "run.jsonl", logs / "gone.jsonl"):
        assert removable(str(logs), str(path)) is None
        with pytest.raises(ValueError):
            delete_trajectory(str(logs), str(path))
    assert other.exists() and (logs / "notes.txt").exists()
    size = inside.stat().st_size
    assert delete_trajectory(str(logs), str(inside)) == size
    assert not inside.exists()


def test_old_trajectories_is_oldest_first_by_mtime(tmp_path):
    logs = tmp_path / "logs"
    _trajectory(logs, "b.jsonl", age_days=3)
    _trajectory(logs, "a.jsonl", age_days=5)
    _trajectory(logs, "c.jsonl", age_days=1)
    assert [Path(p).name for p, _ in old_trajectories(str(logs), 2 * DAY)] == ["a.jsonl", "b.jsonl"]
    assert old_trajectories(str(tmp_path / "missing"), 0) == []


# --- rlm logs as it was ---------------------------------------------------------------------


def test_logs_list_show_last_and_schema_still_work(rlm_cli, logs):
    _trajectory(logs, "20250101-000000-aaaa.jsonl", age_days=1, prompt="first")
    _trajectory(logs, "20250102-000000-bbbb.jsonl", prompt="second")
    listing = rlm_cli("logs")
    assert listing.returncode == 0, listing.stderr
    assert [line.split()[0] for line in listing.stdout.splitlines()] == [
        "20250102-000000-bbbb", "20250101-000000-aaaa"]
    assert "prompt: second" in rlm_cli("logs", "last").stdout
    assert "prompt: first" in rlm_cli("logs", "20250101").stdout
    assert json.loads(rlm_cli("logs", "20250101", "--json").stdout)[0]["prompt"] == "first"
    assert len(json.loads(rlm_cli("logs", "--json", "--limit", "1").stdout)) == 1
    assert "$schema" in json.loads(rlm_cli("logs", "--schema").stdout)
    unknown = rlm_cli("logs", "nope")
    assert unknown.returncode == 2 and "no trajectory 'nope' in logs/" in unknown.stderr
    helped = rlm_cli("logs", "--help")
    assert helped.returncode == 0 and "rm" in helped.stdout and "prune" in helped.stdout
