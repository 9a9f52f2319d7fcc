"""The guest REPL server: one persistent Python session answering JSON lines.

Runs *inside* a sandbox (a Docker container, a WebAssembly instance) as a
script -- ``python3 -u repl_server.py`` or ``python3 -u -c "<this source>"``.
It is stdlib-only and single-threaded, and works where there are no threads,
no subprocesses, no sockets, no ``os.dup``, no ``signal`` and no ``resource``
(WASI CPython): every optional facility is probed and skipped when absent.

Streams
-------
Requests arrive on stdin, one JSON object per line; replies leave on stdout,
one JSON object per line (ASCII-only ``json.dumps``, so a line never holds a
raw newline).  User code never writes into this stream: ``sys.stdout`` and
``sys.stderr`` (and ``sys.__stdout__``/``sys.__stderr__``) become a capped
capture buffer, ``sys.stdin`` an empty one, and where ``os.dup`` exists the
protocol moves to private duplicates of fds 0/1 while fds 0/1 point to
``/dev/null`` (so even C code writing to fd 1 cannot reach the host).  Where it
does not, stray bytes on fd 1 are possible; the host ignores every line
without this session's nonce.  fd 2 is left alone (the sandbox's stderr: the
server reports its own crashes there).

Handshake
---------
host -> guest ``{"op": "init", "nonce": str, "output_limit": int,
"has_callbacks": bool, "memory_limit_mb": int|null, "workdir": str|null}``
(only ``nonce`` is required).  ``memory_limit_mb`` sets ``RLIMIT_AS`` (soft and hard)
where :mod:`resource` exists (allocations past it raise ``MemoryError`` in the
user's code); ``workdir`` is ``chdir``-ed into when possible (else the
server stays in its working directory).

guest -> host ``{"nonce", "id": null, "op": "ready", "version": 1, "pid",
"python": "3.11.2", "features": {"dup", "signals", "resource", "fork"}}``

Requests (host -> guest) and replies (guest -> host)
----------------------------------------------------
Every request is ``{"id": <int|str>, "op": ..., ...}``; exactly one reply
``{"nonce", "id": <same>, "op": "done", ...}`` answers it, after any number of
callback lines (below).  Requests are served one at a time, in order.

``exec`` ``{"code": str, "output_limit"?: int, "cpu_limit_s"?: float}`` runs a
cell with notebook semantics in the persistent namespace (a module named
``__main__``): a trailing expression's value is shown as its ``repr``.
Reply: ``{"output": str, "truncated": bool, "value": str|null,
"error": str|null, "final": {"kind": "final"|"final_var", "value": str,
"variable": str|null}|null, "cpu_time_ms": float|null,
"memory_peak_bytes": int|null}``.  ``output`` is everything printed (stdout
and stderr interleaved), cut at ``output_limit`` characters (``truncated``
says so); ``error`` is the traceback restricted to the user's frames
(``<cell N>``), or ``KeyboardInterrupt`` when the host interrupted it.
``FINAL(answer)`` and ``FINAL_VAR("name")`` end the cell and fill ``final``;
``FINAL_VAR`` of a missing variable is a ``NameError`` naming it.

``context`` -> ``{"context": {name: short repr}}`` (user variables only: no
modules, no ``_names``; the host functions live in builtins).
``get`` ``{"name"}`` -> ``{"found": false}``, or ``{"found": true, "json": text}``
(the value as JSON text) or ``{"found": true, "repr": text}`` (not JSON-able).
``set`` ``{"name", "value": json}`` -> ``{}``.  ``clear`` -> ``{}`` (every user
name gone).  ``ping`` -> ``{"pid"}``.  A request the server cannot serve
(unknown op, bad fields, a bug) gets ``{"fault": text}``.

Callbacks (guest -> host, then host -> guest)
---------------------------------------------
User code calling ``llm_query(prompt)`` / ``llm_query_batched(prompts)`` sends
``{"nonce", "id": <current request>, "op": "llm_query", "seq": n, "prompt"}``
or ``{..., "op": "llm_query_batched", "seq": n, "prompts": [...]}`` and blocks
reading stdin until ``{"op": "reply", "seq": n, "ok": true, "value": ...}`` or
``{"op": "reply", "seq": n, "ok": false, "error": text}`` (then a
``RuntimeError`` in the user's code).  Lines with another ``seq`` are skipped.

Interrupts
----------
``SIGINT`` raises ``KeyboardInterrupt`` only while user code runs (the
execution ends with that error, the session survives); elsewhere it is
ignored.  Hosts use it to stop an execution past its timeout and kill the
sandbox only if no ``done`` follows.  A process forked by user code loses the
protocol streams and exits when its copy of the cell ends.  When the server
is PID 1 (a container) it reaps exited children after each request.

The nonce is not a defence against user code (which runs in this very
interpreter and could find it); it keeps accidental bytes on fd 1 from being
read as replies.  Hosts treat everything the guest says as untrusted data.
"""

import ast
import builtins
import io
import json
import linecache
import os
import reprlib
import sys
import time
import traceback
import types

PROTOCOL_VERSION = 1
CELL_PREFIX = "<cell "
CONTEXT_REPR_CHARS = 200
MAX_ERROR_CHARS = 20000
MAX_VALUE_CHARS = 1000000
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


class FinalExit(BaseException):
    """Raised by FINAL/FINAL_VAR to end the cell (not an error)."""


class Channel:
    """JSON lines on two binary streams; every message out carries the nonce."""

    def __init__(self, rfile, wfile):
        self.rfile = rfile
        self.wfile = wfile
        self.nonce = ""
        self.closed = False
        self.moved = False

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
            except ValueError:
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
            except Exception:  # noqa: BLE001, S110 - already closed
                pass


def _log(text):
    try:
        os.write(2, ("rlm guest: " + text + "\n").encode("utf-8", "replace"))
    except Exception:  # noqa: BLE001, S110 - nowhere else to report
        pass


def _exit(code):
    exit_ = getattr(os, "_exit", None)
    if exit_ is not None:
        exit_(code)
    raise SystemExit(code)


class Output:
    """What one execution printed, cut at ``limit`` characters."""

    def __init__(self, limit):
        self.limit = limit
        self.reset(limit)

    def reset(self, limit):
        self.limit = limit
        self.parts = []
        self.size = 0
        self.truncated = False

    def add(self, text):
        room = self.limit - self.size
        if len(text) > room:
            self.truncated = True
            text = text[:max(room, 0)]
        if text:
            self.parts.append(text)
            self.size += len(text)

    def getvalue(self):
        return "".join(self.parts)


class _BinaryCapture:
    """``sys.stdout.buffer``: bytes written are decoded (UTF-8, replacing) into the output."""

    def __init__(self, output):
        self._output = output

    def write(self, data):
        data = bytes(data)
        self._output.add(data.decode("utf-8", "replace"))
        return len(data)

    def flush(self):
        return None


class Capture(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` of the guest: writes go to the current execution's output."""

    def __init__(self, output):
        super().__init__()
        self._output = output
        self.buffer = _BinaryCapture(output)

    @property
    def encoding(self):
        return "utf-8"

    @property
    def errors(self):
        return "replace"

    def writable(self):
        return True

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError("write() argument must be str, not " + type(text).__name__)
        self._output.add(text)
        return len(text)

    def isatty(self):
        return False

    def fileno(self):
        raise io.UnsupportedOperation("the REPL's output is captured; it has no file descriptor")


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
    """The exception as a traceback of the user's own frames (``<cell N>``) only."""
    try:
        if isinstance(exc, SyntaxError) and str(exc.filename or "").startswith(CELL_PREFIX):
            text = "".join(traceback.format_exception_only(type(exc), exc))
        else:
            frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(CELL_PREFIX)]
            parts = []
            if frames:
                parts.append("Traceback (most recent call last):\n")
                parts.extend(traceback.format_list(frames))
            parts.extend(traceback.format_exception_only(type(exc), exc))
            text = "".join(parts)
        text = text.rstrip("\n")
    except BaseException:  # noqa: BLE001 - e.g. MemoryError while formatting
        try:
            text = type(exc).__name__ + ": " + str(exc)
        except BaseException:  # noqa: BLE001
            text = type(exc).__name__
    return _cap(text, MAX_ERROR_CHARS)


class Session:
    """The user's namespace, the host functions and the request handlers."""

    def __init__(self, channel, init):
        self.channel = channel
        self.has_callbacks = bool(init.get("has_callbacks", True))
        self.output = Output(int(init.get("output_limit") or 100000))
        self.capture = Capture(self.output)
        self.request_id = None
        self.seq = 0
        self.cells = 0
        self.in_user = False
        self.value = None
        self.final = None
        self.sources = []
        self.short = _short_repr()
        self.pid = _getpid()
        self.module = types.ModuleType("__main__")
        self.base = {"__name__": "__main__", "__builtins__": builtins, "__doc__": None}
        self.clear()
        builtins.llm_query = self.llm_query
        builtins.llm_query_batched = self.llm_query_batched
        builtins.FINAL = self.final_answer
        builtins.FINAL_VAR = self.final_var
        sys.modules["__main__"] = self.module

    @property
    def ns(self):
        return self.module.__dict__

    # --- host functions (called by user code) ---------------------------------------------

    def llm_query(self, prompt):
        """Ask the host's LLM one question; returns the answer text."""
        if not isinstance(prompt, str):
            raise TypeError("llm_query(prompt): prompt must be a str, not " + type(prompt).__name__)
        return str(self._ask("llm_query", {"prompt": prompt}))

    def llm_query_batched(self, prompts):
        """Ask the host's LLM several questions concurrently; returns the answers in order."""
        if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)):
            raise TypeError("llm_query_batched(prompts): prompts must be a list of str")
        items = list(prompts)
        for p in items:
            if not isinstance(p, str):
                raise TypeError("llm_query_batched(prompts): every prompt must be a str, not " + type(p).__name__)
        answers = self._ask("llm_query_batched", {"prompts": items})
        if not isinstance(answers, list) or len(answers) != len(items):
            raise RuntimeError("llm_query_batched failed: the host sent a malformed answer")
        return [str(a) for a in answers]

    def _ask(self, op, payload):
        if not self.has_callbacks:
            raise RuntimeError(op + " is not available: this REPL session has no host callbacks "
                               "(the environment was created with callbacks=None)")
        self.seq += 1
        seq = self.seq
        message = {"id": self.request_id, "op": op, "seq": seq}
        message.update(payload)
        self.channel.send(message)
        while True:
            reply = self.channel.read()
            if reply is None:
                _exit(0)  # the host is gone
            if reply.get("op") == "reply" and reply.get("seq") == seq:
                break
        if not reply.get("ok"):
            raise RuntimeError(op + " failed: " + str(reply.get("error") or "unknown error"))
        return reply.get("value")

    def final_answer(self, answer):
        """End the cell and answer with ``answer``."""
        self.final = {"kind": "final", "value": render_final(answer), "variable": None}
        raise FinalExit

    def final_var(self, name):
        """End the cell and answer with the value of the variable called ``name``."""
        if not isinstance(name, str):
            raise TypeError('FINAL_VAR(name) takes the name of a variable as a string, e.g. FINAL_VAR("answer"); '
                            "to answer with a value use FINAL(value)")
        name = str(name).strip()
        if name.startswith("_") or name not in self.ns:
            raise NameError("FINAL_VAR(" + repr(name) + "): no variable named " + repr(name) + " is defined "
                            "in the REPL; assign it first (" + name + " = ...) or answer with FINAL(value)")
        self.final = {"kind": "final_var", "value": render_final(self.ns[name]), "variable": name}
        raise FinalExit

    # --- requests ----------------------------------------------------------------------------

    def dispatch(self, request):
        op = request.get("op")
        if op == "exec":
            code = request.get("code")
            if not isinstance(code, str):
                return {"fault": "exec needs a 'code' string"}
            limit = request.get("output_limit")
            return self.run(code, int(limit) if limit else None, request.get("cpu_limit_s"))
        if op == "context":
            return {"context": self.context()}
        if op == "get":
            return self.get(request.get("name"))
        if op == "set":
            name = request.get("name")
            if not isinstance(name, str) or not name.isidentifier():
                return {"fault": "set needs a valid variable 'name'"}
            self.ns[name] = request.get("value")
            return {}
        if op == "clear":
            self.clear()
            return {}
        if op == "ping":
            return {"pid": self.pid}
        return {"fault": "unknown op " + repr(op)}

    def clear(self):
        self.ns.clear()
        self.ns.update(self.base)

    def _remember(self, filename, source):
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        self.sources.append(filename)
        if len(self.sources) > MAX_CACHED_CELLS:
            linecache.cache.pop(self.sources.pop(0), None)

    def run(self, source, output_limit=None, cpu_limit_s=None):
        """Run one cell; the reply payload."""
        self.output.reset(output_limit or self.output.limit)
        self.value = None
        self.final = None
        self.cells += 1
        filename = CELL_PREFIX + str(self.cells) + ">"
        error = None
        cpu_start = time.process_time()
        restore_cpu = _set_cpu_limit(cpu_limit_s)
        try:
            self._remember(filename, source)
            tree = ast.parse(source, filename, "exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = compile(ast.Expression(tree.body.pop().value), filename, "eval")
            body = compile(tree, filename, "exec")
            self.in_user = True
            exec(body, self.ns)  # noqa: S102 - running the user's code is the point
            if last is not None:
                shown = eval(last, self.ns)
                if shown is not None:
                    self.value = _cap(repr(shown), max(self.output.limit, 1000))
            self.in_user = False
        except FinalExit:
            self.in_user = False
        except BaseException as exc:  # noqa: BLE001 - errors in user code become results
            self.in_user = False
            if _getpid() != self.pid:
                _exit(0)  # a process forked by the user's code: its copy of the cell is over
            error = format_user_error(exc)
        finally:
            self.in_user = False
            restore_cpu()
        if error is not None and self.final is not None and self.final["kind"] == "final_var":
            self.final = None
        return {
            "output": self.output.getvalue(),
            "truncated": self.output.truncated,
            "value": self.value,
            "error": error,
            "final": self.final,
            # without ``resource`` (WASI) process_time() is an emulation that reports nonsense
            "cpu_time_ms": round((time.process_time() - cpu_start) * 1000, 3) if resource is not None else None,
            "memory_peak_bytes": _peak_memory(),
        }

    def _user_names(self):
        return [n for n, v in self.ns.items() if not n.startswith("_") and not isinstance(v, types.ModuleType)]

    def context(self):
        out = {}
        for name in self._user_names():
            try:
                text = self.short.repr(self.ns[name])
            except BaseException as exc:  # noqa: BLE001 - a broken __repr__
                text = "<repr failed: " + type(exc).__name__ + ">"
            out[name] = _cap(text, CONTEXT_REPR_CHARS)
        return out

    def get(self, name):
        if not isinstance(name, str) or name.startswith("_") or name not in self.ns \
                or isinstance(self.ns[name], types.ModuleType):
            return {"found": False}
        value = self.ns[name]
        try:
            return {"found": True, "json": json.dumps(value)}
        except BaseException:  # noqa: BLE001, S110 - not JSON: its repr below
            pass
        try:
            return {"found": True, "repr": _cap(repr(value), MAX_VALUE_CHARS)}
        except BaseException as exc:  # noqa: BLE001 - a broken __repr__
            return {"found": True, "repr": "<repr failed: " + type(exc).__name__ + ">"}


# --- process-level helpers --------------------------------------------------------------------

def _getpid():
    try:
        return os.getpid()
    except Exception:  # noqa: BLE001 - WASI
        return None


def _peak_memory():
    if resource is None:
        return None
    try:
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    except Exception:  # noqa: BLE001
        return None


def _set_rlimit(which, value):
    """Soft and hard limit: user code cannot raise it again (no CAP_SYS_RESOURCE in a sandbox)."""
    _soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY and value > hard:
        value = hard
    resource.setrlimit(which, (value, value))


def _apply_limits(init):
    if resource is None:
        return
    try:
        _set_rlimit(resource.RLIMIT_CORE, 0)
        memory = init.get("memory_limit_mb")
        if memory:
            _set_rlimit(resource.RLIMIT_AS, int(memory) * MIB)
    except (ValueError, OSError, AttributeError) as exc:
        _log("could not set resource limits: " + str(exc))


class CpuLimitExceeded(Exception):
    """The execution used more CPU time than its limit."""


def _on_sigxcpu(signum, frame):
    raise CpuLimitExceeded("the execution exceeded its CPU time limit")


def _set_cpu_limit(seconds):
    """Let this execution use ``seconds`` more CPU time (SIGXCPU -> error); returns the undo."""
    if not seconds or resource is None or signal is None or not hasattr(signal, "SIGXCPU"):
        return lambda: None
    try:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        old = resource.getrlimit(resource.RLIMIT_CPU)
        soft = int(usage.ru_utime + usage.ru_stime + float(seconds)) + 1
        if old[1] != resource.RLIM_INFINITY:
            soft = min(soft, old[1])
        previous = signal.signal(signal.SIGXCPU, _on_sigxcpu)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, old[1]))
    except (ValueError, OSError):
        return lambda: None

    def undo():
        try:
            resource.setrlimit(resource.RLIMIT_CPU, old)
            signal.signal(signal.SIGXCPU, previous)
        except (ValueError, OSError):
            pass
    return undo


def _reap_children():
    """As PID 1 (a container's init) collect exited processes so they do not pile up as zombies."""
    if _getpid() != 1 or not hasattr(os, "waitpid"):
        return
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except (ChildProcessError, OSError):
            return
        if pid == 0:
            return


_KEEP = []  # the original sys.stdin/sys.stdout: dropping them would close the protocol's buffers


def _open_streams():
    """The protocol's (reader, writer) and whether fds 0/1 were moved away."""
    _KEEP.extend((sys.stdin, sys.stdout))
    stdin_buffer = sys.stdin.buffer
    stdout_buffer = sys.stdout.buffer
    if hasattr(os, "dup") and hasattr(os, "dup2") and os.environ.get("RLM_GUEST_NO_DUP") != "1":
        try:
            read_fd, write_fd = os.dup(0), os.dup(1)
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.close(null)
            return os.fdopen(read_fd, "rb"), os.fdopen(write_fd, "wb"), True
        except OSError:
            pass
    return stdin_buffer, stdout_buffer, False


def _install_interrupts(session):
    if signal is None or not hasattr(signal, "SIGINT"):
        return False

    def on_sigint(signum, frame):
        if session.in_user:
            raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGINT, on_sigint)
    except (ValueError, OSError, AttributeError):
        return False
    return True


def _install_fork_guard(session):
    if not hasattr(os, "register_at_fork"):
        return False

    def in_child():
        session.channel.close()  # a forked copy of the user's code cannot talk to the host

    os.register_at_fork(after_in_child=in_child)
    return True


def serve(channel):
    """Handshake, then answer requests until stdin closes."""
    init = channel.read()
    if not init or init.get("op") != "init" or not isinstance(init.get("nonce"), str):
        _log("expected an init message with a nonce")
        _exit(2)
    channel.nonce = init["nonce"]
    _apply_limits(init)
    workdir = init.get("workdir")
    if workdir and hasattr(os, "chdir"):
        try:
            os.chdir(workdir)
        except OSError as exc:  # not there, or not searchable by this user: stay where we are
            _log("cannot enter the workdir " + repr(workdir) + ": " + str(exc))
    session = Session(channel, init)
    sys.stdout = sys.stderr = sys.__stdout__ = sys.__stderr__ = session.capture
    sys.stdin = sys.__stdin__ = io.StringIO("")
    signals = _install_interrupts(session)
    fork = _install_fork_guard(session)
    channel.send({"id": None, "op": "ready", "version": PROTOCOL_VERSION, "pid": session.pid,
                  "python": ".".join(str(v) for v in sys.version_info[:3]),
                  "features": {"dup": channel.moved, "signals": signals, "resource": resource is not None,
                               "fork": fork}})
    while True:
        request = None
        try:
            request = channel.read()
            if request is None:
                return
            session.request_id = request.get("id")
            try:
                reply = session.dispatch(request)
            except (KeyboardInterrupt, FinalExit):
                reply = {"error": "KeyboardInterrupt", "interrupted": True}
            except Exception:  # noqa: BLE001 - a bug here must not kill the session silently
                reply = {"fault": traceback.format_exc(limit=5)}
        except KeyboardInterrupt:  # a late interrupt, outside user code
            if request is None:
                continue
            reply = {"error": "KeyboardInterrupt", "interrupted": True}
        if _getpid() != session.pid:
            _exit(0)  # a process forked by user code: its copy of the cell is over
        _reap_children()
        reply["id"] = request.get("id")
        reply["op"] = "done"
        try:
            channel.send(reply)
        except MemoryError:
            channel.send({"id": request.get("id"), "op": "done",
                          "fault": "the guest ran out of memory while sending the result"})
        _reap_children()


def main():
    """Entry point: run as a script inside the sandbox."""
    rfile, wfile, moved = _open_streams()
    channel = Channel(rfile, wfile)
    channel.moved = moved
    try:
        serve(channel)
    except BrokenPipeError:
        pass
    except BaseException:  # noqa: BLE001 - report through stderr, then die
        _log(traceback.format_exc())
        _exit(1)
    _exit(0)


if __name__ == "__main__":
    main()
