"""rlm_repl.quota.WriteQuota on real files in tmp_path.

Every check reads the filesystem itself (what exists, its size) rather than
trusting the quota's own numbers; the property test keeps its own model of the
session's additions, built with os.walk.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rlm.environment import EnvironmentSettings
from rlm_repl import quota as quota_module
from rlm_repl.quota import MIB, Usage, WriteQuota, file_size_limit

KIB = 1024


def _write(path: Path, size: int, *, mtime: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    if mtime is not None:
        os.utime(path, ns=(mtime * 10**9, mtime * 10**9))
    return path


def _snapshot(root: Path) -> dict[tuple[int, int], tuple[str, int]]:
    """(dev, ino) -> (path, size) of everything under root, nothing followed (the test's own model)."""
    out = {}
    for directory, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st_ = os.lstat(path)
            size = st_.st_size if os.path.isfile(path) and not os.path.islink(path) else 0
            out[(st_.st_dev, st_.st_ino)] = (path, size)
    return out


def _added(base: dict, now: dict) -> tuple[int, int]:
    added_bytes = added_files = 0
    for key, (_, size) in now.items():
        if key in base:
            added_bytes += max(0, size - base[key][1])
        else:
            added_bytes += size
            added_files += 1
    return added_bytes, added_files


@pytest.fixture
def area(tmp_path: Path) -> Path:
    area = tmp_path / "writable"
    area.mkdir()
    return area


# --- within quota ---------------------------------------------------------------------------


def test_within_quota_is_none_and_usage_counts(area):
    _write(area / "old.txt", 100)
    quota = WriteQuota([str(area)], max_bytes=10 * KIB, max_files=5)
    quota.baseline()
    assert quota.usage() == Usage(0, 0, True)
    _write(area / "new.txt", 3 * KIB)
    with open(area / "old.txt", "ab") as f:
        f.write(b"y" * 50)
    (area / "sub").mkdir()
    assert quota.usage() == Usage(added_bytes=3 * KIB + 50, added_files=2, complete=True)
    assert quota.remaining_bytes() == 10 * KIB - 3 * KIB - 50
    assert quota.enforce() is None
    assert (area / "new.txt").exists() and (area / "sub").is_dir()


def test_shrinking_counts_as_zero(area):
    _write(area / "old.txt", 5 * KIB)
    quota = WriteQuota([str(area)], max_bytes=KIB, max_files=5)
    quota.baseline()
    (area / "old.txt").write_bytes(b"")
    assert quota.usage().added_bytes == 0
    assert quota.enforce() is None


def test_no_paths_is_a_noop(tmp_path):
    quota = WriteQuota([], max_bytes=0, max_files=0)
    quota.baseline()
    _write(tmp_path / "big.bin", 10 * KIB)
    assert not quota.active
    assert quota.usage() == Usage(0, 0, True)
    assert quota.enforce() is None
    assert quota.remaining_bytes() == 0
    assert (tmp_path / "big.bin").exists()


def test_from_settings(area):
    quota = WriteQuota.from_settings(EnvironmentSettings(writable_paths=[area], write_quota_mb=1.5,
                                                         write_quota_files=7))
    assert (quota.paths, quota.max_bytes, quota.max_files) == ((str(area),), int(1.5 * MIB), 7)
    assert not WriteQuota.from_settings(EnvironmentSettings()).active


def test_bad_limits_are_refused(area):
    for bad in (-1, 1.5, True, None):
        with pytest.raises(ValueError, match="max_bytes"):
            WriteQuota([str(area)], max_bytes=bad, max_files=1)  # type: ignore[arg-type]


# --- too many bytes --------------------------------------------------------------------------


def test_a_new_big_file_over_the_quota_is_removed(area):
    _write(area / "keep.txt", 10 * KIB)
    quota = WriteQuota([str(area)], max_bytes=100 * KIB, max_files=10)
    quota.baseline()
    base = _snapshot(area)
    _write(area / "small.txt", 10 * KIB, mtime=1_000)
    _write(area / "big.bin", 200 * KIB, mtime=2_000)
    message = quota.enforce()
    assert message is not None
    assert message.startswith("QuotaExceeded: the session wrote 0.2 MiB (quota 0.0976562 MiB) and 2 new files")
    assert "removed big.bin to get back under it" in message
    assert message.endswith("Raise write_quota_mb / write_quota_files or write less.")
    assert not (area / "big.bin").exists()
    assert (area / "small.txt").exists() and (area / "keep.txt").read_bytes() == b"x" * 10 * KIB
    added_bytes, _ = _added(base, _snapshot(area))
    assert added_bytes <= 100 * KIB
    assert quota.enforce() is None


def test_newest_files_go_first_until_under_the_bytes(area):
    quota = WriteQuota([str(area)], max_bytes=25 * KIB, max_files=100)
    quota.baseline()
    for i in range(6):
        _write(area / f"f{i}.bin", 10 * KIB, mtime=1_000 + i)
    message = quota.enforce()
    assert message is not None and "removed f5.bin, f4.bin, f3.bin, f2.bin to get back under it" in message
    assert sorted(p.name for p in area.iterdir()) == ["f0.bin", "f1.bin"]


def test_the_list_of_names_is_capped(area):
    quota = WriteQuota([str(area)], max_bytes=100 * KIB, max_files=1)
    quota.baseline()
    for i in range(20):
        _write(area / f"n{i:02d}", 1, mtime=1_000 + i)
    message = quota.enforce()
    assert message is not None
    assert "removed n19, n18, n17, n16, n15 and 14 more to get back under it" in message
    assert [p.name for p in area.iterdir()] == ["n00"]


# --- too many files ---------------------------------------------------------------------------


def test_too_many_new_files_newest_removed_until_max_files(area):
    for i in range(3):
        _write(area / f"old{i}", 1)
    quota = WriteQuota([str(area)], max_bytes=MIB, max_files=4)
    quota.baseline()
    for i in range(10):
        _write(area / f"new{i}", 1, mtime=1_000 + i)
    message = quota.enforce()
    assert message is not None
    assert "10 new files (quota 4)" in message
    assert sorted(p.name for p in area.iterdir()) == ["new0", "new1", "new2", "new3", "old0", "old1", "old2"]
    assert quota.enforce() is None


def test_new_directories_count_as_files_and_are_removed_when_empty(area):
    quota = WriteQuota([str(area)], max_bytes=MIB, max_files=1)
    quota.baseline()
    deep = area / "a" / "b" / "c"
    deep.mkdir(parents=True)
    _write(deep / "f.txt", 10)
    assert quota.usage().added_files == 4
    message = quota.enforce()
    assert message is not None
    _, added_files = _added({}, _snapshot(area))
    assert added_files <= 1
    assert list(area.iterdir()) in ([], [area / "a"])


def test_a_new_directory_holding_a_moved_baseline_file_is_kept(area):
    _write(area / "precious.txt", 100)
    quota = WriteQuota([str(area)], max_bytes=MIB, max_files=0)
    quota.baseline()
    (area / "d1").mkdir()
    (area / "d2").mkdir()
    os.rename(area / "precious.txt", area / "d2" / "precious.txt")
    os.utime(area / "d1", ns=(10**9, 10**9))
    os.utime(area / "d2", ns=(2 * 10**9, 2 * 10**9))
    message = quota.enforce()
    assert message is not None and "removed d1; still over it: 0.0 MiB and 1 new files" in message
    assert (area / "d2" / "precious.txt").read_bytes() == b"x" * 100
    assert not (area / "d1").exists()


def test_hard_links_count_once(area):
    quota = WriteQuota([str(area)], max_bytes=15 * KIB, max_files=5)
    quota.baseline()
    _write(area / "a.bin", 10 * KIB)
    os.link(area / "a.bin", area / "b.bin")
    assert quota.usage() == Usage(10 * KIB, 1, True)
    _write(area / "c.bin", 10 * KIB, mtime=1)
    os.utime(area / "a.bin", ns=(2 * 10**9, 2 * 10**9))
    assert quota.enforce() is not None
    assert sorted(p.name for p in area.iterdir()) == ["c.bin"]  # both names of the newest file went


# --- baseline files are never removed ---------------------------------------------------------


def test_growth_of_a_baseline_file_is_reported_and_the_file_kept(area):
    _write(area / "log.txt", 10 * KIB)
    quota = WriteQuota([str(area)], max_bytes=50 * KIB, max_files=5)
    quota.baseline()
    with open(area / "log.txt", "ab") as f:
        f.write(b"y" * 100 * KIB)
    grown = (area / "log.txt").read_bytes()
    message = quota.enforce()
    assert message is not None
    assert "the excess is growth of files that were there before the session (log.txt +0.1 MiB)" in message
    assert "they are left as they are" in message and "removed" not in message
    assert (area / "log.txt").read_bytes() == grown


def test_growth_over_quota_with_new_files_removes_the_new_ones(area):
    _write(area / "log.txt", 10)
    quota = WriteQuota([str(area)], max_bytes=50 * KIB, max_files=5)
    quota.baseline()
    with open(area / "log.txt", "ab") as f:
        f.write(b"y" * 100 * KIB)
    _write(area / "new.txt", 1)
    message = quota.enforce()
    assert message is not None and "removed new.txt" in message and "log.txt" in message
    assert (area / "log.txt").stat().st_size == 10 + 100 * KIB
    assert not (area / "new.txt").exists()


def test_a_renamed_baseline_file_is_not_counted(area):
    _write(area / "data.csv", 80 * KIB)
    quota = WriteQuota([str(area)], max_bytes=50 * KIB, max_files=1)
    quota.baseline()
    (area / "moved").mkdir()
    os.rename(area / "data.csv", area / "moved" / "renamed.csv")
    assert quota.usage() == Usage(0, 1, True)
    assert quota.enforce() is None


def test_a_baseline_file_rewritten_in_place_is_growth_and_kept(area):
    _write(area / "config.json", 10 * KIB)
    quota = WriteQuota([str(area)], max_bytes=20 * KIB, max_files=5)
    quota.baseline()
    _write(area / "tmp", 60 * KIB)
    os.replace(area / "tmp", area / "config.json")  # an atomic save: a new inode at the old path
    assert quota.usage() == Usage(50 * KIB, 0, True)
    message = quota.enforce()
    assert message is not None and "growth of files that were there before" in message
    assert (area / "config.json").stat().st_size == 60 * KIB


def test_a_quota_never_baselined_counts_nothing_that_was_there(area):
    _write(area / "old.bin", 10 * KIB)
    quota = WriteQuota([str(area)], max_bytes=1, max_files=0)
    assert quota.enforce() is None
    assert (area / "old.bin").exists()


# --- symlinks and the edges of the writable paths --------------------------------------------


def test_symlinks_are_never_followed_and_their_targets_never_deleted(tmp_path, area):
    outside = tmp_path / "outside"
    canary = _write(outside / "canary.txt", 100 * KIB)
    _write(outside / "dir" / "deep.bin", 100 * KIB)
    quota = WriteQuota([str(area)], max_bytes=10 * KIB, max_files=0)
    quota.baseline()
    os.symlink(canary, area / "link-to-file")
    os.symlink(outside / "dir", area / "link-to-dir")
    assert quota.usage() == Usage(0, 2, True)  # two files of size 0, nothing under them counted
    message = quota.enforce()
    assert message is not None and "link-to-file" in message and "link-to-dir" in message
    assert canary.read_bytes() == b"x" * 100 * KIB
    assert (outside / "dir" / "deep.bin").exists()
    assert list(area.iterdir()) == []


def test_nothing_outside_the_writable_paths_is_removed_even_when_a_parent_is_swapped(tmp_path, area, monkeypatch):
    outside = tmp_path / "outside"
    canary = _write(outside / "f.bin", 10 * KIB)
    quota = WriteQuota([str(area)], max_bytes=KIB, max_files=10)
    quota.baseline()
    _write(area / "sub" / "f.bin", 10 * KIB)
    real_scan = quota._scan

    def scan_then_swap():
        scan = real_scan()
        if not (area / "sub").is_symlink():  # after the walk, the session swaps sub for a link to outside
            os.rename(area / "sub", tmp_path / "sub-moved")
            os.symlink(outside, area / "sub")
        return scan

    monkeypatch.setattr(quota, "_scan", scan_then_swap)
    message = quota.enforce()
    assert message is not None and "removed" not in message
    assert canary.read_bytes() == b"x" * 10 * KIB


def test_a_writable_path_swapped_for_a_link_to_elsewhere_is_not_walked(tmp_path, area):
    outside = tmp_path / "outside"
    canary = _write(outside / "canary.bin", 10 * KIB)
    quota = WriteQuota([str(area)], max_bytes=KIB, max_files=0)
    quota.baseline()
    area.rmdir()
    os.symlink(outside, area)
    assert quota.usage() == Usage(0, 0, False)
    message = quota.enforce()
    assert message is not None and f"could not list {area}" in message
    assert canary.read_bytes() == b"x" * 10 * KIB


def test_a_writable_path_given_as_a_single_file(tmp_path):
    target = tmp_path / "out.bin"
    quota = WriteQuota([str(target)], max_bytes=KIB, max_files=5)
    quota.baseline()
    _write(target, 10 * KIB)
    assert quota.usage() == Usage(10 * KIB, 1, True)
    assert quota.enforce() is not None
    assert not target.exists()


def test_nested_and_repeated_paths_are_walked_once(area):
    inner = area / "inner"
    inner.mkdir()
    quota = WriteQuota([str(area), str(inner), str(area)], max_bytes=MIB, max_files=10)
    quota.baseline()
    _write(inner / "a", KIB)
    assert quota.usage() == Usage(KIB, 1, True)


# --- bounded walks and races -----------------------------------------------------------------


def test_the_walk_is_bounded(area, monkeypatch):
    monkeypatch.setattr(quota_module, "WALK_SLACK", 3)
    _write(area / "old", 1)
    quota = WriteQuota([str(area)], max_bytes=MIB, max_files=2)
    quota.baseline()
    for i in range(30):
        _write(area / f"n{i:02d}", 1, mtime=1_000 + i)
    usage = quota.usage()
    assert not usage.complete
    assert usage.added_files <= 2 + 1 + 3
    message = quota.enforce()
    assert message is not None and "more than" in message and "the count stopped there" in message
    after = quota.usage()
    assert after.complete and after.added_files <= 2
    assert (area / "old").exists()
    assert len(list(area.iterdir())) == 3


def test_files_vanishing_mid_walk(area, monkeypatch):
    quota = WriteQuota([str(area)], max_bytes=KIB, max_files=100)
    quota.baseline()
    for i in range(5):
        _write(area / f"f{i}", 10 * KIB)
    real_scandir = os.scandir

    class Vanishing:
        def __init__(self, path):
            self.it = real_scandir(path)

        def __enter__(self):
            entries = list(self.it)
            for entry in entries[:2]:
                os.unlink(entry.path)  # gone between listing and stat
            return iter(entries)

        def __exit__(self, *exc):
            self.it.close()

    monkeypatch.setattr(os, "scandir", Vanishing)
    usage = quota.usage()
    assert usage.added_files == 3 and usage.added_bytes == 30 * KIB
    monkeypatch.setattr(os, "scandir", real_scandir)
    real_unlink = os.unlink

    def unlink_racing(path, *args, **kwargs):
        real_unlink(path, *args, **kwargs)
        raise FileNotFoundError(path)  # someone else removed it first

    monkeypatch.setattr(os, "unlink", unlink_racing)
    assert quota.enforce() is not None
    monkeypatch.setattr(os, "unlink", real_unlink)
    assert list(area.iterdir()) == []


def test_a_directory_that_cannot_be_listed(area, monkeypatch):
    quota = WriteQuota([str(area)], max_bytes=MIB, max_files=100)
    quota.baseline()
    hidden = area / "hidden"
    _write(hidden / "x.bin", 10)
    real_scandir = os.scandir

    def refusing(path):
        if os.fspath(path) == str(hidden):
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    usage = quota.usage()
    assert usage == Usage(0, 1, False)
    message = quota.enforce()
    assert message is not None and "could not list hidden" in message
    assert (hidden / "x.bin").exists()


def test_a_directory_unreadable_at_the_baseline_is_left_alone(area, monkeypatch):
    locked = area / "locked"
    _write(locked / "theirs.bin", 10 * KIB)
    real_scandir = os.scandir

    def refusing(path):
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    quota = WriteQuota([str(area)], max_bytes=KIB, max_files=0)
    quota.baseline()
    assert quota.usage() == Usage(0, 0, True)
    (locked / "inner").mkdir()
    _write(locked / "more.bin", 10 * KIB)

    def inner_refused(path):  # locked is listable now, a directory under it is not
        if os.fspath(path) == str(locked / "inner"):
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", inner_refused)
    assert quota.usage() == Usage(0, 0, True)  # under a directory unknown at the baseline: neither counted nor hidden
    monkeypatch.setattr(os, "scandir", real_scandir)  # readable now: still not ours to count or remove
    assert quota.enforce() is None
    assert (locked / "theirs.bin").exists()


# --- file_size_limit --------------------------------------------------------------------------


def test_file_size_limit(area):
    assert file_size_limit(None, None) is None
    assert file_size_limit(None, 500) == 500
    assert file_size_limit(WriteQuota([], max_bytes=10, max_files=1), None) is None
    quota = WriteQuota([str(area)], max_bytes=10 * KIB, max_files=10)
    quota.baseline()
    assert file_size_limit(quota, None) == 10 * KIB
    assert file_size_limit(quota, KIB) == KIB
    _write(area / "a", 4 * KIB)
    assert file_size_limit(quota, 100 * KIB) == 6 * KIB
    _write(area / "b", 40 * KIB)
    assert file_size_limit(quota, None) == 0
    with pytest.raises(ValueError, match="max_file_bytes"):
        file_size_limit(quota, -1)


# --- property: after enforce, the session is within its quota ---------------------------------

_op = st.one_of(
    st.tuples(st.just("new"), st.integers(0, 5), st.integers(0, 12 * KIB)),
    st.tuples(st.just("grow"), st.integers(0, 2), st.integers(0, 6 * KIB)),
    st.tuples(st.just("mkdir"), st.integers(0, 3), st.just(0)),
    st.tuples(st.just("rename"), st.integers(0, 2), st.just(0)),
)


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(_op, max_size=25), max_kib=st.integers(1, 40), max_files=st.integers(1, 8))
def test_enforce_leaves_the_session_within_its_quota(tmp_path, ops, max_kib, max_files):
    import shutil
    import uuid

    area = tmp_path / uuid.uuid4().hex
    area.mkdir()
    try:
        for i in range(3):
            _write(area / f"base{i}", 2 * KIB)
        base = _snapshot(area)
        base_contents = {key: path for key, (path, _) in base.items()}
        quota = WriteQuota([str(area)], max_bytes=max_kib * KIB, max_files=max_files)
        quota.baseline()
        moved: dict[int, Path] = {i: area / f"base{i}" for i in range(3)}
        clock = 1_000
        for n, (kind, which, size) in enumerate(ops):
            clock += 1
            if kind == "new":
                folder = area / f"d{which % 3}" if which > 2 else area
                _write(folder / f"new{n}", size, mtime=clock)
            elif kind == "grow":
                with open(moved[which], "ab") as f:
                    f.write(b"g" * size)
            elif kind == "mkdir":
                (area / f"d{which}").mkdir(exist_ok=True)
            else:
                target = area / f"renamed{n}"
                os.rename(moved[which], target)
                moved[which] = target
        snap = _snapshot(area)
        before = _added(base, snap)
        new_files = {key: os.lstat(path).st_mtime_ns for key, (path, _) in snap.items()
                     if key not in base and os.path.isfile(path)}
        message = quota.enforce()
        now = _snapshot(area)
        added_bytes, added_files = _added(base, now)
        growth = sum(max(0, now[key][1] - base[key][1]) for key in base if key in now)
        if before[0] <= max_kib * KIB and before[1] <= max_files:
            assert message is None and added_files == before[1]
        else:
            assert message is not None and message.startswith("QuotaExceeded: ")
        # no file that was there at the baseline was removed
        assert all(key in now for key in base_contents)
        if growth <= max_kib * KIB:
            assert added_bytes <= max_kib * KIB and added_files <= max_files
        else:  # over on growth alone: everything the session created went
            assert added_files == 0
        # newest first: no kept new file is newer than a removed one
        kept = [mtime for key, mtime in new_files.items() if key in now]
        removed = [mtime for key, mtime in new_files.items() if key not in now]
        if kept and removed:
            assert max(kept) <= min(removed)
    finally:
        shutil.rmtree(area, ignore_errors=True)
