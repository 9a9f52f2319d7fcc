"""A fast reader of installed entry points (``*.dist-info/entry_points.txt``).

This module finds entry points of one group by scanning ``sys.path`` for
distribution metadata folders, in path order, the first distribution of a name
winning as in ``importlib.metadata``.  It imports only ``os``, ``sys``, ``time`` and
``importlib`` (no attrs, typing, re or configparser), so discovery stays cheap (the
help cache of :mod:`rlm.cli_help` runs it when it rebuilds the text of ``rlm --help``).

Why not the ``importlib-metadata`` backport (the registry package our design
names for discovery)?  Because it cannot meet the budget of ``rlm --help``
(40 ms CPU in all).  Measured 2026-12-02 on the 2-core development machine
(Python 3.11.7, importlib_metadata 8.9.0, 160 installed distributions, 14
``rlm`` entry points), CPU time (``time.process_time``) inside a fresh process
with bytecode compiled, medians of 12 runs, the machine running a parallel
CPU-bound load (which inflates every number, the floor too, about 2x):

================================  ==============  =================
reader                            import (ms)     one discovery (ms)
================================  ==============  =================
this scan (``rlm.entrypoints``)   2.9             5.5
``importlib_metadata`` 8.9.0      75.4            33.2
================================  ==============  =================

A bare ``python -c pass`` costs 20-30 ms CPU there.  The backport's import
alone (72 modules: ``email``, ``pathlib``, ``tempfile``, ``shutil``, ``bz2``,
``lzma``, ``random``, ``typing``, ``re``...) is more than the rest of the
budget, before it discovers anything, and its discovery is 6x slower than
this scan.  So the kernel keeps this scan, for plugin discovery and for the
help cache alike (one reader, one behaviour), and does not depend on
``importlib-metadata``.  ``bench/startup.py`` prints the same comparison as
whole fresh processes (``python -c pass`` as the floor).
"""

from __future__ import annotations

import importlib
import os
import sys
import time

TYPE_CHECKING = False  # neither typing, re nor configparser: this module is on the path of `rlm --help`
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any


def _dist_dir(folder: str) -> tuple[str, str] | None:
    """``(name, version)`` of a metadata folder ``name-version[-pyX.Y].dist-info`` (or ``.egg-info``)."""
    for suffix in (".dist-info", ".egg-info"):
        if folder.endswith(suffix):
            parts = folder[: -len(suffix)].split("-")
            break
    else:
        return None
    if len(parts) == 3 and parts[2].startswith("py"):
        parts = parts[:2]
    if len(parts) != 2 or not parts[0] or not parts[1]:
        return None
    return parts[0], parts[1]


def _section(text: str, group: str) -> list[tuple[str, str]]:
    """The ``name = value`` lines of ``[group]`` in an ``entry_points.txt`` (an INI file: ``#``/``;``
    comments, blank lines, continuation lines are not used by installers and are not supported)."""
    found: list[tuple[str, str]] = []
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line[0] == "[" and line[-1] == "]":
            inside = line[1:-1].strip() == group
            continue
        if inside:
            name, sep, value = line.partition("=")
            if sep and name.strip():
                found.append((name.strip(), value.strip()))
    return found


class EntryPoint:
    """One entry point: ``name = value`` in ``group`` of ``distribution`` (immutable).

    ``path`` is the distribution's metadata folder (``*.dist-info``), or None.
    A plain class, not attrs: this module is on the path of ``rlm --help``.
    """

    __slots__ = ("name", "value", "group", "distribution", "version", "path")
    _FIELDS = ("name", "value", "group", "distribution", "version")

    name: str
    value: str
    group: str
    distribution: str
    version: str
    path: str | None

    def __init__(self, *, name: str, value: str, group: str, distribution: str, version: str,
                 path: str | None = None) -> None:
        for attr, val in (("name", name), ("value", value), ("group", group), ("distribution", distribution),
                          ("version", version), ("path", path)):
            object.__setattr__(self, attr, val)

    def __setattr__(self, attr: str, value: Any) -> None:
        raise AttributeError(f"EntryPoint is immutable: cannot set {attr!r}")

    def _key(self) -> tuple[str, ...]:
        return tuple(getattr(self, f) for f in self._FIELDS)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EntryPoint) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return "EntryPoint(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in self._FIELDS) + ")"

    def load(self) -> Any:
        """Import the module (and attribute) the entry point names."""
        return load_value(self.value)


def load_value(value: str) -> Any:
    """Import what ``"module"`` or ``"module:attr.sub"`` names (an entry point's value, a command's target)."""
    module_name, _, attr = value.partition(":")
    obj: Any = importlib.import_module(module_name.strip())
    for part in filter(None, attr.strip().split(".")):
        obj = getattr(obj, part)
    return obj


#: ``sys.path`` entry -> (its modification time, its metadata folders): a folder listing is
#: reused while the folder's mtime is unchanged (installing or removing a distribution changes it),
#: and only when that mtime is older than :data:`_RACY_NS` (timestamps are coarse: two changes
#: within one clock tick may leave the same mtime).
_RACY_NS = 2_000_000_000
_LISTINGS: dict[str, tuple[int, list[tuple[str, str, str]]]] = {}


def _metadata_folders(entry: str) -> list[tuple[str, str, str]]:
    """``(folder, name, version)`` of the metadata folders directly in ``entry``, sorted by folder name."""
    base = entry or "."
    try:
        mtime = os.stat(base).st_mtime_ns
    except OSError:
        return []
    cached = _LISTINGS.get(entry)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    folders = []
    for folder in names:
        parsed = _dist_dir(folder)
        if parsed is not None:
            folders.append((os.path.join(base, folder), parsed[0].replace("_", "-"), parsed[1]))
    if mtime < time.time_ns() - _RACY_NS:  # changed just now: the next change may keep this mtime
        _LISTINGS[entry] = (mtime, folders)
    return folders


def _dist_dirs(paths: list[str]) -> Iterator[tuple[str, str, str]]:
    seen: set[str] = set()
    for entry in paths:
        for folder, dist, version in _metadata_folders(entry):
            if dist.lower() in seen:
                continue
            seen.add(dist.lower())
            yield folder, dist, version




def entry_points(group: str, *, paths: list[str] | None = None) -> list[EntryPoint]:
    """Entry points of ``group`` from every distribution visible on ``paths`` (``sys.path``)."""
    found: list[EntryPoint] = []
    marker = group.encode("utf-8")
    for folder, dist, version in _dist_dirs(sys.path if paths is None else paths):
        path = os.path.join(folder, "entry_points.txt")
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError:
            continue
        if marker not in data:  # most distributions: no need to decode and parse
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        for name, value in _section(text, group):
            found.append(EntryPoint(name=name, value=value, group=group, distribution=dist, version=version,
                                    path=folder))
    return found
