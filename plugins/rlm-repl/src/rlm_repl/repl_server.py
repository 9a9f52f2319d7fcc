"""The guest REPL server: one persistent Python session answering JSON lines.

One server for every environment.  Docker and WebAssembly run it *inside*
their sandbox as a script (``python3 -u repl_server.py`` or ``python3 -u -c
"<this source>"``); rlm-env-local's worker imports it as
:mod:`rlm_repl.repl_server` and puts its RestrictedPython policy on top (a
:class:`Repl` subclass with its own compiler, builtins and namespace).  It is
stdlib-only and works where there are no threads, no subprocesses, no
sockets, no ``os.dup``, no ``signal`` and no ``resource`` (WASI CPython):
every optional facility is probed and skipped when absent.

What lives here: :class:`Channel` (the JSON lines), :class:`Repl` (the user's
namespace, the host functions and one cell's run), :class:`Server` (the
request loop) and the process-level helpers (limits, interrupts, streams).

Streams
-------
Requests arrive on stdin, one JSON object per line; replies leave on stdout,
one JSON object per line (ASCII-only JSON, so a line never holds a raw
newline).  User code never writes into this stream: ``sys.stdout`` and
``sys.stderr`` (and ``sys.__stdout__``/``sys.__stderr__``) become a capped
capture buffer, ``sys.stdin`` an empty one (all put back after every cell),
and where ``os.dup`` exists the protocol moves to private duplicates of fds
0/1 while fds 0/1 point to ``/dev/null`` (so even C code writing to fd 1
cannot reach the host).  Where it does not, stray bytes on fd 1 are possible;
the host ignores every line without this session's nonce.  fd 2 is left
alone (the sandbox's stderr: the server reports its own crashes there).

The server's own modules are not the user's: the JSON codec, ``ast``,
``traceback`` and ``reprlib`` it uses are private copies imported apart from
``sys.modules``, so a cell that patches ``json`` (or ``json.JSONEncoder``)
changes only what its own code sees, never a reply.

Handshake
---------
host -> guest ``{"op": "init", "nonce": str, "output_limit": int,
"has_callbacks": bool, "memory_limit_mb": int|null, "workdir": str|null,
"max_file_size_mb": int|null, "max_open_files": int|null}`` (only ``nonce`` is
required).  The limits become rlimits (soft and hard) where :mod:`resource`
exists: ``RLIMIT_AS`` (allocations past it raise ``MemoryError`` in the
user's code), ``RLIMIT_FSIZE`` (a write past it fails with ``EFBIG``),
``RLIMIT_NOFILE``; ``workdir`` is ``chdir``-ed into when possible.

guest -> host ``{"nonce", "id": null, "op": "ready", "version": 1, "pid",
"python": "3.11.2", "features": {...}}`` (an embedding worker adds its own fields).

Requests (host -> guest) and replies (guest -> host)
----------------------------------------------------
Every request is ``{"id": <int|str>, "op": ..., ...}``; exactly one reply
``{"nonce", "id": <same>, "op": "done", ...}`` answers it, after any number of
callback lines (below).  Requests are served one at a time, in order.  Any
request may carry ``cpu_limit_s`` (CPU seconds it may use) and ``exec`` also
``file_size_limit`` (bytes: the soft ``RLIMIT_FSIZE`` for this cell, never
above the session's hard limit).

``exec`` ``{"code": str, "output_limit"?: int}`` runs a cell with notebook
semantics in the persistent namespace: a trailing expression's value is
shown as its ``repr``.  Reply: ``{"output": str, "truncated": bool, "value":
str|null, "error": str|null, "final": {"kind": "final"|"final_var", "value":
str, "variable": str|null}|null, "cpu_time_ms": float|null,
"memory_peak_bytes": int|null}``.  ``output`` is everything printed (stdout
and stderr interleaved), cut at ``output_limit`` characters, the final answer
too (``truncated`` says so); ``error`` is the traceback restricted to the
user's frames (``<cell N>``), or ``KeyboardInterrupt`` when the host
interrupted it.  ``FINAL(answer)`` and ``FINAL_VAR("name")`` end the cell and
fill ``final``; ``FINAL_VAR`` of a missing variable is a ``NameError`` naming it.

``context`` -> ``{"context": {name: short repr}}`` (user variables only: no
modules, no ``_names``; the host functions live in builtins).
``get`` ``{"name"}`` -> ``{"found": false}``, or ``{"found": true, "json": text}``
(the value as JSON text) or ``{"found": true, "repr": text}`` (not JSON-able,
or too large).  ``set`` ``{"name", "value": json}`` -> ``{}``.  ``clear`` -> ``{}``
(every user name gone).  ``ping`` -> ``{"pid"}``.  A request the server cannot
serve (unknown op, bad fields, a bug) gets ``{"fault": text}``.

Callbacks (guest -> host, then host -> guest)
---------------------------------------------
User code calling ``llm_query(prompt)`` / ``llm_query_batched(prompts)`` sends
``{"nonce", "id": <current request>, "op": "llm_query", "seq": n, "prompt"}``
or ``{..., "op": "llm_query_batched", "seq": n, "prompts": [...]}`` and blocks
reading stdin until ``{"op": "reply", "seq": n, "ok": true, "value": ...}`` or
``{"op": "reply", "seq": n, "ok": false, "error": text}`` (then a
``RuntimeError`` in the user's code).  Lines with another ``seq`` are skipped.

Interrupts and what a cell leaves behind
----------------------------------------
``SIGINT`` raises ``KeyboardInterrupt`` only while user code runs (the
execution ends with that error, the session survives); elsewhere it is
ignored.  Hosts use it to stop an execution past its timeout and kill the
sandbox only if no ``done`` follows.  A process forked by user code loses the
protocol streams and exits when its copy of the cell ends.  After every
request the interval timers a cell set are cancelled and the standard
streams put back.  (In Docker a supervisor, :mod:`rlm_repl.supervisor`, also
kills whatever processes and threads a cell left.)

The nonce is not a defence against user code (which, in Docker and
WebAssembly, runs in this very interpreter and could find it); it keeps
accidental bytes on fd 1 from being read as replies.  Hosts treat
everything the guest says as untrusted data.
"""

import builtins
import io
import math
import os
import sys
import time
import types


def _private_modules(names):
    """Fresh copies of stdlib modules (and their submodules), kept apart from ``sys.modules``.

    What the user imports afterwards is the ordinary module (the one that was
    there before, or a new one): patching it in a cell never touches ours."""
    def ours(key):
        return any(key == n or key.startswith(n + ".") for n in names)

    saved = {k: v for k, v in sys.modules.items() if ours(k)}
    for key in saved:
        del sys.modules[key]
    try:
        return [__import__(n, fromlist=["_"]) for n in names]
    finally:
        for key in [k for k in sys.modules if ours(k)]:
            del sys.modules[key]
        sys.modules.update(saved)


json, ast, traceback, reprlib = _private_modules(("json", "ast", "traceback", "reprlib"))
import linecache  # shared on purpose: tracebacks printed by user code show the cells' lines

PROTOCOL_VERSION = 1
CELL_PREFIX = "<cell "
DISPLAY_HOOK = "_rlm_display_"
CONTEXT_REPR_CHARS = 200
MAX_ERROR_CHARS = 20000
MAX_VALUE_CHARS = 1000000
MAX_JSON_CHARS = 8000000
MAX_CACHED_CELLS = 500
MIB = 1024 * 1024

try:
    import signal
except ImportError:  # pragma: no cover - WASI builds without signal
    signal = None
try:
    import resource
except ImportError:  # pragma: no cover - WASI
    resource = None


class Sealed:
    """Base of the REPL's own objects: they cannot be copied or pickled, so library code
    that walks object graphs (``copy.deepcopy`` and its memo, ``pickle``) stops at them
    instead of handing them, or what they hold, to user code."""

    __slots__ = ()

    def __reduce_ex__(self, protocol):
        raise TypeError(type(self).__name__ + " belongs to the sandbox and cannot be copied or pickled")


class FinalExit(BaseException):
    """Raised by FINAL/FINAL_VAR to end the cell (not an error)."""


class CellSyntaxError(Exception):
    """The code does not parse (or a policy on top refuses it at compile time)."""


class Channel(Sealed):
    """JSON lines on two binary streams; every message out carries the nonce."""

    __slots__ = ("closed", "moved", "nonce", "rfile", "wfile")

    def __init__(self, rfile, wfile, moved=False):
        self.rfile = rfile
        self.wfile = wfile
        self.nonce = ""
        self.closed = False
        self.moved = moved

    def read(self):
        """The next message (a dict), or None at end of input."""
        while True:
            if self.closed:
                return None
            line = self.rfile.readline()
            if not line:
                return None
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except (ValueError, RecursionError):
                _log("ignored a line that is not JSON")
                continue
            if isinstance(message, dict):
                return message
            _log("ignored a JSON line that is not an object")

    def send(self, message):
        if self.closed:
            _exit(0)
        message["nonce"] = self.nonce
        data = (json.dumps(message) + "\n").encode("ascii")
        self.wfile.write(data)
        self.wfile.flush()

    def close(self):
        self.closed = True
        for f in (self.rfile, self.wfile):
            try:
                f.close()
            except Exception:
                pass


def _log(text):
    try:
        os.write(2, ("rlm guest: " + text + "\n").encode("utf-8", "replace"))
    except Exception:
        pass


def _exit(code):
    exit_ = getattr(os, "_exit", None)
    if exit_ is not None:
        exit_(code)
    raise SystemExit(code)


# --- what a cell prints ------------------------------------------------------------------------


class Output(Sealed):
    """What one cell printed, cut at ``limit`` characters (``truncated`` says so)."""

    __slots__ = ("_parts", "_size", "limit", "truncated")

    def __init__(self, limit):
        self.limit = limit
        self.reset(limit)

    def reset(self, limit=None):
        if limit:
            self.limit = limit
        self._parts = []
        self._size = 0
        self.truncated = False

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError("write() argument must be str, not " + type(text).__name__)
        room = self.limit - self._size
        if len(text) > room:
            self.truncated = True
            text = text[:max(room, 0)]
        if text:
            self._parts.append(text)
            self._size += len(text)
        return len(text)

    def getvalue(self):
        return "".join(self._parts)


class _BinaryStream(Sealed):
    """``sys.stdout.buffer``: bytes written are decoded (UTF-8, replacing) into the output."""

    __slots__ = ("_write",)

    def __init__(self, write):
        self._write = write

    def write(self, data):
        data = bytes(data)
        self._write(data.decode("utf-8", "replace"))
        return len(data)

    def flush(self):
        return None


class Stream(Sealed):
    """``sys.stdout``/``sys.stderr`` of the REPL: writes go to the current cell's output.

    Library objects keep it (``pprint.PrettyPrinter()._stream``), so it holds only a
    write function, not the :class:`Output` itself."""

    __slots__ = ("_write", "buffer")
    encoding = "utf-8"
    errors = "replace"
    closed = False
    name = "<output>"

    def __init__(self, write):
        self._write = write
        self.buffer = _BinaryStream(write)

    def write(self, text):
        return self._write(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        return None

    def isatty(self):
        return False

    def writable(self):
        return True

    def readable(self):
        return False

    def seekable(self):
        return False

    def fileno(self):
        raise io.UnsupportedOperation("the REPL's output is captured; it has no file descriptor")


class Outcome(Sealed):
    """The current cell's displayed value and final answer, set by the display hook and FINAL
    (``cut``: the value's repr was longer than the output limit and was cut)."""

    __slots__ = ("cut", "final", "value")

    def __init__(self):
        self.value = None
        self.final = None
        self.cut = False


def install_streams(stream):
    """Point the standard streams at the REPL's capture (stdin: empty)."""
    sys.stdout = sys.stderr = sys.__stdout__ = sys.__stderr__ = stream
    sys.stdin = sys.__stdin__ = io.StringIO("")


# --- the host functions ------------------------------------------------------------------------


def render_final(value):
    """FINAL's answer as text: strings as they are, JSON for lists/dicts/tuples, else ``str()``."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict, tuple)):
        try:
            return json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):
            pass
    return str(value)


def make_host_functions(host, has_callbacks, outcome, user_globals, value_limit):
    """``llm_query``, ``llm_query_batched``, ``FINAL``, ``FINAL_VAR`` and the display hook.

    Plain functions (copying or walking them reaches nothing) closing over the host
    call, the cell's ``outcome`` and the user's own globals -- nothing else.
    ``host(op, payload)`` returns the host's reply ``{"ok", "value"|"error"}``."""

    def ask(op, payload):
        if not has_callbacks:
            raise RuntimeError(op + " is not available: this REPL session has no host callbacks "
                               "(the environment was created with callbacks=None)")
        reply = host(op, payload)
        if not reply.get("ok"):
            raise RuntimeError(op + " failed: " + str(reply.get("error") or "unknown error"))
        return reply.get("value")

    def llm_query(prompt):
        """Ask the host's LLM one question; returns the answer text."""
        if not isinstance(prompt, str):
            raise TypeError("llm_query(prompt): prompt must be a str, not " + type(prompt).__name__)
        return str(ask("llm_query", {"prompt": str.__str__(prompt)}))

    def llm_query_batched(prompts):
        """Ask the host's LLM several questions concurrently; returns the answers in order."""
        if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)):
            raise TypeError("llm_query_batched(prompts): prompts must be a list of str")
        items = list(prompts)
        for p in items:
            if not isinstance(p, str):
                raise TypeError("llm_query_batched(prompts): every prompt must be a str, not " + type(p).__name__)
        answers = ask("llm_query_batched", {"prompts": [str.__str__(p) for p in items]})
        if not isinstance(answers, list) or len(answers) != len(items):
            raise RuntimeError("llm_query_batched failed: the host sent a malformed answer")
        return [str(a) for a in answers]

    def FINAL(answer):
        """End the cell and answer with ``answer``."""
        outcome.final = {"kind": "final", "value": render_final(answer), "variable": None}
        raise FinalExit

    def FINAL_VAR(name):
        """End the cell and answer with the value of the variable called ``name``."""
        if not isinstance(name, str):
            raise TypeError('FINAL_VAR(name) takes the name of a variable as a string, e.g. FINAL_VAR("answer"); '
                            "to answer with a value use FINAL(value)")
        name = str.__str__(name).strip()
        if name.startswith("_") or name not in user_globals:
            raise NameError("FINAL_VAR(" + repr(name) + "): no variable named " + repr(name) + " is defined "
                            "in the REPL; assign it first (" + name + " = ...) or answer with FINAL(value)")
        outcome.final = {"kind": "final_var", "value": render_final(user_globals[name]), "variable": name}
        raise FinalExit

    def display(value):
        if value is not None:
            text = repr(value)
            outcome.cut = len(text) > value_limit
            outcome.value = _cap(text, value_limit)

    functions = {"llm_query": llm_query, "llm_query_batched": llm_query_batched, "FINAL": FINAL,
                 "FINAL_VAR": FINAL_VAR, DISPLAY_HOOK: display}
    for name, fn in functions.items():
        fn.__qualname__ = name
    return functions


# --- compiling and formatting ------------------------------------------------------------------


def parse_cell(source, filename):
    """The cell's syntax tree; a :class:`CellSyntaxError` with a one-line message when it does not parse."""
    try:
        return ast.parse(source, filename, "exec")
    except SyntaxError as exc:
        line = (exc.text or "").strip()
        where = "line " + str(exc.lineno) + (": " + line if line else "")
        raise CellSyntaxError("SyntaxError: " + str(exc.msg) + " (" + where + ")") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, nesting too deep
        raise CellSyntaxError("SyntaxError: " + type(exc).__name__ + ": " + str(exc)) from None


def display_last(tree):
    """Rewrite a trailing expression statement into ``_rlm_display_(expr)`` (notebook display)."""
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body[-1]
        call = ast.Call(func=ast.Name(DISPLAY_HOOK, ast.Load()), args=[last.value], keywords=[])
        tree.body[-1] = ast.copy_location(ast.Expr(ast.copy_location(call, last)), last)
    ast.fix_missing_locations(tree)
    return tree


def _cap(text, limit):
    if len(text) <= limit:
        return text
    return text[:max(limit - 3, 0)] + "..."


def _short_repr():
    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 3, 20, 20, 20, 20
    r.maxstring, r.maxother, r.maxlong = 120, 120, 120
    return r


def format_user_error(exc):
    """The exception as a traceback of the user's own frames (``<cell N>``) only (not capped)."""
    try:
        summary = traceback.StackSummary.extract(traceback.walk_tb(exc.__traceback__), lookup_lines=False)
        frames = traceback.StackSummary.from_list([f for f in summary if f.filename.startswith(CELL_PREFIX)])
        parts = []
        if frames:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(frames.format())
        parts.extend(traceback.format_exception_only(type(exc), exc))
        text = "".join(parts).rstrip("\n")
    except BaseException:
        try:
            text = type(exc).__name__ + ": " + str(exc)
        except BaseException:
            text = type(exc).__name__
    return text


def _is_module(value):
    return isinstance(value, types.ModuleType)


# --- the REPL ---------------------------------------------------------------------------------


class Repl(Sealed):
    """One session's interpreter state and the code that runs cells in it.

    Plain Python: cells compile with :func:`compile`, the namespace is a module
    named ``__main__`` and the host functions live in :mod:`builtins`.  A policy
    on top (rlm-env-local's RestrictedPython) overrides :meth:`new_globals`,
    :meth:`make_builtins`, :meth:`compile` and :meth:`enter_user`/:meth:`leave_user`.
    """

    module_name = "__main__"

    def __init__(self, host, has_callbacks, output_limit):
        self.output_limit = int(output_limit)
        self.output = Output(self.output_limit)
        output_write = self.output.write

        def write(text):
            return output_write(text)

        self.stream = Stream(write)
        self.outcome = Outcome()
        self.cells = 0
        self.in_user = False
        #: Whether the process's standard streams are this REPL's (put back after every cell).
        self.owns_streams = False
        self.pid = _getpid()
        self._sources = []
        self._short = _short_repr()
        self.globals = self.new_globals()
        host_functions = make_host_functions(host, bool(has_callbacks), self.outcome, self.globals,
                                             self.output_limit)
        self._builtins = self.make_builtins(host_functions)
        self.clear()

    # --- the policy (overridden on top) --------------------------------------------------------

    def new_globals(self):
        """The dict user code runs in (it persists across cells)."""
        module = types.ModuleType(self.module_name)
        sys.modules[self.module_name] = module
        return module.__dict__

    def make_builtins(self, host_functions):
        """What ``__builtins__`` is for user code; the host functions must be in it."""
        for name, fn in host_functions.items():
            setattr(builtins, name, fn)
        return builtins

    def compile(self, source, filename):
        """The code object of one cell (trailing expression displayed); CellSyntaxError when refused."""
        tree = display_last(parse_cell(source, filename))
        return compile(tree, filename, "exec", dont_inherit=True)

    def enter_user(self):
        self.in_user = True

    def leave_user(self):
        self.in_user = False

    # --- namespace -----------------------------------------------------------------------------

    def user_names(self):
        return [n for n, v in self.globals.items() if not n.startswith("_") and not _is_module(v)]

    def clear(self):
        """Forget every user variable, function, class and import."""
        self.globals.clear()
        self.globals.update({"__builtins__": self._builtins, "__name__": self.module_name, "__doc__": None})

    def set(self, name, value):
        self.globals[name] = value

    def install_streams(self):
        """Make the process's standard streams this REPL's capture, now and after every cell."""
        self.owns_streams = True
        install_streams(self.stream)

    # --- running -------------------------------------------------------------------------------

    def _remember_source(self, filename, source):
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        self._sources.append(filename)
        if len(self._sources) > MAX_CACHED_CELLS:
            linecache.cache.pop(self._sources.pop(0), None)

    def run(self, source, output_limit=None):
        """Run one cell; the reply payload (output, value, error, final, cpu time, memory)."""
        limit = int(output_limit or self.output_limit)
        self.output.reset(limit)
        outcome = self.outcome
        outcome.value = None
        outcome.final = None
        outcome.cut = False
        self.cells += 1
        filename = CELL_PREFIX + str(self.cells) + ">"
        error = None
        cpu_start = time.process_time()
        try:
            code = self.compile(source, filename)
        except CellSyntaxError as exc:
            error = str(exc)
        else:
            self._remember_source(filename, source)
            try:
                self.enter_user()
                exec(code, self.globals)
            except FinalExit:
                pass
            except BaseException as exc:
                self.leave_user()
                if _getpid() != self.pid:
                    _exit(0)  # a process forked by the user's code: its copy of the cell is over
                error = format_user_error(exc)
            finally:
                self.leave_user()
                if self.owns_streams:
                    install_streams(self.stream)
        final = outcome.final
        if error is not None and final is not None and final["kind"] == "final_var":
            final = None
        truncated = self.output.truncated or outcome.cut
        if error is not None and len(error) > MAX_ERROR_CHARS:
            error = _cap(error, MAX_ERROR_CHARS)
            truncated = True
        if final is not None and len(final["value"]) > limit:  # the host caps it too; keep the message small
            final = dict(final, value=final["value"][:limit])
            truncated = True
        return {
            "output": self.output.getvalue(),
            "truncated": truncated,
            "value": outcome.value,
            "error": error,
            "final": final,
            # without ``resource`` (WASI) process_time() is an emulation that reports nonsense
            "cpu_time_ms": round((time.process_time() - cpu_start) * 1000, 3) if resource is not None else None,
            "memory_peak_bytes": _peak_memory(),
        }

    def context(self):
        out = {}
        for name in self.user_names():
            try:
                self.enter_user()
                text = self._short.repr(self.globals[name])
            except BaseException as exc:
                text = "<repr failed: " + type(exc).__name__ + ">"
            finally:
                self.leave_user()
            out[name] = _cap(text, CONTEXT_REPR_CHARS)
        return out

    def get(self, name):
        if not isinstance(name, str) or name.startswith("_") or name not in self.globals \
                or _is_module(self.globals[name]):
            return {"found": False}
        value = self.globals[name]
        try:
            self.enter_user()
            try:
                text = json.dumps(value)
            except (TypeError, ValueError, RecursionError):
                text = None
            if text is not None and len(text) <= MAX_JSON_CHARS:
                return {"found": True, "json": text}
            return {"found": True, "repr": _cap(repr(value), max(self.output_limit, MAX_VALUE_CHARS))}
        except BaseException as exc:
            return {"found": True, "repr": "<repr failed: " + type(exc).__name__ + ">"}
        finally:
            self.leave_user()


# --- the request loop -------------------------------------------------------------------------


class Server(Sealed):
    """The request loop of one session: reads requests, runs them in :attr:`repl`, answers.

    ``cpu_kill``: past a request's ``cpu_limit_s`` the kernel kills the process
    (rlm-env-local: the host restarts it) instead of raising an error in the cell."""

    __slots__ = ("channel", "cpu_kill", "repl", "request_id", "seq")

    def __init__(self, channel, cpu_kill=False):
        self.channel = channel
        self.repl = None
        self.request_id = None
        self.seq = 0
        self.cpu_kill = cpu_kill

    def host_call(self):
        """The function the host functions ask through: sends a callback, waits for its reply."""
        server = self

        def host(op, payload):
            server.seq += 1
            seq = server.seq
            message = {"id": server.request_id, "op": op, "seq": seq}
            message.update(payload)
            server.channel.send(message)
            while True:
                reply = server.channel.read()
                if reply is None:
                    _exit(0)  # the host is gone
                if reply.get("op") == "reply" and reply.get("seq") == seq:
                    return reply

        return host

    def ready(self, **extra):
        """Tell the host the session is ready (``extra``: the embedding's own fields)."""
        message = {"id": None, "op": "ready", "version": PROTOCOL_VERSION, "pid": _getpid(),
                   "python": ".".join(str(v) for v in sys.version_info[:3])}
        message.update(extra)
        self.channel.send(message)

    def dispatch(self, request):
        repl = self.repl
        op = request.get("op")
        undo = _set_cpu_limit(request.get("cpu_limit_s"), self.cpu_kill)
        try:
            if op == "exec":
                code = request.get("code")
                if not isinstance(code, str):
                    return {"fault": "exec needs a 'code' string"}
                limit = request.get("output_limit")
                restore_fsize = _set_file_size_limit(request.get("file_size_limit"))
                try:
                    return repl.run(code, int(limit) if limit else None)
                finally:
                    restore_fsize()
            if op == "context":
                return {"context": repl.context()}
            if op == "get":
                return repl.get(request.get("name"))
            if op == "set":
                name = request.get("name")
                if not isinstance(name, str) or not name.isidentifier():
                    return {"fault": "set needs a valid variable 'name'"}
                repl.set(name, request.get("value"))
                return {}
            if op == "clear":
                repl.clear()
                return {}
            if op == "ping":
                return {"pid": _getpid()}
            return {"fault": "unknown op " + repr(op)}
        finally:
            undo()

    def loop(self):
        """Answer requests until the host closes the channel."""
        channel = self.channel
        while True:
            request = None
            try:
                request = channel.read()
                if request is None:
                    return
                self.request_id = request.get("id")
                try:
                    reply = self.dispatch(request)
                except (KeyboardInterrupt, FinalExit):
                    reply = {"error": "KeyboardInterrupt", "interrupted": True}
                except Exception:
                    reply = {"fault": traceback.format_exc(limit=5)}
            except KeyboardInterrupt:  # a late interrupt, outside user code
                if request is None:
                    continue
                reply = {"error": "KeyboardInterrupt", "interrupted": True}
            if _getpid() != self.repl.pid:
                _exit(0)  # a process forked by user code: its copy of the cell is over
            _after_request()
            reply["id"] = request.get("id")
            reply["op"] = "done"
            try:
                channel.send(reply)
            except MemoryError:
                channel.send({"id": request.get("id"), "op": "done",
                              "fault": "the guest ran out of memory while sending the result"})
            _reap_children()


# --- process-level helpers --------------------------------------------------------------------


def _getpid():
    try:
        return os.getpid()
    except Exception:
        return None


def _peak_memory():
    if resource is None:
        return None
    try:
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    except Exception:
        return None


def _set_rlimit(which, value):
    """Soft and hard limit: user code cannot raise it again (no CAP_SYS_RESOURCE in a sandbox)."""
    _soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY and value > hard:
        value = hard
    resource.setrlimit(which, (value, value))


def apply_limits(init):
    """The session's rlimits from ``init`` (no core dumps; address space, file size, open files)."""
    if resource is None:
        return
    try:
        _set_rlimit(resource.RLIMIT_CORE, 0)
        if init.get("max_open_files"):
            _set_rlimit(resource.RLIMIT_NOFILE, int(init["max_open_files"]))
        if init.get("max_file_size_mb"):
            if signal is not None and hasattr(signal, "SIGXFSZ"):
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it fails with EFBIG instead
            _set_rlimit(resource.RLIMIT_FSIZE, int(init["max_file_size_mb"]) * MIB)
        if init.get("memory_limit_mb"):
            _set_rlimit(resource.RLIMIT_AS, int(init["memory_limit_mb"]) * MIB)
    except (ValueError, OSError, AttributeError) as exc:
        _log("could not set resource limits: " + str(exc))


class CpuLimitExceeded(Exception):
    """The execution used more CPU time than its limit."""


def _on_sigxcpu(signum, frame):
    raise CpuLimitExceeded("the execution exceeded its CPU time limit")


def _nothing():
    return None


def _set_cpu_limit(seconds, kill=False):
    """Let this request use ``seconds`` more CPU time; returns the undo.

    Past it ``SIGXCPU`` raises :class:`CpuLimitExceeded` in the cell, or (``kill``)
    ends the process, whose host then restarts it."""
    if not seconds or resource is None or signal is None or not hasattr(signal, "SIGXCPU"):
        return _nothing
    try:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        old = resource.getrlimit(resource.RLIMIT_CPU)
        soft = max(1, int(math.ceil(usage.ru_utime + usage.ru_stime + max(float(seconds), 0.0))))
        if old[1] != resource.RLIM_INFINITY:
            soft = min(soft, old[1])
        previous = signal.signal(signal.SIGXCPU, signal.SIG_DFL if kill else _on_sigxcpu)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, old[1]))
    except (ValueError, OSError, TypeError):
        return _nothing
    if kill:
        return _nothing  # the next request sets its own limit

    def undo():
        try:
            resource.setrlimit(resource.RLIMIT_CPU, old)
            signal.signal(signal.SIGXCPU, previous)
        except (ValueError, OSError, TypeError):
            pass
    return undo


def _set_file_size_limit(limit):
    """The soft ``RLIMIT_FSIZE`` of one cell (never above the hard limit); returns the undo."""
    if limit is None or resource is None or isinstance(limit, bool) or not isinstance(limit, int):
        return _nothing
    try:
        old = resource.getrlimit(resource.RLIMIT_FSIZE)
        soft = max(0, limit)
        if old[1] != resource.RLIM_INFINITY:
            soft = min(soft, old[1])
        if signal is not None and hasattr(signal, "SIGXFSZ"):
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, old[1]))
    except (ValueError, OSError):
        return _nothing

    def undo():
        try:
            resource.setrlimit(resource.RLIMIT_FSIZE, old)
        except (ValueError, OSError):
            pass
    return undo


def _after_request():
    """Cancel the interval timers a cell set: nothing it scheduled runs between or in later cells."""
    if signal is None or not hasattr(signal, "setitimer"):
        return
    for which in ("ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF"):
        try:
            signal.setitimer(getattr(signal, which), 0)
        except Exception:
            pass


def _reap_children():
    """Collect exited child processes (those a cell started, killed by a supervisor, or orphans
    adopted as a container's PID 1) so they do not pile up as zombies."""
    if not hasattr(os, "waitpid") or not hasattr(os, "WNOHANG"):
        return
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except (ChildProcessError, OSError):
            return
        if pid == 0:
            return


_KEEP = []  # the original sys.stdin/sys.stdout: dropping them would close the protocol's buffers


def open_streams(require_dup=False):
    """The protocol's :class:`Channel`, moved off fds 0/1 (then ``/dev/null``) where ``os.dup`` exists."""
    _KEEP.extend((sys.stdin, sys.stdout))
    if hasattr(os, "dup") and hasattr(os, "dup2") and os.environ.get("RLM_GUEST_NO_DUP") != "1":
        try:
            read_fd, write_fd = os.dup(0), os.dup(1)
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.close(null)
            return Channel(os.fdopen(read_fd, "rb"), os.fdopen(write_fd, "wb"), moved=True)
        except OSError:
            if require_dup:
                raise
    return Channel(sys.stdin.buffer, sys.stdout.buffer, moved=False)


def read_init(channel):
    """The ``init`` message (its nonce adopted by the channel); exits when there is none."""
    init = channel.read()
    if not init or init.get("op") != "init" or not isinstance(init.get("nonce"), str):
        _log("expected an init message with a nonce")
        _exit(2)
    channel.nonce = init["nonce"]
    return init


def _install_interrupts(repl):
    if signal is None or not hasattr(signal, "SIGINT"):
        return False

    def on_sigint(signum, frame):
        if repl.in_user:
            raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGINT, on_sigint)
    except (ValueError, OSError, AttributeError):
        return False
    return True


def _install_fork_guard(channel):
    if not hasattr(os, "register_at_fork"):
        return False

    def in_child():
        channel.close()  # a forked copy of the user's code cannot talk to the host

    os.register_at_fork(after_in_child=in_child)
    return True


def serve(channel):
    """Handshake, then answer requests in a plain-Python REPL until stdin closes."""
    init = read_init(channel)
    apply_limits(init)
    workdir = init.get("workdir")
    if workdir and hasattr(os, "chdir"):
        try:
            os.chdir(workdir)
        except OSError as exc:  # not there, or not searchable by this user: stay where we are
            _log("cannot enter the workdir " + repr(workdir) + ": " + str(exc))
    server = Server(channel)
    repl = Repl(server.host_call(), init.get("has_callbacks", True), int(init.get("output_limit") or 100000))
    server.repl = repl
    repl.install_streams()
    signals = _install_interrupts(repl)
    fork = _install_fork_guard(channel)
    server.ready(features={"dup": channel.moved, "signals": signals, "resource": resource is not None,
                           "fork": fork})
    server.loop()


def main():
    """Entry point: run as a script inside the sandbox."""
    channel = open_streams()
    try:
        serve(channel)
    except BrokenPipeError:
        pass
    except BaseException:
        _log(traceback.format_exc())
        _exit(1)
    _exit(0)


if __name__ == "__main__":
    main()
