"""The REPL inside the worker: its namespace, builtins, output capture and one cell's run.

:class:`Repl` owns the user's globals (which persist across cells), the
restricted builtins (guards from :mod:`rlm_env_local.guards`, ``__import__``
from :mod:`rlm_env_local.modules`, a path-checked ``open``, the host functions
``llm_query``/``llm_query_batched``/``FINAL``/``FINAL_VAR``) and the capped
output buffer that ``print`` and ``sys.stdout``/``sys.stderr`` write into.
:meth:`Repl.run` compiles and runs one cell and returns the JSON-ready payload
of its result.  Runs inside the worker process.

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
import json
import linecache
import os
import reprlib
import time
import traceback
import types
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence

from rlm_env_local import guards
from rlm_env_local.audit import AuditPolicy
from rlm_env_local.guards import Sealed
from rlm_env_local.modules import ModuleGate
from rlm_env_local.policy import DISPLAY_HOOK, CellSyntaxError, compile_cell

CELL_PREFIX = "<cell "
CONTEXT_REPR_CHARS = 200
MAX_ERROR_CHARS = 20_000
MAX_CACHED_CELLS = 500

_SAFE_BUILTIN_NAMES = (
    "abs", "all", "any", "ascii", "bin", "bool", "bytearray", "bytes", "callable", "chr", "classmethod",
    "complex", "dict", "divmod", "enumerate", "filter", "float", "format", "frozenset", "hash", "hex", "id",
    "int", "isinstance", "issubclass", "iter", "len", "list", "map", "max", "memoryview", "min", "next",
    "object", "oct", "ord", "pow", "property", "range", "repr", "reversed", "round", "set", "slice",
    "sorted", "staticmethod", "str", "sum", "super", "tuple", "zip", "None", "True", "False", "Ellipsis",
    "NotImplemented", "__build_class__",
)

HostCall = Callable[[str, dict[str, Any]], Any]


class FinalExit(BaseException):
    """Raised by FINAL/FINAL_VAR to end the cell (not an error)."""


class Output(Sealed):
    """What a cell printed, cut at ``limit`` characters (``truncated`` says so)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.reset()

    def reset(self) -> None:
        self._parts: list[str] = []
        self._size = 0
        self.truncated = False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        room = self.limit - self._size
        if len(text) > room:
            self.truncated = True
            text = text[:max(room, 0)]
        if text:
            self._parts.append(text)
            self._size += len(text)
        return len(text)

    def getvalue(self) -> str:
        return "".join(self._parts)


class Stream(Sealed):
    """``sys.stdout``/``sys.stderr`` of the worker: writes go to the current cell's output.

    Library objects keep it (``pprint.PrettyPrinter()._stream``), so it holds only a
    write function, not the :class:`Output` itself."""

    __slots__ = ("_write",)
    encoding = "utf-8"
    errors = "replace"

    def __init__(self, write: Callable[[str], int]) -> None:
        self._write = write

    def write(self, text: str) -> int:
        return self._write(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return False


class Outcome(Sealed):
    """The current cell's displayed value and final answer, set by the display hook and FINAL."""

    __slots__ = ("final", "value")

    def __init__(self) -> None:
        self.value: str | None = None
        self.final: dict[str, Any] | None = None


def _print_factory(stream: Stream) -> type:
    class PrintTarget(Sealed):
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

    def open(file: Any, mode: str = "r", buffering: int = -1, encoding: str | None = None,  # noqa: A001
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


def render_final(value: Any) -> str:
    """FINAL's answer as text: strings as they are, JSON for lists/dicts, else ``str()``."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict, tuple)):
        try:
            return json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            pass
    return str(value)


def make_host_functions(*, host: HostCall, has_callbacks: bool, outcome: Outcome, user_globals: dict[str, Any],
                        value_limit: int) -> dict[str, Callable[..., Any]]:
    """``llm_query``, ``llm_query_batched``, ``FINAL``, ``FINAL_VAR`` and the display hook.

    Plain functions (copying or walking them reaches nothing) closing over the host
    channel, the cell's ``outcome`` and the user's own globals -- nothing else."""

    def ask(op: str, payload: dict[str, Any]) -> Any:
        if not has_callbacks:
            raise RuntimeError(f"{op} is not available: this REPL session has no host callbacks "
                               "(the environment was created with callbacks=None)")
        reply = host(op, payload)
        if not reply.get("ok"):
            raise RuntimeError(f"{op} failed: {reply.get('error', 'unknown error')}")
        return reply.get("value")

    def llm_query(prompt: str) -> str:
        if not isinstance(prompt, str):
            raise TypeError(f"llm_query(prompt): prompt must be a str, not {type(prompt).__name__}")
        return ask("llm_query", {"prompt": str.__str__(prompt)})

    def llm_query_batched(prompts: Any) -> list[str]:
        if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)):
            raise TypeError("llm_query_batched(prompts): prompts must be a list of str")
        items = list(prompts)
        for p in items:
            if not isinstance(p, str):
                raise TypeError(f"llm_query_batched(prompts): every prompt must be a str, not {type(p).__name__}")
        return list(ask("llm_query_batched", {"prompts": [str.__str__(p) for p in items]}))

    def FINAL(answer: Any) -> None:  # noqa: N802 - the name the model uses
        outcome.final = {"kind": "final", "value": render_final(answer), "variable": None}
        raise FinalExit

    def FINAL_VAR(name: Any) -> None:  # noqa: N802
        if not isinstance(name, str):
            raise TypeError('FINAL_VAR(name) takes the name of a variable as a string, e.g. FINAL_VAR("answer"); '
                            "to answer with a value use FINAL(value)")
        name = str.__str__(name)
        if name not in user_globals or name.startswith("_"):
            raise NameError(f"FINAL_VAR({name!r}): no variable named {name!r} is defined in the REPL; "
                            f"assign it first ({name} = ...) or answer with FINAL(value)")
        outcome.final = {"kind": "final_var", "value": render_final(user_globals[name]), "variable": name}
        raise FinalExit

    def display(value: Any) -> None:
        if value is not None:
            outcome.value = _cap(repr(value), value_limit)

    functions = {"llm_query": llm_query, "llm_query_batched": llm_query_batched, "FINAL": FINAL,
                 "FINAL_VAR": FINAL_VAR, DISPLAY_HOOK: display}
    for name, fn in functions.items():
        fn.__qualname__ = name
    return functions


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


def _short_repr() -> reprlib.Repr:
    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 3, 20, 20, 20, 20
    r.maxstring, r.maxother, r.maxlong = 120, 120, 120
    return r


class Repl(Sealed):
    """One session's interpreter state and the code that runs cells in it.

    ``restricted=False`` (tests only) runs cells as plain Python: no RestrictedPython,
    no guards, no module gate, the real builtins plus the host functions."""

    def __init__(self, *, gate: ModuleGate, audit: AuditPolicy | None, host: HostCall, has_callbacks: bool,
                 read_roots: Iterable[str], write_roots: Iterable[str], workdir: str, output_limit: int,
                 restricted: bool = True) -> None:
        self.restricted = restricted
        self._set_user_mode = audit.take_user_switch() if audit is not None else None
        self.output = Output(output_limit)
        output_write = self.output.write

        def write(text: str) -> int:
            return output_write(text)

        self.stream = Stream(write)
        self.outcome = Outcome()
        self.cells = 0
        self._sources: OrderedDict[str, None] = OrderedDict()
        self._short = _short_repr()
        self.globals: dict[str, Any] = {}
        host_functions = make_host_functions(host=host, has_callbacks=has_callbacks, outcome=self.outcome,
                                             user_globals=self.globals, value_limit=output_limit)
        if restricted:
            self._builtins = _restricted_builtins(
                open_=make_open(read_roots=read_roots, write_roots=write_roots, workdir=workdir),
                import_=gate.importer(), stream=self.stream, host_functions=host_functions)
        else:
            self._builtins = {**vars(builtins), **host_functions}
        self.clear()

    # --- namespace -------------------------------------------------------------------------

    def user_names(self) -> list[str]:
        return [n for n, v in self.globals.items() if not n.startswith("_") and not _is_module(v)]

    def clear(self) -> None:
        """Forget every user variable, function, class and import."""
        self.globals.clear()
        self.globals.update({"__builtins__": self._builtins, "__name__": guards.REPL_MODULE, "__doc__": None})

    # --- running ---------------------------------------------------------------------------

    def _remember_source(self, filename: str, source: str) -> None:
        lines = source.splitlines(keepends=True)
        linecache.cache[filename] = (len(source), None, lines, filename)
        self._sources[filename] = None
        while len(self._sources) > MAX_CACHED_CELLS:
            old, _ = self._sources.popitem(last=False)
            linecache.cache.pop(old, None)

    def _enter_user(self) -> None:
        if self._set_user_mode is not None:
            self._set_user_mode(True)

    def _leave_user(self) -> None:
        if self._set_user_mode is not None:
            self._set_user_mode(False)

    def run(self, source: str) -> dict[str, Any]:
        """Run one cell; the result payload (output, value, error, final, cpu time)."""
        self.output.reset()
        outcome = self.outcome
        outcome.value = None
        outcome.final = None
        self.cells += 1
        filename = f"{CELL_PREFIX}{self.cells}>"
        error: str | None = None
        cpu_start = time.process_time()
        try:
            code = compile_cell(source, filename, restricted=self.restricted)
        except CellSyntaxError as exc:
            error = str(exc)
        else:
            self._remember_source(filename, source)
            try:
                self._enter_user()
                exec(code, self.globals)
            except FinalExit:
                pass
            except BaseException as exc:  # noqa: BLE001 - user errors become results
                self._leave_user()
                error = format_user_error(exc)
            finally:
                self._leave_user()
        if error is not None and outcome.final is not None and outcome.final["kind"] == "final_var":
            outcome.final = None
        return {
            "output": self.output.getvalue(),
            "truncated": self.output.truncated,
            "error": error,
            "value": outcome.value,
            "final": outcome.final,
            "cpu_time_ms": round((time.process_time() - cpu_start) * 1000, 3),
        }

    def context(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in self.user_names():
            try:
                self._enter_user()
                text = self._short.repr(self.globals[name])
            except BaseException as exc:  # noqa: BLE001
                text = f"<repr failed: {type(exc).__name__}>"
            finally:
                self._leave_user()
            out[name] = _cap(text, CONTEXT_REPR_CHARS)
        return out

    def get(self, name: str) -> dict[str, Any]:
        if not isinstance(name, str) or name.startswith("_") or name not in self.globals \
                or _is_module(self.globals[name]):
            return {"found": False}
        value = self.globals[name]
        try:
            self._enter_user()
            try:
                text = json.dumps(value)
            except (TypeError, ValueError, RecursionError):
                return {"found": True, "repr": _cap(repr(value), max(self.output.limit, 1_000_000))}
            return {"found": True, "json": text}
        except BaseException as exc:  # noqa: BLE001 - a broken __repr__
            return {"found": True, "repr": f"<repr failed: {type(exc).__name__}>"}
        finally:
            self._leave_user()

    def set(self, name: str, value: Any) -> None:
        self.globals[name] = value


def _is_module(value: Any) -> bool:
    return isinstance(value, types.ModuleType)


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:max(limit - 3, 0)] + "..."


def format_user_error(exc: BaseException) -> str:
    """The exception as a traceback of the user's own frames only."""
    try:
        summary = traceback.StackSummary.extract(traceback.walk_tb(exc.__traceback__), lookup_lines=False)
        frames = traceback.StackSummary.from_list([f for f in summary if f.filename.startswith(CELL_PREFIX)])
        parts: list[str] = []
        if frames:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(frames.format())
        parts.extend(traceback.format_exception_only(type(exc), exc))
        text = "".join(parts).rstrip("\n")
    except BaseException:  # noqa: BLE001 - e.g. MemoryError while formatting
        try:
            text = f"{type(exc).__name__}: {exc}"
        except BaseException:  # noqa: BLE001
            text = type(exc).__name__
    return _cap(text, MAX_ERROR_CHARS)
