"""A second line of defence in the worker: a ``sys.addaudithook`` hook that cannot be removed.

Should code ever get past the guards, the interpreter itself still refuses:
starting processes, signals, sockets, ctypes, environment changes, file
writes outside the writable paths, reads outside the allowed paths and the
interpreter's own library, imports of dangerous modules, and -- while user
code runs -- frame objects, code/function construction and rlimit changes.
The :class:`AuditPolicy` is immutable; its user mode changes only through a
switch it hands out once, to the REPL.
Runs inside the worker process; installed once, after the worker started.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

#: Refused always (after installation).
DENY_EVENTS = frozenset({
    "os.system", "os.fork", "os.forkpty", "os.kill", "os.killpg", "os.putenv", "os.unsetenv",
    "os.startfile", "os.chdir", "os.fchdir", "pty.spawn", "builtins.input", "builtins.breakpoint",
    "pickle.find_class", "gc.get_objects",
    "gc.get_referrers", "gc.get_referents", "sys._current_frames", "sys._current_exceptions",
    "_thread.start_new_thread", "mmap.__new__", "resource.prlimit", "sys.setprofile", "sys.settrace",
    "os.setuid", "os.setgid", "os.chroot",
})
DENY_PREFIXES = (
    "socket.", "ctypes.", "shutil.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "winreg.",
    "syslog.", "sqlite3.", "http.", "urllib.", "ftplib.", "smtplib.", "telnetlib.", "poplib.", "imaplib.",
    "nntplib.", "webbrowser.", "pdb.", "cpython.", "_winapi.", "msvcrt.", "signal.",
)
#: Refused while user code runs.
USER_DENY_EVENTS = frozenset({"code.__new__", "function.__new__", "resource.setrlimit", "sys._getframemodulename"})
FRAME_ATTRS = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back", "gi_code", "cr_code", "ag_code"})
#: Events whose first argument is a path that gets written or changed.
PATH_WRITE_EVENTS = frozenset({
    "os.mkdir", "os.remove", "os.rename", "os.rmdir", "os.chmod", "os.chown", "os.link", "os.symlink",
    "os.truncate", "os.utime", "os.chflags", "os.lchflags", "os.lchmod", "os.lchown", "os.mkfifo",
    "os.mknod", "os.setxattr", "os.removexattr",
})
PATH_READ_EVENTS = frozenset({"os.listdir", "os.scandir", "os.listxattr", "os.getxattr"})
DENY_IMPORTS = frozenset({
    "ctypes", "_ctypes", "subprocess", "_posixsubprocess", "socket", "_socket", "ssl", "_ssl",
    "multiprocessing", "_multiprocessing", "pty", "tty", "termios", "fcntl", "mmap", "pickle", "_pickle",
    "shelve", "dbm", "sqlite3", "_sqlite3", "asyncio", "concurrent", "http", "urllib.request", "ftplib",
    "smtplib", "telnetlib", "webbrowser", "code", "codeop", "pdb", "bdb", "cProfile", "profile", "trace",
    "gc", "shutil", "tempfile", "zipimport", "runpy", "pkgutil", "cffi", "_cffi_backend", "_winapi",
    "msvcrt", "nt", "faulthandler", "select", "selectors",
})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class AuditPolicy:
    """The state the hook consults, immutable once built.

    The roots are fixed at construction; ``user_mode`` (True while user code
    runs) can only be changed through the switch :meth:`take_user_switch`
    hands out -- once, to the REPL -- so nothing that later gets hold of the
    policy could widen the roots or leave user mode.  Policies cannot be
    copied or pickled (``copy.deepcopy`` would otherwise walk them).
    """

    __slots__ = ("read_roots", "write_roots", "_state")

    def __init__(self, *, read_roots: Iterable[str], write_roots: Iterable[str], lib_roots: Iterable[str]):
        write = tuple(_norm(p) for p in write_roots)
        read = tuple(_norm(p) for p in read_roots) + write + tuple(_norm(p) for p in lib_roots)
        object.__setattr__(self, "write_roots", write)
        object.__setattr__(self, "read_roots", read)
        object.__setattr__(self, "_state", {"user": False, "switch_taken": False})

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"AuditPolicy is immutable: cannot set {name!r}; build a new policy before "
                             "installing it (user mode changes only through take_user_switch())")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"AuditPolicy is immutable: cannot delete {name!r}")

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError("AuditPolicy belongs to the sandbox and cannot be copied or pickled")

    @property
    def user_mode(self) -> bool:
        """Whether user code is running (the stricter rules apply)."""
        return self._state["user"]

    def take_user_switch(self) -> Callable[[bool], None]:
        """The function that turns user mode on and off; handed out once only."""
        state = self._state
        if state["switch_taken"]:
            raise RuntimeError("the user-mode switch of this AuditPolicy was already handed out (to the REPL); "
                               "it exists once so that nothing else can leave user mode")
        state["switch_taken"] = True

        def set_user_mode(on: bool) -> None:
            state["user"] = bool(on)

        return set_user_mode

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event in DENY_EVENTS or event.startswith(DENY_PREFIXES):
            raise PermissionError(f"{event} is not allowed in the sandbox")
        if event == "open":
            self._check_open(args)
        elif event == "import":
            name = args[0] if args else ""
            if isinstance(name, str) and (name in DENY_IMPORTS or name.split(".")[0] in DENY_IMPORTS):
                raise ImportError(f"import of {name!r} is not allowed in the sandbox")
        elif event in PATH_WRITE_EVENTS:
            if not args or not _within(args[0], self.write_roots):
                raise PermissionError(f"{event} is not allowed outside the writable paths")
        elif event in PATH_READ_EVENTS:
            target = args[0] if args and args[0] is not None else "."
            if not _within(target, self.read_roots):
                raise PermissionError(f"{event} is not allowed outside the allowed paths")
        elif self._state["user"]:
            if event in USER_DENY_EVENTS:
                raise PermissionError(f"{event} is not allowed in the sandbox")
            if event == "object.__getattr__" and len(args) > 1 and args[1] in FRAME_ATTRS:
                raise PermissionError(f"reading {args[1]} is not allowed in the sandbox")

    def _check_open(self, args: tuple[Any, ...]) -> None:
        path = args[0] if args else None
        mode = args[1] if len(args) > 1 else None
        flags = args[2] if len(args) > 2 else 0
        if isinstance(path, int):
            if self._state["user"]:
                raise PermissionError("opening file descriptors is not allowed in the sandbox")
            return
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(
            isinstance(flags, int) and flags & _WRITE_FLAGS)
        roots = self.write_roots if writing else self.read_roots
        if not _within(path, roots):
            raise PermissionError(f"opening {path!r} is not allowed in the sandbox")


def _norm(path: str) -> str:
    return os.path.realpath(path)


def _within(path: Any, roots: tuple[str, ...]) -> bool:
    try:
        resolved = os.path.realpath(str.__str__(os.fsdecode(path)))
    except (TypeError, ValueError):
        return False
    return any(resolved == root or resolved.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def install(policy: AuditPolicy) -> None:
    """Install the hook for good (audit hooks cannot be removed)."""
    sys.addaudithook(policy.hook)
