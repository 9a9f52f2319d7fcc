"""The OS jail the worker puts itself in before it runs any user code (Linux).

Four layers, each applied with direct system calls through :mod:`ctypes`
(no compiled dependency; the numbers below are the kernel's stable ABI):

- ``namespaces``: a new user namespace (root inside maps to the host user
  outside, with no capability left in the host's namespace), an empty network
  namespace (no interface: no TCP, UDP or UNIX-socket peer on the host) and a
  mount namespace in which ``/proc`` is covered by an empty read-only tmpfs
  (no ``/proc/<pid>/environ``, ``mem``, ``maps`` of any process).  All
  capabilities are dropped afterwards, inside the namespace too.
- ``landlock``: reads only below the interpreter's library and the allowed
  paths, writes only below the writable paths, no execution of any file, TCP
  bind/connect denied (ABI >= 4), abstract UNIX sockets and signals to
  processes outside the jail scoped (ABI >= 6).
- ``seccomp``: a BPF filter (all threads) refusing ``execve``/``execveat``,
  new processes (``fork``, ``vfork``, ``clone`` without ``CLONE_THREAD``,
  ``clone3``), ``ptrace``, ``process_vm_readv``/``writev``, ``mount`` and the
  new mount API, ``bpf``, ``keyctl``, ``unshare``/``setns``, every socket
  call, signals to any process but the worker itself, io_uring, module and
  kexec calls; ``PR_SET_NO_NEW_PRIVS`` first.
- rlimits and a scrubbed environment are applied by the worker and the host
  (:mod:`rlm_env_local.worker`, :mod:`rlm_env_local.process`).

:func:`probe` tells, without changing the calling process, which layers this
kernel offers (the host's reports in :mod:`rlm_env_local.report` use it);
:func:`confine` applies them in the worker and returns what it did.  Importing
this module is cheap and needs nothing but the standard library.

Why our own ctypes code rather than a binding from PyPI: the Landlock and
seccomp bindings there either need a C toolchain (libseccomp headers, Rust) at
install time or lag the kernel's ABI (no Landlock scopes or TCP rules); the
few structures used here are stable kernel ABI and are tested on the real
kernel by this package's tests.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys
from collections.abc import Iterable

#: The OS layers :func:`confine` applies, in order.
OS_LAYERS = ("namespaces", "landlock", "seccomp")
#: Test-only: names of layers to treat as unavailable (comma-separated); see the package README.
PRETEND_MISSING_ENV = "RLM_ENV_LOCAL_PRETEND_MISSING"

# --- syscall numbers (x86_64, aarch64) --------------------------------------------------------

_MACHINE = os.uname().machine.lower() if hasattr(os, "uname") else ""
_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(_MACHINE)
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

_NR: dict[str, dict[str, int]] = {
    "x86_64": {
        "seccomp": 317, "landlock_create_ruleset": 444, "landlock_add_rule": 445, "landlock_restrict_self": 446,
        "execve": 59, "execveat": 322, "fork": 57, "vfork": 58, "clone": 56, "clone3": 435, "ptrace": 101,
        "process_vm_readv": 310, "process_vm_writev": 311, "mount": 165, "umount2": 166, "pivot_root": 155,
        "chroot": 161, "bpf": 321, "keyctl": 250, "add_key": 248, "request_key": 249, "unshare": 272,
        "setns": 308, "socket": 41, "socketpair": 53, "connect": 42, "bind": 49, "listen": 50,
        "accept": 43, "accept4": 288, "kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129,
        "rt_tgsigqueueinfo": 297, "pidfd_open": 434, "pidfd_send_signal": 424, "pidfd_getfd": 438,
        "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "open_by_handle_at": 304, "name_to_handle_at": 303, "init_module": 175,
        "finit_module": 313, "delete_module": 176, "kexec_load": 246, "kexec_file_load": 320, "reboot": 169,
        "swapon": 167, "swapoff": 168, "personality": 135, "open_tree": 428, "move_mount": 429,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
        "iopl": 172, "ioperm": 173, "modify_ldt": 154, "acct": 163, "quotactl": 179, "ioctl": 16,
        "capset": 126,
    },
    "aarch64": {
        "seccomp": 277, "landlock_create_ruleset": 444, "landlock_add_rule": 445, "landlock_restrict_self": 446,
        "execve": 221, "execveat": 281, "clone": 220, "clone3": 435, "ptrace": 117,
        "process_vm_readv": 270, "process_vm_writev": 271, "mount": 40, "umount2": 39, "pivot_root": 41,
        "chroot": 51, "bpf": 280, "keyctl": 219, "add_key": 217, "request_key": 218, "unshare": 97,
        "setns": 268, "socket": 198, "socketpair": 199, "connect": 203, "bind": 200, "listen": 201,
        "accept": 202, "accept4": 242, "kill": 129, "tkill": 130, "tgkill": 131, "rt_sigqueueinfo": 138,
        "rt_tgsigqueueinfo": 240, "pidfd_open": 434, "pidfd_send_signal": 424, "pidfd_getfd": 438,
        "perf_event_open": 241, "userfaultfd": 282, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "open_by_handle_at": 265, "name_to_handle_at": 264, "init_module": 105,
        "finit_module": 273, "delete_module": 106, "kexec_load": 104, "kexec_file_load": 294, "reboot": 142,
        "swapon": 224, "swapoff": 225, "personality": 92, "open_tree": 428, "move_mount": 429,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
        "acct": 89, "quotactl": 60, "ioctl": 29, "capset": 91,
    },
}

#: Refused outright (EPERM).  clone, clone3, the signal calls and ioctl get argument checks instead.
DENIED_SYSCALLS = (
    "execve", "execveat", "fork", "vfork", "ptrace", "process_vm_readv", "process_vm_writev", "mount",
    "umount2", "pivot_root", "chroot", "bpf", "keyctl", "add_key", "request_key", "unshare", "setns",
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4", "tkill", "pidfd_open",
    "pidfd_send_signal", "pidfd_getfd", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "open_by_handle_at", "name_to_handle_at", "init_module", "finit_module",
    "delete_module", "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "personality",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "iopl", "ioperm",
    "modify_ldt", "acct", "quotactl", "capset",
)

# --- constants of the kernel ABI ----------------------------------------------------------------

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET, CLONE_THREAD = 0x00020000, 0x10000000, 0x40000000, 0x00010000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 0x4000, 1 << 18
PR_SET_NO_NEW_PRIVS, PR_SET_DUMPABLE = 38, 4
SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC = 1, 1
TIOCSTI, TIOCLINUX = 0x5412, 0x541C

LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_REMOVE_DIR, FS_REMOVE_FILE, FS_MAKE_CHAR, FS_MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
FS_MAKE_REG, FS_MAKE_SOCK, FS_MAKE_FIFO, FS_MAKE_BLOCK, FS_MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1
#: Rights that make sense on a file (the others only on directories).
_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
_READ = FS_READ_FILE | FS_READ_DIR
_WRITE = (FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_DIR | FS_MAKE_REG | FS_REFER | FS_TRUNCATE)

#: Library directories (shared objects loaded lazily by extension modules: libz, libcrypto...).
SYSTEM_LIB_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib")
#: Single public files the C library reads lazily (local time zone).
SYSTEM_FILES = ("/etc/localtime",)

_libc: ctypes.CDLL | None = None


class JailError(OSError):
    """A layer could not be applied."""


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    return _libc


def _syscall(name: str, *args: int | ctypes.c_void_p | ctypes.c_char_p) -> int:
    assert _ARCH is not None
    result = _c().syscall(ctypes.c_long(_NR[_ARCH][name]), *args)
    if result < 0:
        err = ctypes.get_errno()
        raise JailError(err, f"{name}: {os.strerror(err)}")
    return int(result)


def pretend_missing() -> frozenset[str]:
    """Layers ``$RLM_ENV_LOCAL_PRETEND_MISSING`` marks unavailable (tests of the refusal path)."""
    return frozenset(p.strip() for p in os.environ.get(PRETEND_MISSING_ENV, "").split(",") if p.strip())


# --- probing -------------------------------------------------------------------------------------


def landlock_abi() -> int:
    """The Landlock ABI version of this kernel, 0 when Landlock is unavailable."""
    if sys.platform != "linux" or _ARCH is None:
        return 0
    try:
        return _syscall("landlock_create_ruleset", None, ctypes.c_size_t(0),
                        ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    except (JailError, OSError):
        return 0


def _userns_problem() -> str | None:
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            if int(f.read().strip() or "0") <= 0:
                return "user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0)"
    except OSError:
        return "this kernel has no user namespaces"
    if os.geteuid() != 0:
        try:
            with open("/proc/sys/kernel/unprivileged_userns_clone") as f:
                if f.read().strip() == "0":
                    return "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0)"
        except OSError:
            pass
        try:
            with open("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") as f:
                if f.read().strip() == "1":
                    return "AppArmor restricts unprivileged user namespaces"
        except OSError:
            pass
    return None


def _seccomp_problem() -> str | None:
    try:
        with open("/proc/self/status") as f:
            if not any(line.startswith("Seccomp:") for line in f):
                return "this kernel was built without seccomp"
    except OSError:
        return "cannot read /proc/self/status"
    return None


def probe(missing: Iterable[str] | None = None) -> dict[str, str | None]:
    """Which OS layers this machine offers: layer -> None (available) or why not.

    ``missing`` names layers to report unavailable (testing the refusal path;
    default: those in ``$RLM_ENV_LOCAL_PRETEND_MISSING``).  Changes nothing in
    the calling process.  What the worker really applied is in its ``ready``
    message (see :func:`confine`).
    """
    missing = pretend_missing() if missing is None else frozenset(missing)
    if sys.platform != "linux":
        why = f"{sys.platform} is not Linux: the OS jail needs Linux (Landlock, seccomp, namespaces)"
        return {layer: why for layer in OS_LAYERS}
    if _ARCH is None:
        why = f"the CPU architecture {_MACHINE!r} is not supported by the jail (x86_64 and aarch64 are)"
        return {layer: why for layer in OS_LAYERS}
    abi = landlock_abi()
    found: dict[str, str | None] = {
        "namespaces": _userns_problem(),
        "landlock": None if abi > 0 else "Landlock is not enabled in this kernel (needs Linux >= 5.13 with "
                                         "landlock in the lsm= boot list)",
        "seccomp": _seccomp_problem(),
    }
    for layer in missing & set(found):
        found[layer] = f"{layer} is marked unavailable by {PRETEND_MISSING_ENV} (testing)"
    return found


# --- namespaces ----------------------------------------------------------------------------------


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def enter_namespaces() -> str:
    """New user, network and mount namespaces; ``/proc`` hidden; every capability dropped.

    Must run while the process has a single thread.
    """
    uid, gid = os.geteuid(), os.getegid()
    if _c().unshare(ctypes.c_int(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS)) != 0:
        err = ctypes.get_errno()
        raise JailError(err, f"unshare(user, net, mount namespaces): {os.strerror(err)}")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"0 {uid} 1")
    _write("/proc/self/gid_map", f"0 {gid} 1")
    libc = _c()
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        err = ctypes.get_errno()
        raise JailError(err, f"making mounts private: {os.strerror(err)}")
    if libc.mount(b"none", b"/proc", b"tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, b"size=4k") != 0:
        err = ctypes.get_errno()
        raise JailError(err, f"hiding /proc: {os.strerror(err)}")
    drop_capabilities()
    return "user, network and mount namespaces; /proc hidden; no capabilities"


def drop_capabilities() -> None:
    """Empty the effective, permitted and inheritable capability sets (capset v3)."""
    header = struct.pack("Ii", 0x20080522, 0)
    data = bytes(24)  # two {effective, permitted, inheritable} u32 triples
    hbuf = ctypes.create_string_buffer(header, len(header))
    dbuf = ctypes.create_string_buffer(data, len(data))
    if _c().capset(hbuf, dbuf) != 0:
        err = ctypes.get_errno()
        raise JailError(err, f"capset: {os.strerror(err)}")


# --- Landlock ------------------------------------------------------------------------------------


def _fs_rights(abi: int) -> int:
    rights = (1 << 13) - 1  # ABI 1: EXECUTE .. MAKE_SYM
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def _add_path_rule(ruleset: int, path: str, access: int) -> bool:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return False  # a path that does not exist grants nothing
    try:
        if not os.path.isdir(path):
            access &= _FILE_RIGHTS
        if not access:
            return False
        attr = struct.pack("=Qi", access, fd)  # struct landlock_path_beneath_attr is packed
        buf = ctypes.create_string_buffer(attr, len(attr))
        _syscall("landlock_add_rule", ctypes.c_int(ruleset), ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH), buf,
                 ctypes.c_uint32(0))
        return True
    finally:
        os.close(fd)


def apply_landlock(*, read: Iterable[str], write: Iterable[str], abi: int | None = None) -> str:
    """Restrict this thread (apply before any other thread exists): reads below ``read``,
    reads and writes below ``write``, no execution, no TCP, scoped sockets and signals."""
    abi = landlock_abi() if abi is None else abi
    if abi <= 0:
        raise JailError(errno.ENOSYS, "Landlock is not available")
    handled_fs = _fs_rights(abi)
    handled_net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    if abi >= 6:
        attr = struct.pack("=QQQ", handled_fs, handled_net, scoped)
    elif abi >= 4:
        attr = struct.pack("=QQ", handled_fs, handled_net)
    else:
        attr = struct.pack("=Q", handled_fs)
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = _syscall("landlock_create_ruleset", buf, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    try:
        for path in dict.fromkeys(write):
            _add_path_rule(ruleset, path, (_READ | _WRITE) & handled_fs)
        for path in dict.fromkeys(read):
            _add_path_rule(ruleset, path, _READ)
        _set_no_new_privs()
        _syscall("landlock_restrict_self", ctypes.c_int(ruleset), ctypes.c_uint32(0))
    finally:
        os.close(ruleset)
    parts = [f"ABI {abi}", "files: read/write by rule, no execution"]
    parts.append("TCP denied" if handled_net else "no TCP rules (ABI < 4)")
    parts.append("signals and abstract sockets scoped" if scoped else "no scoping (ABI < 6)")
    return "; ".join(parts)


def _set_no_new_privs() -> None:
    if _c().prctl(ctypes.c_int(PR_SET_NO_NEW_PRIVS), ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0),
                  ctypes.c_ulong(0)) != 0:
        err = ctypes.get_errno()
        raise JailError(err, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(err)}")


# --- seccomp -------------------------------------------------------------------------------------

_LD_W_ABS, _JEQ, _JSET, _JGE, _RET = 0x20, 0x15, 0x45, 0x35, 0x06
_RET_ALLOW, _RET_KILL_PROCESS, _RET_ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_OFF_NR, _OFF_ARCH = 0, 4


def _arg_lo(i: int) -> int:
    return 16 + 8 * i  # struct seccomp_data.args[i], low 32 bits (little-endian)


def build_seccomp_filter(pid: int, arch: str | None = None) -> list[tuple[int, int, int, int]]:
    """The classic-BPF program (list of (code, jt, jf, k)) for this worker's ``pid``."""
    arch = arch or _ARCH
    if arch is None:
        raise JailError(errno.ENOSYS, f"seccomp filter: unsupported architecture {_MACHINE!r}")
    nr = _NR[arch]
    eperm = _RET_ERRNO | errno.EPERM
    prog: list[tuple[int, int, int, int]] = [
        (_LD_W_ABS, 0, 0, _OFF_ARCH),
        (_JEQ, 1, 0, _AUDIT_ARCH[arch]),
        (_RET, 0, 0, _RET_KILL_PROCESS),
        (_LD_W_ABS, 0, 0, _OFF_NR),
    ]
    if arch == "x86_64":  # x32 system calls (bit 30) take another table: refuse them all
        prog += [(_JGE, 0, 1, 0x40000000), (_RET, 0, 0, eperm)]
    for name in DENIED_SYSCALLS:
        if name in nr:
            prog += [(_JEQ, 0, 1, nr[name]), (_RET, 0, 0, eperm)]
    # clone3 passes its flags in memory the filter cannot read: ENOSYS makes the C library use clone
    prog += [(_JEQ, 0, 1, nr["clone3"]), (_RET, 0, 0, _RET_ERRNO | errno.ENOSYS)]
    # clone: threads only
    prog += [
        (_JEQ, 0, 4, nr["clone"]),
        (_LD_W_ABS, 0, 0, _arg_lo(0)),
        (_JSET, 1, 0, CLONE_THREAD),
        (_RET, 0, 0, eperm),
        (_RET, 0, 0, _RET_ALLOW),
    ]
    # signals: only to the worker itself (argument 0 is the target process id)
    for name in ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):
        prog += [
            (_LD_W_ABS, 0, 0, _OFF_NR),
            (_JEQ, 0, 4, nr[name]),
            (_LD_W_ABS, 0, 0, _arg_lo(0)),
            (_JEQ, 0, 1, pid),
            (_RET, 0, 0, _RET_ALLOW),
            (_RET, 0, 0, eperm),
        ]
    # ioctl: no typing into the terminal
    prog += [
        (_LD_W_ABS, 0, 0, _OFF_NR),
        (_JEQ, 0, 4, nr["ioctl"]),
        (_LD_W_ABS, 0, 0, _arg_lo(1)),
        (_JEQ, 1, 0, TIOCSTI),
        (_JEQ, 0, 1, TIOCLINUX),
        (_RET, 0, 0, eperm),
        (_RET, 0, 0, _RET_ALLOW),
    ]
    return prog


def apply_seccomp(pid: int | None = None) -> str:
    """Install the filter on every thread of this process (``SECCOMP_FILTER_FLAG_TSYNC``)."""
    prog = build_seccomp_filter(os.getpid() if pid is None else pid)
    for code, jt, jf, _k in prog:
        assert 0 <= jt < 256 and 0 <= jf < 256 and code >= 0
    raw = b"".join(struct.pack("=HBBI", code, jt, jf, k) for code, jt, jf, k in prog)
    filt = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("=HxxxxxxQ", len(prog), ctypes.addressof(filt))
    fbuf = ctypes.create_string_buffer(fprog, len(fprog))
    _set_no_new_privs()
    _syscall("seccomp", ctypes.c_uint(SECCOMP_SET_MODE_FILTER), ctypes.c_uint(SECCOMP_FILTER_FLAG_TSYNC), fbuf)
    return f"{len(DENIED_SYSCALLS)} system calls refused; clone for threads only; signals to itself only"


# --- all together --------------------------------------------------------------------------------


def confine(*, read: Iterable[str], write: Iterable[str], skip: Iterable[str] = (),
            missing: Iterable[str] = ()) -> dict[str, str]:
    """Apply every available layer not in ``skip``; layer -> what was applied, or why not.

    ``skip`` switches layers off (tests of each layer alone); ``missing`` makes
    layers look unavailable (tests of the refusal path).  A status starting
    with ``"active"`` means the layer is in force.  Must run in a
    single-threaded process, before any user code.
    """
    skip = set(skip)
    problems = probe(missing)
    status: dict[str, str] = {}
    for layer in OS_LAYERS:
        if layer in skip:
            status[layer] = "off (switched off for a test)"
            continue
        if problems.get(layer):
            status[layer] = f"unavailable: {problems[layer]}"
            continue
        try:
            if layer == "namespaces":
                detail = enter_namespaces()
            elif layer == "landlock":
                detail = apply_landlock(read=read, write=write)
            else:
                detail = apply_seccomp()
        except OSError as exc:
            status[layer] = f"unavailable: {exc.strerror or exc}"
            continue
        status[layer] = f"active: {detail}"
    return status


def is_active(status: str) -> bool:
    return status.startswith("active")


__all__ = ["OS_LAYERS", "PRETEND_MISSING_ENV", "JailError", "apply_landlock", "apply_seccomp", "confine",
           "enter_namespaces", "is_active", "landlock_abi", "probe"]
