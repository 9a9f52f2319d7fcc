"""The RestrictedPython policy on top of the shared REPL: namespace, builtins, ``open``, compiler.

:class:`Repl` is :class:`rlm_repl.repl_server.Repl` (the namespace that persists
across cells, the capped output, the host functions ``llm_query``/
``llm_query_batched``/``FINAL``/``FINAL_VAR``, one cell's run) with the local
sandbox's policy: cells are compiled by :func:`rlm_env_local.policy.compile_cell`
(RestrictedPython), run with restricted builtins (guards from
:mod:`rlm_env_local.guards`, ``__import__`` from :mod:`rlm_env_local.modules`, a
path-checked ``open``) in a plain dict, and the audit hook is in user mode while
user code runs.  Runs inside the worker process.

Nothing user code can touch leads back to the machinery: the functions put in
the namespace are plain closures over the least they need (the host channel,
the cell's :class:`Outcome`, the user's own globals) -- never bound methods
of :class:`Repl` -- and the REPL's own objects (:class:`Repl`, :class:`Output`,
:class:`Stream`, :class:`Outcome`) refuse to be copied or pickled, so library
code that walks object graphs (``copy.deepcopy``'s memo) stops at them.

``Repl(restricted=False)`` is a test-only switch: cells are compiled with plain
``compile()`` and run with the real builtins plus the host functions.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Iterable
from typing import Any

from RestrictedPython.Guards import (
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
)
from rlm_repl import repl_server
from rlm_repl.repl_server import Outcome, Output, Stream

from rlm_env_local import guards
from rlm_env_local.audit import AuditPolicy
from rlm_env_local.modules import ModuleGate
from rlm_env_local.policy import compile_cell

_SAFE_BUILTIN_NAMES = (
    "abs", "all", "any", "ascii", "bin", "bool", "bytearray", "bytes", "callable", "chr", "classmethod",
    "complex", "dict", "divmod", "enumerate", "filter", "float", "format", "frozenset", "hash", "hex", "id",
    "int", "isinstance", "issubclass", "iter", "len", "list", "map", "max", "memoryview", "min", "next",
    "object", "oct", "ord", "pow", "property", "range", "repr", "reversed", "round", "set", "slice",
    "sorted", "staticmethod", "str", "sum", "super", "tuple", "zip", "None", "True", "False", "Ellipsis",
    "NotImplemented", "__build_class__",
)

HostCall = Callable[[str, dict[str, Any]], Any]

__all__ = ["Outcome", "Output", "Repl", "Stream", "make_open"]


def _print_factory(stream: Stream) -> type:
    class PrintTarget(repl_server.Sealed):
        """``_print_``: RestrictedPython turns ``print(...)`` into ``_print._call_print(...)``."""

        def __init__(self, _getattr_: Any = None) -> None:
            pass

        def _call_print(self, *objects: Any, **kwargs: Any) -> None:
            target = kwargs.get("file")
            if target is None:
                kwargs["file"] = stream
            else:
                guards.guarded_getattr(target, "write")
            print(*objects, **kwargs)

        def __call__(self) -> str:  # the name ``printed``; we do not collect
            return ""

    return PrintTarget


def _within(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def make_open(*, read_roots: Iterable[str], write_roots: Iterable[str], workdir: str) -> Callable[..., Any]:
    """The REPL's ``open``: paths only, inside the allowed paths; writes only in writable paths."""
    writable = tuple(os.path.realpath(p) for p in write_roots)
    readable = tuple(os.path.realpath(p) for p in read_roots) + writable
    real_open = builtins.open

    def open(file: Any, mode: str = "r", buffering: int = -1, encoding: str | None = None,
             errors: str | None = None, newline: str | None = None) -> Any:
        if isinstance(file, bytes):
            file = os.fsdecode(file)
        if not isinstance(file, str):
            raise TypeError("open() takes a path (str) in the sandbox")
        if not isinstance(mode, str):
            raise TypeError("open() mode must be a str")
        file, mode = str.__str__(file), str.__str__(mode)  # exact str: no overridden methods
        writing = any(c in mode for c in "wax+")
        path = os.path.realpath(os.path.join(workdir, file))
        if writing and not _within(path, writable):
            where = ", ".join(writable) if writable else "none are configured"
            raise PermissionError(f"open({file!r}, {mode!r}): writing is allowed only under the writable "
                                  f"paths ({where})")
        if not writing and not _within(path, readable):
            raise PermissionError(f"open({file!r}): the path is outside the allowed paths "
                                  f"({', '.join(readable) or 'none are configured'})")
        return real_open(path, mode, buffering, encoding, errors, newline)

    return open


def _restricted_builtins(*, open_: Callable[..., Any], import_: Callable[..., Any], stream: Stream,
                         host_functions: dict[str, Callable[..., Any]]) -> dict[str, Any]:
    b: dict[str, Any] = {name: getattr(builtins, name) for name in _SAFE_BUILTIN_NAMES}
    for name in dir(builtins):
        value = getattr(builtins, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            b[name] = value
    b.update({
        "getattr": guards.guarded_getattr, "setattr": guards.guarded_setattr,
        "delattr": guards.guarded_delattr, "hasattr": guards.guarded_hasattr, "dir": guards.guarded_dir,
        "type": guards.SafeType, "open": open_, "__import__": import_,
        "__metaclass__": guards.class_factory,
        "_getattr_": guards.guarded_getattr, "_write_": guards.guarded_write,
        "_getitem_": guards.guarded_getitem, "_getiter_": guards.guarded_getiter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence, "_inplacevar_": guards.guarded_inplacevar,
        "_apply_": guards.guarded_apply, "_print_": _print_factory(stream),
    })
    b.update(host_functions)
    return b


class Repl(repl_server.Repl):
    """The shared REPL under the local sandbox's policy (see the module docstring).

    ``restricted=False`` (tests only) runs cells as plain Python: no RestrictedPython,
    no guards, no module gate, the real builtins plus the host functions."""

    module_name = guards.REPL_MODULE

    def __init__(self, *, gate: ModuleGate, audit: AuditPolicy | None, host: HostCall, has_callbacks: bool,
                 read_roots: Iterable[str], write_roots: Iterable[str], workdir: str, output_limit: int,
                 restricted: bool = True) -> None:
        self.restricted = restricted
        self._set_user_mode = audit.take_user_switch() if audit is not None else None
        self._gate = gate
        self._open = make_open(read_roots=read_roots, write_roots=write_roots, workdir=workdir)
        super().__init__(host, has_callbacks, output_limit)

    def new_globals(self) -> dict[str, Any]:
        return {}

    def make_builtins(self, host_functions: dict[str, Callable[..., Any]]) -> dict[str, Any]:
        gate, open_ = self._gate, self._open
        del self._gate, self._open  # the builtins hold them; the REPL need not
        if not self.restricted:
            return {**vars(builtins), **host_functions}
        return _restricted_builtins(open_=open_, import_=gate.importer(), stream=self.stream,
                                    host_functions=host_functions)

    def compile(self, source: str, filename: str) -> Any:
        return compile_cell(source, filename, restricted=self.restricted)

    def enter_user(self) -> None:
        if self._set_user_mode is not None:
            self._set_user_mode(True)

    def leave_user(self) -> None:
        if self._set_user_mode is not None:
            self._set_user_mode(False)
