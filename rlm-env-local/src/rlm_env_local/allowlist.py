"""Which modules configuration may never add to the sandbox's import allowlist.

Shared by the host (validating ``[plugins.env-local] extra_modules``) and the
worker (building its module gate); imports nothing.
"""

from __future__ import annotations

#: Modules that can never be allowed, whatever the configuration says.
NEVER_ALLOWED = frozenset({
    "os", "posix", "nt", "sys", "subprocess", "builtins", "importlib", "io", "_io", "pathlib", "shutil",
    "socket", "ssl", "ctypes", "pickle", "_pickle", "marshal", "inspect", "gc", "threading", "_thread",
    "multiprocessing", "signal", "types", "pty", "runpy", "code", "codeop", "tempfile", "glob",
    "fileinput", "asyncio", "http", "urllib.request", "ftplib", "smtplib", "telnetlib", "webbrowser",
    "sqlite3", "shelve", "dbm", "zipfile", "tarfile", "gzip", "bz2", "lzma", "logging", "resource",
    "mmap", "fcntl", "select", "selectors", "traceback", "linecache", "sysconfig", "site", "pdb",
    "zipimport", "pkgutil", "posixpath", "ntpath", "genericpath", "platform", "weakref", "copyreg",
    "faulthandler", "tracemalloc", "atexit", "warnings",
})


def check_extra_module(name: str) -> None:
    """Raise ValueError when ``name`` may not be added to the allowlist by configuration."""
    parts = name.split(".")
    if not all(p.isidentifier() for p in parts):
        raise ValueError(f"{name!r} is not a module name")
    for i in range(1, len(parts) + 1):
        if ".".join(parts[:i]) in NEVER_ALLOWED:
            raise ValueError(f"module {name!r} can never be allowed in the local sandbox "
                             "(it gives access to the system, files or the interpreter)")
