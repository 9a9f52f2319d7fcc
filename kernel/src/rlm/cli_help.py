"""The cache of ``rlm --help``: the top-level help text, reused while nothing it depends on changed.

Building the help text means importing every plugin's hook module (and with
it pluggy and attrs) to collect the commands they register; that costs more
than the 40 ms CPU budget of ``rlm --help``.  The text is therefore stored in
``<user cache dir>/help/<interpreter>.txt`` (see :mod:`rlm.dirs`) together
with what it depends on, in two parts (one entry per header, the last few kept):

* a *header*, compared as a whole: the cache format, the rlm version, the
  Python version, the interpreter (``sys.prefix``), ``sys.path`` (in order)
  and ``RLM_DISABLE_PLUGINS``;
* a *watch list*: paths and their size and modification time, compared by one
  ``os.stat`` each: every ``sys.path`` entry (a folder's mtime changes when a
  distribution or package is installed into it or removed from it, so an
  install, an upgrade or a removal of a plugin or of one of its dependencies is
  seen), each plugin's ``entry_points.txt``, the folder of each entry point's
  module and its ``.py`` files (an editable install changes its commands without
  changing its version), and the kernel's own CLI modules.

The entry also records the registered commands (name, ``"module:attr"`` target,
description, plugin): :mod:`rlm.cli` dispatches ``rlm COMMAND`` from them,
before any plugin is imported (:func:`load_commands`).

A cache hit therefore costs one read and a few hundred ``stat`` calls, and
imports nothing: neither a plugin nor :mod:`rlm.entrypoints`.  Only a rebuild
scans the entry points (:func:`snapshot`, before the plugins are imported, so a
change made while the text is built is seen next time).  Timestamps are coarse
(a file rewritten twice within one clock tick may keep its size and mtime): a
text is not stored when a watched path was modified in the last two seconds.
A text listing a broken plugin is never stored, and with ``RLM_STRICT_PLUGINS``
set the cache is bypassed (discovery must run to fail loudly).  A cache that
cannot be read or written is ignored: the help is then built as without it.
``RLM_HELP_CACHE=0`` turns it off.  Not seen: a distribution's metadata edited
in place by hand (installers replace the metadata folder, which is seen).
"""

from __future__ import annotations

import os
import sys
import time

#: File format version of the cache entries (bump when the header's or the watch list's recipe changes).
FORMAT = 3


def enabled() -> bool:
    """Whether ``rlm --help`` may use the cache (not in strict mode, not turned off)."""
    off = {"0", "false", "no", "off"}
    if os.environ.get("RLM_HELP_CACHE", "").strip().lower() in off:
        return False
    return os.environ.get("RLM_STRICT_PLUGINS", "").strip().lower() not in {"1", "true", "yes", "on"}


def cache_file() -> str:
    """Where this interpreter's help texts are cached (one file per interpreter, rewritten)."""
    own = os.environ.get("RLM_CACHE_DIR", "").strip()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    if own:
        base = os.path.expanduser(own)
    elif xdg:
        base = os.path.join(os.path.expanduser(xdg), "rlm")
    elif sys.platform.startswith("linux"):  # what platformdirs answers there, without importing it
        base = os.path.join(os.path.expanduser("~"), ".cache", "rlm")
    else:
        from rlm.dirs import cache_dir

        base = str(cache_dir())
    tag = "".join(c if c.isalnum() else "_" for c in sys.prefix)[-80:]
    return os.path.join(base, "help", f"{tag}.txt")


#: A path modified less than this long ago keeps the text from being stored (see :func:`snapshot`).
RACY_NS = 2_000_000_000

#: Between the header, the watch list and the text of an entry (none of them contains a NUL).
_SEPARATOR = "\n\0\n"
#: Between the entries of the cache file (one per header: the ``rlm`` script and ``python -m rlm`` run
#: in a few folders have different ``sys.path``; most recent first, :data:`MAX_ENTRIES` at most).
_RECORD = "\n\0\0\n"
MAX_ENTRIES = 4

#: The kernel's modules the help text depends on (relative to the ``rlm`` package).
KERNEL_FILES = ("cli.py", "cli_help.py", "plugins.py", "registry.py", os.path.join("builtin", "commands.py"))


def header() -> str:
    """What the text depends on that costs no file system access (see the module docstring)."""
    from rlm import __version__

    return "\n".join((f"format={FORMAT}", f"rlm={__version__}", f"python={sys.version}", f"prefix={sys.prefix}",
                      f"disabled={os.environ.get('RLM_DISABLE_PLUGINS', '')}", *(f"path={p}" for p in sys.path)))


def signature(path: str) -> str:
    """Size and modification time of ``path`` (``-`` when it does not exist or cannot be read)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return "-"
    return f"{st.st_size}:{st.st_mtime_ns}"


def _module_dir(module: str) -> str | None:
    """The folder holding ``module``'s source, found as an import would find it, without importing it."""
    from importlib.machinery import PathFinder

    parts = module.strip().split(".")
    try:
        spec = PathFinder.find_spec(parts[0])
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or ())
    if locations:
        return os.path.join(locations[0], *parts[1:-1])
    return os.path.dirname(spec.origin) if spec.origin else None


def watched_paths() -> list[str]:
    """The paths of the watch list (see the module docstring); scans the entry points, imports no plugin."""
    import rlm
    import rlm.entrypoints as entrypoints

    kernel_dir = os.path.dirname(os.path.abspath(rlm.__file__))
    paths = [entry or "." for entry in sys.path]
    paths += [os.path.join(kernel_dir, name) for name in KERNEL_FILES]
    folders: list[str] = []
    for ep in entrypoints.entry_points("rlm"):
        if ep.path:
            paths.append(os.path.join(ep.path, "entry_points.txt"))
        folder = _module_dir(ep.value.partition(":")[0])
        if folder is not None and folder not in folders:
            folders.append(folder)
    for folder in folders:
        paths.append(folder)
        try:
            paths += [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if n.endswith(".py")]
        except OSError:
            pass
    return list(dict.fromkeys(paths))


class Snapshot:
    """The header and the watch list as they were before a text was built; ``storable`` is False when a
    watched path was modified too recently to tell a later change from it (or cannot be written down)."""

    def __init__(self) -> None:
        now = time.time_ns()
        self.header = header()
        self.watch: list[tuple[str, str]] = []
        self.storable = True
        for path in watched_paths():
            sig = signature(path)
            if "\n" in path or "\0" in path or (sig != "-" and int(sig.partition(":")[2]) > now - RACY_NS):
                self.storable = False
            self.watch.append((sig, path))


def snapshot() -> Snapshot:
    """The header and watch list of now: take it before building the text (see :func:`store`)."""
    return Snapshot()


def _entries() -> list[str]:
    """The entries of the cache file (most recent first); none when it cannot be read."""
    try:
        with open(cache_file(), encoding="utf-8") as handle:
            return handle.read().split(_RECORD)
    except (OSError, UnicodeDecodeError):
        return []


def _valid_entry() -> list[str] | None:
    """``[header, watch list, text, commands]`` of the entry whose header is this process's and whose
    watched paths are all as they were (commands ``None`` when the entry has none); None otherwise."""
    now = header()
    for entry in _entries():
        parts = entry.split(_SEPARATOR)
        if len(parts) not in (3, 4) or parts[0] != now:
            continue
        for line in parts[1].split("\n") if parts[1] else ():
            sig, tab, path = line.partition("\t")
            if not tab or signature(path) != sig:
                return None
        return parts if len(parts) == 4 else [*parts, None]
    return None


def load() -> str | None:
    """The cached help text (see :func:`_valid_entry`); None when there is none that is valid."""
    entry = _valid_entry()
    return None if entry is None else entry[2]


def load_commands() -> list[tuple[str, str, str, str]] | None:
    """The commands recorded with the valid cached text: ``(name, "module:attr", description, plugin)``
    each, so that ``rlm COMMAND`` can be dispatched before the plugins are imported; None when none is
    valid."""
    entry = _valid_entry()
    if entry is None or entry[3] is None:
        return None
    rows = [line.split("\t") for line in entry[3].split("\n") if line]
    return [(r[0], r[1], r[2], r[3]) for r in rows] if all(len(r) == 4 for r in rows) else None


def store(snap: Snapshot, text: str, commands: list[tuple[str, str, str, str]] | None = None) -> None:
    """Cache ``text`` and ``commands`` (see :func:`load_commands`; left out when a field holds a tab or a
    line break) under ``snap``: atomically; nothing when not storable; a failure to write is ignored."""
    from rlm.atomic import replace_file

    if not snap.storable or "\0" in text:
        return
    entry = [snap.header, "\n".join(f"{sig}\t{p}" for sig, p in snap.watch), text]
    if commands is not None and not any(c in f for row in commands for f in row for c in "\t\n\r\0"):
        entry.append("\n".join("\t".join(row) for row in commands))
    others = [e for e in _entries() if e.partition(_SEPARATOR)[0] != snap.header and e.count(_SEPARATOR) in (2, 3)]
    path = cache_file()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        replace_file(path, _RECORD.join([_SEPARATOR.join(entry), *others][:MAX_ENTRIES]).encode("utf-8"))
    except OSError:
        pass
