"""The cache of ``rlm --help``: the top-level help text, reused while nothing it depends on changed.

Building the help text means importing every plugin's hook module (and with
it pluggy and attrs) to collect the commands they register; that costs more
than the 40 ms CPU budget of ``rlm --help``.  The text is therefore stored in
``<user cache dir>/help/<interpreter>.txt`` (see :mod:`rlm.dirs`) together
with a key of everything it depends on, and reused only when the key computed
now is equal:

* the rlm version, the Python version and the interpreter (``sys.prefix``);
* every ``rlm`` entry point (name, value, distribution, version, metadata
  folder) and the name and version of every installed distribution (a plugin's
  dependency installed or removed may make it load or break);
* size and modification time of each plugin's ``entry_points.txt``, of the
  ``.py`` files next to each entry point's module and of the kernel's own CLI
  modules (an editable install changes its commands without changing its
  version); a file modified in the last two seconds makes the key unique, so
  the text is rebuilt (timestamps are too coarse to tell two quick edits apart);
* ``RLM_DISABLE_PLUGINS``.

Computing the key imports nothing of a plugin (:mod:`rlm.entrypoints` scans
the metadata folders).  A text listing a broken plugin is never stored, and
with ``RLM_STRICT_PLUGINS`` set the cache is bypassed (discovery must run to
fail loudly).  A cache that cannot be read or written is ignored: the help is
then built as without it.  ``RLM_HELP_CACHE=0`` turns it off.
"""

from __future__ import annotations

import os
import sys
import time

#: File format version of the cache entries (bump when the key's recipe changes).
FORMAT = 1


def enabled() -> bool:
    """Whether ``rlm --help`` may use the cache (not in strict mode, not turned off)."""
    off = {"0", "false", "no", "off"}
    if os.environ.get("RLM_HELP_CACHE", "").strip().lower() in off:
        return False
    return os.environ.get("RLM_STRICT_PLUGINS", "").strip().lower() not in {"1", "true", "yes", "on"}


def cache_file() -> str:
    """Where this interpreter's help text is cached (one file per interpreter, overwritten)."""
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


#: A file modified less than this long ago makes the key unrepeatable (see :func:`key`).
RACY_NS = 2_000_000_000


class _Stats:
    """Size and mtime of files, remembering whether one was modified just now."""

    def __init__(self) -> None:
        self.now = time.time_ns()
        self.racy = False

    def __call__(self, path: str) -> str:
        try:
            st = os.stat(path)
        except OSError:
            return "-"
        if st.st_mtime_ns > self.now - RACY_NS:
            self.racy = True
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


def _sources(folder: str, stat: _Stats) -> list[str]:
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".py"))
    except OSError:
        return []
    return [f"{n}={stat(os.path.join(folder, n))}" for n in names]


def key() -> str:
    """Everything the top-level help text depends on, as one string (see the module docstring).

    Timestamps are coarse (a file rewritten twice within one clock tick may keep
    its mtime and size): when a file was modified in the last two seconds, the
    key gets a unique suffix, so that a text stored under it is never reused.
    """
    import rlm
    import rlm.entrypoints as entrypoints

    stat = _Stats()
    kernel_dir = os.path.dirname(os.path.abspath(rlm.__file__))
    parts = [f"format={FORMAT}", f"rlm={rlm.__version__}", f"python={sys.version}", f"prefix={sys.prefix}",
             f"disabled={os.environ.get('RLM_DISABLE_PLUGINS', '')}"]
    parts += [f"kernel:{name}={stat(os.path.join(kernel_dir, name))}"
              for name in ("cli.py", "cli_help.py", "plugins.py", "registry.py", os.path.join("builtin", "commands.py"))]
    parts += [f"dist:{name}=={version}" for name, version in entrypoints.distributions()]
    seen: set[str] = set()
    for ep in entrypoints.entry_points("rlm"):
        parts.append(f"ep:{ep.name}={ep.value}|{ep.distribution}=={ep.version}|{ep.path}")
        if ep.path:
            parts.append(f"meta:{stat(os.path.join(ep.path, 'entry_points.txt'))}")
        folder = _module_dir(ep.value.partition(":")[0])
        if folder is not None and folder not in seen:
            seen.add(folder)
            parts.append(f"src:{folder}:" + ",".join(_sources(folder, stat)))
    if stat.racy:
        parts.append(f"racy={stat.now}")
    return "\n".join(parts)


#: Between the key and the text in a cache file (neither contains a NUL).
_SEPARATOR = "\n\0\n"


def load(current_key: str) -> str | None:
    """The cached help text when it was stored under ``current_key``; None otherwise."""
    try:
        with open(cache_file(), encoding="utf-8") as handle:
            stored_key, sep, text = handle.read().partition(_SEPARATOR)
    except (OSError, UnicodeDecodeError):
        return None
    return text if sep and stored_key == current_key else None


def store(current_key: str, text: str) -> None:
    """Cache ``text`` under ``current_key`` (atomically; a failure to write is ignored)."""
    import tempfile

    if "\0" in current_key or "\0" in text:
        return
    path = cache_file()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".help-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(current_key + _SEPARATOR + text)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except OSError:
        pass
