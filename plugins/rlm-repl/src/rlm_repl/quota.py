"""Write quotas: what one session may add under its writable paths, counted and enforced on the host.

When an environment has ``writable_paths``, a session may add at most
``write_quota_mb`` MiB (new files plus growth of existing ones) and create at
most ``write_quota_files`` files (directories and symlinks included) there.
:class:`WriteQuota` takes a baseline at session start (and after a reset),
counts what was added after each cell and, when a limit is passed, removes
files the session created -- newest first -- until the session is back under
it, returning one message for the model.  :func:`file_size_limit` gives the
``RLIMIT_FSIZE`` a guest sets for the next cell, so one cell cannot overshoot
the quota by much before the host gets to count.

Why our own: the operating system has no per-directory quota we can count on.
Project quotas (ext4/xfs) need root and a filesystem mounted for them, a tmpfs
``size=`` bounds a whole mount, Docker's ``--storage-opt size`` works only on
overlay over xfs with ``pquota``, and WASI preopens have no limit at all.  A
walk of the writable paths works the same for every environment (local,
docker, wasm) because all three see those paths on the host.

Rules.  Files are identified by ``(st_dev, st_ino)`` so a rename counts once;
nothing is followed (``lstat``: a symlink is a file of size 0, a directory
counts as a file of size 0).  Files that were there at the baseline are never
removed, and neither is a new file that took the path of one (an in-place
rewrite: counted as growth of the old file); nothing outside the writable
paths is ever removed (the real path of each parent is checked just before).
The walk is bounded; a cut walk makes ``Usage.complete`` False.  Races (files
vanishing mid-walk) and permission errors never raise.  The walk is blocking:
async callers run :meth:`WriteQuota.enforce` in a thread.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from typing import Any

from attrs import define, field

MIB = 1024 * 1024
#: Entries a usage walk may visit beyond ``max_files`` and the baseline's size before it is cut.
WALK_SLACK = 10_000
#: Entries the baseline walk may visit; past this nothing is ever removed (new and old cannot be told apart).
MAX_BASELINE_ENTRIES = 1_000_000
#: Walk-and-remove rounds of one :meth:`WriteQuota.enforce` (each round of a cut walk removes >= WALK_SLACK).
MAX_ROUNDS = 16
#: File names shown in one message.
MAX_NAMES_SHOWN = 5
MAX_NAME_CHARS = 80

_Key = tuple[int, int]
_Found = list[tuple[str, os.stat_result, int, bool]]  # (path, lstat, depth, known)


@define(frozen=True)
class Usage:
    """What one session added under its writable paths since the baseline.

    ``added_bytes``: sizes of the files it created plus the growth of files
    that were there before (shrinking counts as 0); ``added_files``: the files,
    directories and symlinks it created; ``complete``: False when the walk was
    cut (too many entries) or a directory the session made or changed could
    not be listed -- then the counts are lower bounds.
    """

    added_bytes: int = 0
    added_files: int = 0
    complete: bool = True


@define
class _Entry:
    key: _Key
    paths: list[str]
    size: int
    mtime_ns: int
    is_dir: bool
    depth: int


@define
class _Scan:
    usage: Usage
    new: list[_Entry] = field(factory=list)  # created by the session, removable
    grown: list[tuple[str, int]] = field(factory=list)  # (path, bytes added) of files there before
    cut: bool = False
    unlisted: list[str] = field(factory=list)  # directories that could not be listed


def _show(path: str) -> str:
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in path)
    return text if len(text) <= MAX_NAME_CHARS else text[: MAX_NAME_CHARS - 3] + "..."


def _mib(n: float) -> str:
    return f"{n / MIB:.1f} MiB"


def _names(paths: Sequence[str]) -> str:
    shown = ", ".join(paths[:MAX_NAMES_SHOWN])
    more = len(paths) - MAX_NAMES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


class WriteQuota:
    """Accounting of what one session added under its writable paths.

    ``paths`` are the writable paths (directories, or single files);
    ``max_bytes`` and ``max_files`` the quota.  Call :meth:`baseline` when the
    session starts (and after each reset), :meth:`enforce` after each cell
    (a quota never baselined takes its baseline on first use, so what was
    there before is never counted or removed).  Without paths the quota is a
    no-op (usage zero, ``enforce`` None).
    """

    def __init__(self, paths: Sequence[str], *, max_bytes: int, max_files: int) -> None:
        for name, value in (("max_bytes", max_bytes), ("max_files", max_files)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"WriteQuota {name}: expected an integer of 0 or more, got {value!r}")
        roots: list[str] = []
        for path in paths:
            root = os.path.abspath(os.fspath(path))
            if root not in roots:
                roots.append(root)
        self.paths: tuple[str, ...] = tuple(roots)
        self.max_bytes = max_bytes
        self.max_files = max_files
        self._base: dict[_Key, int] = {}  # (dev, ino) -> size at the baseline
        self._base_paths: dict[str, _Key] = {}  # path -> (dev, ino) at the baseline
        self._base_unlisted: set[_Key] = set()  # directories that could not be listed at the baseline
        self._base_complete = True
        self._base_taken = False
        self._reals: dict[str, str] = {}  # root -> its real path when the baseline was taken

    @classmethod
    def from_settings(cls, settings: Any) -> WriteQuota:
        """The quota of an :class:`rlm.environment.EnvironmentSettings` (no-op without writable paths)."""
        return cls(settings.writable_paths, max_bytes=int(settings.write_quota_mb * MIB),
                   max_files=int(settings.write_quota_files))

    @property
    def active(self) -> bool:
        """True when there are writable paths to count."""
        return bool(self.paths)

    # --- the walk -------------------------------------------------------------------------

    def _roots(self) -> list[str]:
        """The paths to walk: those inside another one are left out (they would be walked twice)."""
        keep: list[str] = []
        for root in self.paths:
            real = self._reals[root]
            if any(other != real and _inside(real, other) for other in self._reals.values()):
                continue
            if real in (self._reals[r] for r in keep):
                continue
            keep.append(root)
        return keep

    def _walk(self, limit: int, on_unlisted: Callable[[str], None]) -> tuple[_Found, bool]:
        """Every entry under the roots, nothing followed; True when cut at ``limit``.

        ``known`` is False under a directory that could not be listed at the
        baseline (what is there cannot be told new or old).  A root whose real
        path is no longer the one of the baseline (swapped for a symlink to
        elsewhere) is not walked: it is reported to ``on_unlisted``.
        """
        out: _Found = []
        stack: list[tuple[str, int, bool]] = []
        for root in self._roots():
            if os.path.realpath(root) != self._reals[root]:
                on_unlisted(root)
                continue
            try:
                st = os.stat(root)  # a root given as a symlink to a directory is walked
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append((root, 0, True))
            else:
                try:
                    out.append((root, os.lstat(root), 0, True))
                except OSError:
                    continue
        while stack:
            directory, depth, known = stack.pop()
            try:
                with os.scandir(directory) as it:
                    entries = list(it)
            except OSError:
                if known:
                    on_unlisted(directory)
                continue
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue  # vanished, or not ours to see
                if len(out) >= limit:
                    return out, True
                out.append((entry.path, st, depth + 1, known))
                if stat.S_ISDIR(st.st_mode):
                    stack.append((entry.path, depth + 1, known and (st.st_dev, st.st_ino) not in self._base_unlisted))
        return out, False

    def baseline(self) -> None:
        """Snapshot of what is there now: every entry's (dev, ino) -> size, and its path."""
        self._base = {}
        self._base_paths = {}
        self._base_unlisted = set()
        self._base_taken = True
        self._reals = {root: os.path.realpath(root) for root in self.paths}
        unlisted: list[str] = []
        if not self.paths:
            self._base_complete = True
            return
        found, cut = self._walk(MAX_BASELINE_ENTRIES, unlisted.append)
        for path, st, _, _ in found:
            key = (st.st_dev, st.st_ino)
            self._base[key] = _size(st)
            self._base_paths[path] = key
        for directory in unlisted:
            try:
                st = os.lstat(directory)
            except OSError:
                continue
            self._base_unlisted.add((st.st_dev, st.st_ino))
        self._base_complete = not cut

    def _scan(self) -> _Scan:
        if not self.paths:
            return _Scan(usage=Usage())
        if not self._base_taken:
            self.baseline()  # never count (or remove) what was there before we first looked
        unlisted: list[str] = []
        limit = self.max_files + len(self._base) + WALK_SLACK
        found, cut = self._walk(limit, unlisted.append)
        current: dict[_Key, _Entry] = {}
        unknown: set[_Key] = set()
        for path, st, depth, known in found:
            key = (st.st_dev, st.st_ino)
            if not known:
                unknown.add(key)
                continue
            entry = current.get(key)
            if entry is None:
                current[key] = _Entry(key=key, paths=[path], size=_size(st), mtime_ns=st.st_mtime_ns,
                                      is_dir=stat.S_ISDIR(st.st_mode), depth=depth)
            else:
                entry.paths.append(path)  # a hard link: one file, several names
        added_bytes = 0
        new: list[_Entry] = []
        grown: list[tuple[str, int]] = []
        for key, entry in current.items():
            if key in unknown:
                continue
            old = self._base.get(key)
            if old is None:
                replaced = next((self._base_paths[p] for p in entry.paths if p in self._base_paths
                                 and self._base_paths[p] not in current), None)
                if replaced is not None:
                    old = self._base[replaced]  # rewritten in place: growth of the file it replaced
            if old is None:
                added_bytes += entry.size
                new.append(entry)
            elif entry.size > old:
                added_bytes += entry.size - old
                grown.append((entry.paths[0], entry.size - old))
        # a directory the session made, or one listable at the baseline, that cannot be listed now
        hidden = []
        for directory in unlisted:
            try:
                st = os.lstat(directory)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in self._base_unlisted:
                hidden.append(directory)
        usage = Usage(added_bytes=added_bytes, added_files=len(new), complete=not cut and not hidden)
        return _Scan(usage=usage, new=new, grown=grown, cut=cut, unlisted=hidden)

    # --- the public face ------------------------------------------------------------------

    def usage(self) -> Usage:
        """What the session added since the baseline (a fresh walk)."""
        return self._scan().usage

    def remaining_bytes(self) -> int:
        """Bytes the session may still add: ``max_bytes`` less what it added, never below 0."""
        if not self.paths:
            return self.max_bytes
        return max(0, self.max_bytes - self.usage().added_bytes)

    def _within(self, usage: Usage) -> bool:
        return usage.complete and usage.added_bytes <= self.max_bytes and usage.added_files <= self.max_files

    def enforce(self) -> str | None:
        """After each cell: None within the quota; else remove files the session created,
        newest first, until back under both limits, and return one message naming the
        cause, what was removed, and the fix."""
        if not self.paths:
            return None
        scan = self._scan()
        first = scan
        if self._within(scan.usage):
            return None
        removed: list[str] = []
        if self._base_complete:
            for _ in range(MAX_ROUNDS):
                if not self._remove(scan, removed):
                    break
                scan = self._scan()
                if self._within(scan.usage):
                    break
        return self._message(first, scan, removed)

    def _remove(self, scan: _Scan, removed: list[str]) -> bool:
        """Remove new entries newest first until the scan's counts are within the limits; True if any went."""
        added_bytes, added_files = scan.usage.added_bytes, scan.usage.added_files

        def within() -> bool:
            return added_bytes <= self.max_bytes and added_files <= self.max_files

        if within():
            return False
        reals = list(self._reals.values())
        any_removed = False
        later: list[_Entry] = []
        order = sorted(scan.new, key=lambda e: (-e.mtime_ns, -e.depth, e.paths[0]))
        for entry in order:
            if within():
                break
            if entry.is_dir:
                if not self._rmdir(entry, reals):
                    later.append(entry)  # not empty yet: its new children may go first
                    continue
            elif not self._unlink(entry, reals):
                continue
            added_bytes -= entry.size
            added_files -= 1
            removed.append(self._label(entry.paths[0]))
            any_removed = True
        for entry in sorted(later, key=lambda e: -e.depth):  # deepest first, so parents empty out
            if within():
                break
            if self._rmdir(entry, reals):
                added_bytes -= entry.size
                added_files -= 1
                removed.append(self._label(entry.paths[0]))
                any_removed = True
        return any_removed

    def _unlink(self, entry: _Entry, reals: list[str]) -> bool:
        gone = True
        for path in entry.paths:
            if not _safe(path, entry.key, reals):
                gone = False
                continue
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError:
                gone = False
        return gone

    def _rmdir(self, entry: _Entry, reals: list[str]) -> bool:
        path = entry.paths[0]
        if not _safe(path, entry.key, reals):
            return False
        try:
            os.rmdir(path)  # only when empty: what is inside may be the user's (moved in)
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return True

    def _label(self, path: str) -> str:
        if len(self.paths) == 1 and path != self.paths[0] and os.path.isdir(self.paths[0]):
            return _show(os.path.relpath(path, self.paths[0]))
        return _show(path)

    def _message(self, first: _Scan, last: _Scan, removed: list[str]) -> str:
        mb = f"{self.max_bytes / MIB:g}"
        files = f"{first.usage.added_files} new files"
        if first.cut:
            files = f"more than {first.usage.added_files} new files (the count stopped there)"
        cause = (f"QuotaExceeded: the session wrote {_mib(first.usage.added_bytes)} (quota {mb} MiB) "
                 f"and {files} (quota {self.max_files}) under the writable paths")
        parts = [cause]
        if removed:
            parts.append(f"removed {_names(removed)}" + (" to get back under it" if self._within(last.usage) else ""))
        if not self._within(last.usage):
            rest = []
            if not self._base_complete:
                rest.append(f"nothing can be removed: the writable paths held more than {MAX_BASELINE_ENTRIES} "
                            "entries when the session started, too many to tell its files from the user's")
            grown = sum(n for _, n in last.grown)
            if last.usage.added_bytes > self.max_bytes and grown and not last.new:
                shown = [f"{self._label(p)} +{_mib(n)}" for p, n in sorted(last.grown, key=lambda g: -g[1])]
                rest.append(f"the excess is growth of files that were there before the session ({_names(shown)}); "
                            "they are left as they are")
            elif last.usage.added_bytes > self.max_bytes or last.usage.added_files > self.max_files or last.cut:
                rest.append(f"still over it: {_mib(last.usage.added_bytes)} and {last.usage.added_files} new files"
                            + (f", of which growth of files there before: {_mib(grown)}" if grown else ""))
            if last.unlisted:
                shown = [self._label(p) for p in last.unlisted]
                rest.append(f"could not list {_names(shown)} (made unreadable, or swapped for a link): "
                            "what is inside is not counted -- make it readable or remove it")
            parts.extend(rest)
        return "; ".join(parts) + ". Raise write_quota_mb / write_quota_files or write less."


def _size(st: os.stat_result) -> int:
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def _inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False


def _safe(path: str, key: _Key, reals: list[str]) -> bool:
    """True when ``path`` (not followed) is still the entry ``key`` and lies within a writable path."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if (st.st_dev, st.st_ino) != key:
        return False  # replaced since the walk
    parent = os.path.realpath(os.path.dirname(path))
    target = os.path.join(parent, os.path.basename(path))
    return any(_inside(target, real) for real in reals)


def file_size_limit(quota: WriteQuota | None, max_file_bytes: int | None) -> int | None:
    """The per-file size limit for the next cell (guests set ``RLIMIT_FSIZE`` to it).

    The smaller of the bytes left in ``quota`` and ``max_file_bytes``; None when
    neither applies (no quota or a no-op one, and no max file size).  Note that
    ``RLIMIT_FSIZE`` bounds every file's size, not what is added: a file larger
    than the remaining quota can no longer be appended to, and a guest must
    ignore ``SIGXFSZ`` so that the write fails (``EFBIG``) instead of the
    process being killed.
    """
    limits = []
    if quota is not None and quota.active:
        limits.append(quota.remaining_bytes())
    if max_file_bytes is not None:
        if isinstance(max_file_bytes, bool) or not isinstance(max_file_bytes, int) or max_file_bytes < 0:
            raise ValueError(f"max_file_bytes: expected an integer of 0 or more or None, got {max_file_bytes!r}")
        limits.append(max_file_bytes)
    return min(limits) if limits else None


__all__ = ["MIB", "Usage", "WriteQuota", "file_size_limit"]
