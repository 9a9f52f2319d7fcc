"""The stdio front of ``rlm mcp-serve``: the MCP handshake answered before the SDK is imported.

Importing the ``mcp`` SDK takes 1-3 s (pydantic models of two protocol eras,
client, auth, HTTP).  A client waits for its ``initialize`` answer before it
does anything else, so :class:`StdioFront` takes the wire first, answers
``initialize`` (and ``ping``) itself -- with exactly what the SDK would answer
-- while the main thread imports the SDK and builds the server, then hands the
stream over to the SDK (:meth:`StdioFront.attach`):

- Only a well-formed ``initialize`` that is the client's first request is
  answered here (a conservative subset of what the SDK accepts, see
  :func:`initialize_result`); the protocol version is negotiated like the SDK
  does, from the SDK's own ``HANDSHAKE_PROTOCOL_VERSIONS`` (read from
  ``mcp_types/version.py`` without importing ``mcp_types``).  Anything else
  first -- another request, a notification, an ``initialize`` this module is
  not sure about -- turns the front off: every frame goes to the SDK, which
  answers as it always does.
- The SDK still sees the whole conversation: the ``initialize`` answered here
  is replayed to it first (its answer, identical, is dropped from the wire), then
  ``notifications/initialized`` and every frame that arrived meanwhile, in
  arrival order.  A ``ping`` is answered here only when nothing is waiting for
  the SDK, so answers never overtake each other.
- Every frame is bounded (:data:`MAX_FRAME_BYTES`) and checked before it goes
  further, on the whole connection: a line that is not JSON gets a JSON-RPC
  ``Parse error`` (-32700), JSON that is not a JSON-RPC 2.0 message and an
  oversized line get ``Invalid Request`` (-32600), ``id`` null unless it could
  be read; the server goes on reading.  (The SDK would drop such a frame
  silently.)  Such an error is written when the line is read, so it may come
  before the answers to earlier requests still with the SDK.
- Only this module and the SDK's stdout writer write the wire, one whole line
  at a time under one lock: stdout carries JSON-RPC only.
- When the server cannot start after all (:meth:`StdioFront.fail`: a wrong
  configuration, a missing plugin or SDK), the requests waiting and the next one
  get a JSON-RPC error naming the cause; the process then exits as before, the
  cause on stderr.

``RLM_MCP_TRACE_HANDSHAKE=1`` (debugging, tests) writes one line
``rlm-mcp-handshake {...}`` to stderr when ``initialize`` is answered here
(with the SDK-side modules already imported by then), and makes the main thread
wait for that answer (10 s at most) before importing the SDK.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    import asyncio

SERVER_NAME = "rlm"
SERVER_TITLE = "rlm (Recursive Language Models)"
INSTRUCTIONS = (
    "rlm gives you a sandboxed, persistent Python REPL (execute_python; variables persist per session_id) "
    "rlm completions (rlm_complete answers at once; with a session_id it continues an RLM session whose REPL "
    "and conversation persist) and autonomous rlm agent runs (rlm_agent_run starts one in the background; poll "
    "rlm_agent_status)."
)

#: Used only when the installed SDK's ``mcp_types/version.py`` cannot be read.
FALLBACK_HANDSHAKE_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")

#: Largest stdio frame (one JSON-RPC line), bytes; ``RLM_MCP_MAX_FRAME_BYTES`` overrides it.
MAX_FRAME_BYTES = 64 * 1024 * 1024

TRACE_ENV = "RLM_MCP_TRACE_HANDSHAKE"
#: Modules the handshake must not need (reported by the trace).
HEAVY_MODULES = ("pydantic", "pydantic_core", "mcp", "mcp_types", "anyio", "starlette", "uvicorn", "httpx",
                 "httpx2", "jsonschema")

#: What :meth:`StdioFront._read_frame` returns for a line over the limit (never stored).
OVERSIZED = b"<oversized>"

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INTERNAL_ERROR = -32603

#: Seconds :meth:`StdioFront.fail` waits for the client's next request (to answer it with the cause).
FAIL_WAIT_S = 2.0


def server_description(kernel_version: str) -> str:
    return f"rlm {kernel_version}: sandboxed Python REPL and autonomous agent runs"


def handshake_versions() -> tuple[tuple[str, ...], str]:
    """``(HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION)`` of the installed SDK.

    Executes ``mcp_types/version.py`` on its own (it imports only ``typing``):
    importing ``mcp_types.version`` would import the whole ``mcp_types`` package.
    """
    try:
        import importlib.util

        spec = importlib.util.find_spec("mcp_types")  # a top-level package: located, not imported
        for base in (spec.submodule_search_locations or []) if spec else []:
            path = os.path.join(base, "version.py")
            if not os.path.isfile(path):
                continue
            version_spec = importlib.util.spec_from_file_location("_rlm_mcp_sdk_protocol_versions", path)
            if version_spec is None or version_spec.loader is None:
                continue
            module = importlib.util.module_from_spec(version_spec)
            version_spec.loader.exec_module(module)
            versions = tuple(module.HANDSHAKE_PROTOCOL_VERSIONS)
            latest = getattr(module, "LATEST_HANDSHAKE_VERSION", versions[-1] if versions else None)
            if versions and all(isinstance(v, str) for v in versions) and latest in versions:
                return versions, latest
    except Exception:  # noqa: BLE001 - any surprise: the versions this release was tested with
        pass
    return FALLBACK_HANDSHAKE_VERSIONS, FALLBACK_HANDSHAKE_VERSIONS[-1]


# --- what the SDK would answer ------------------------------------------------------------------

def _is_id(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)


def _dict_of(value: Any, allowed: dict[str, Callable[[Any], bool]]) -> bool:
    return isinstance(value, dict) and all(k in allowed and allowed[k](v) for k, v in value.items())


def _is_dict(value: Any) -> bool:
    return isinstance(value, dict)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


#: The client capabilities answered here: a subset of both SDK schemas; anything else goes to the SDK.
_CAPABILITIES: dict[str, Callable[[Any], bool]] = {
    "roots": lambda v: _dict_of(v, {"listChanged": lambda x: isinstance(x, bool)}),
    "sampling": lambda v: _dict_of(v, {"context": _is_dict, "tools": _is_dict}),
    "elicitation": lambda v: _dict_of(v, {"form": _is_dict, "url": _is_dict}),
    "experimental": lambda v: isinstance(v, dict) and all(isinstance(k, str) and _is_dict(x) for k, x in v.items()),
}
_CLIENT_INFO: dict[str, Callable[[Any], bool]] = {
    "name": _is_str, "version": _is_str, "title": _is_str, "description": _is_str, "websiteUrl": _is_str}


def initialize_result(message: Any, identity: dict[str, Any], versions: tuple[tuple[str, ...], str]
                      ) -> dict[str, Any] | None:
    """The SDK's ``InitializeResult`` for ``message``, or None when the SDK must answer it itself.

    ``identity``: ``{"serverInfo": ..., "capabilities": ..., "instructions": ...}`` of the server.
    Accepts only requests whose every field is of a shape the SDK accepts too
    (``rlm-mcp/tests/test_handshake.py`` compares both); None otherwise.
    """
    if not _dict_of(message, {"jsonrpc": lambda v: v == "2.0", "id": _is_id,
                              "method": lambda v: v == "initialize", "params": _is_dict}):
        return None
    if "id" not in message or "params" not in message:
        return None
    params = message["params"]
    if not _dict_of(params, {"protocolVersion": _is_str, "capabilities": lambda v: _dict_of(v, _CAPABILITIES),
                             "clientInfo": lambda v: _dict_of(v, _CLIENT_INFO),
                             "_meta": lambda v: v == {}}):
        return None
    if not {"protocolVersion", "capabilities", "clientInfo"} <= params.keys():
        return None
    if not {"name", "version"} <= params["clientInfo"].keys():
        return None
    supported, latest = versions
    requested = params["protocolVersion"]
    return {"protocolVersion": requested if requested in supported else latest,
            "capabilities": identity["capabilities"], "serverInfo": identity["serverInfo"],
            "instructions": identity["instructions"]}


def server_identity(version: str, kernel_version: str) -> dict[str, Any]:
    """serverInfo, capabilities and instructions as the SDK's lowlevel server of :mod:`rlm_mcp.server` reports them."""
    return {"serverInfo": {"name": SERVER_NAME, "title": SERVER_TITLE, "version": version,
                           "description": server_description(kernel_version)},
            "capabilities": {"tools": {"listChanged": False}},
            "instructions": INSTRUCTIONS}


def _dumps(obj: Any) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8", "surrogatepass")


def _error(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id if _is_id(request_id) else None, "error": error}


def frame_problem(line: str) -> tuple[Any, dict[str, Any] | None]:
    """``(message, None)`` for a JSON-RPC 2.0 message, else ``(None, the error to answer)``."""
    try:
        data = json.loads(line, strict=False)
    except (ValueError, RecursionError) as exc:
        return None, _error(None, PARSE_ERROR, f"Parse error: the line is not JSON ({exc})")
    if not isinstance(data, dict) or data.get("jsonrpc") != "2.0":
        return None, _error(data.get("id") if isinstance(data, dict) else None, INVALID_REQUEST,
                            'Invalid Request: not a JSON-RPC 2.0 message (an object with "jsonrpc": "2.0")')
    if not isinstance(data.get("method"), str) and not ("id" in data and ("result" in data or "error" in data)):
        return None, _error(data.get("id"), INVALID_REQUEST,
                            'Invalid Request: neither a request/notification ("method") nor a response')
    return data, None


# --- the front ----------------------------------------------------------------------------------

class StdioFront:
    """Reads the stdio wire from a daemon thread; answers the handshake until :meth:`attach`."""

    def __init__(self, wire_in: BinaryIO, wire_out: BinaryIO, *, identity: dict[str, Any],
                 versions: tuple[tuple[str, ...], str] | None = None, max_frame: int | None = None) -> None:
        self._in = wire_in
        self._out = wire_out
        self._identity = identity
        self._versions = versions or handshake_versions()
        env_limit = os.environ.get("RLM_MCP_MAX_FRAME_BYTES", "")
        self.max_frame = max_frame or (int(env_limit) if env_limit.isdigit() and int(env_limit) > 0
                                       else MAX_FRAME_BYTES)
        self.trace = os.environ.get(TRACE_ENV, "") not in ("", "0")
        self._write_lock = threading.Lock()
        self._lock = threading.Lock()
        self._state = "fresh"  # -> "answered" (initialize answered here) or "deferred" (the SDK answers all)
        self._replay: list[str] = []  # for the SDK first: the initialize answered here, notifications/initialized
        self._pending: list[str | None] = []  # then these, in arrival order (None: end of input)
        self._sink: Callable[[str | None], None] | None = None
        self.answered_id: Any = None  # id of the initialize answered here
        self.answered = threading.Event()  # set once the front is done with the handshake (either way)
        self._thread = threading.Thread(target=self._pump, name="rlm-mcp-stdin", daemon=True)
        self._thread.start()

    # -- writing --

    def write_bytes(self, data: bytes) -> None:
        """Write whole lines to the wire (thread-safe; the SDK's writer uses it too)."""
        with self._write_lock:
            self._out.write(data)
            self._out.flush()

    def _answer(self, obj: dict[str, Any]) -> None:
        try:
            self.write_bytes(_dumps(obj))
        except (OSError, ValueError):  # the client went away: reading will see the end
            pass

    # -- reading --

    def _read_frame(self) -> bytes | None:
        """The next line (without its newline), :data:`OVERSIZED` for one over the limit, None at the end."""
        line = self._in.readline(self.max_frame + 1)
        if not line:
            return None
        if line.endswith(b"\n"):
            return line[:-1]
        if len(line) <= self.max_frame:
            return line  # the last line, without a newline
        while line and not line.endswith(b"\n"):  # skip the rest of the oversized line, unstored
            line = self._in.readline(1024 * 1024)
        return OVERSIZED

    def _pump(self) -> None:
        try:
            while True:
                frame = self._read_frame()
                if frame is None:
                    break
                if frame is OVERSIZED:
                    self._answer(_error(None, INVALID_REQUEST,
                                        f"Invalid Request: frame over this server's limit of {self.max_frame} bytes "
                                        "(one JSON-RPC message per line); send less in one message",
                                        {"limit_bytes": self.max_frame}))
                    continue
                line = frame.decode("utf-8", errors="replace")
                if not line.strip():
                    continue
                message, problem = frame_problem(line)
                if problem is not None:
                    self._answer(problem)
                    continue
                self._route(line + "\n", message)
        except (OSError, ValueError, RuntimeError):
            pass
        finally:
            self._route(None, None)

    def _route(self, line: str | None, message: Any) -> None:
        with self._lock:
            if self._sink is not None:
                self._sink(line)
                return
            if line is None:
                self._pending.append(None)
                self._state = "deferred" if self._state == "fresh" else self._state
                self.answered.set()
                return
            if self._state == "fresh":
                if "id" in message and "method" in message:  # the first request decides
                    result = initialize_result(message, self._identity, self._versions) if not self._pending \
                        else None
                    if result is not None:
                        self._answer({"jsonrpc": "2.0", "id": message["id"], "result": result})
                        self._state = "answered"
                        self.answered_id = message["id"]
                        self._replay.append(line)
                        if self.trace:
                            self._write_trace(result)
                        self.answered.set()
                        return
                    self._state = "deferred"
                    self.answered.set()
                self._pending.append(line)
                return
            if self._state == "answered" and not self._pending:
                method = message.get("method")
                params = message.get("params", {})
                if method == "notifications/initialized" and "id" not in message and params in ({}, None) \
                        and len(self._replay) == 1:
                    self._replay.append(line)
                    return
                if method == "ping" and _is_id(message.get("id")) and params in ({}, None) and \
                        message.keys() <= {"jsonrpc", "id", "method", "params"}:
                    self._answer({"jsonrpc": "2.0", "id": message["id"], "result": {}})
                    return
            self._pending.append(line)

    def _write_trace(self, result: dict[str, Any]) -> None:
        loaded = sorted(m for m in HEAVY_MODULES if m in sys.modules)
        record = {"answered": "initialize", "protocolVersion": result["protocolVersion"], "heavy_modules": loaded}
        with contextlib.suppress(Exception):
            sys.stderr.write("rlm-mcp-handshake " + json.dumps(record) + "\n")
            sys.stderr.flush()

    # -- the hand-over --

    def attach(self) -> tuple[FrontLines, FrontWriter]:
        """Hand the wire to the SDK: (its stdin: every frame it must see, in order; its stdout)."""
        import asyncio

        loop = asyncio.get_running_loop()
        lines = FrontLines()

        def sink(line: str | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody reads any more
                loop.call_soon_threadsafe(lines.queue.put_nowait, line)

        with self._lock:
            for line in (*self._replay, *self._pending):
                lines.queue.put_nowait(line)
                if line is None:
                    break
            self._sink = sink
            swallow = self.answered_id if self._state == "answered" else None
            self._replay, self._pending = [], []
            self.answered.set()
        return lines, FrontWriter(self, swallow=swallow, swallowing=self._state == "answered")


    # -- a start that failed --

    def fail(self, reason: str, *, wait: float = FAIL_WAIT_S) -> None:
        """The server cannot start (the configuration is wrong, a plugin is missing...) after the wire was
        taken: answer every request still waiting, and the first one arriving within ``wait`` seconds,
        with a JSON-RPC error naming ``reason`` (the client shows it; stderr has it too), then return."""
        replied = threading.Event()
        text = f"rlm mcp-serve could not start: {reason}"

        def sink(line: str | None) -> None:
            if line is None:
                replied.set()
                return
            try:
                message = json.loads(line)
            except ValueError:
                return
            if isinstance(message, dict) and isinstance(message.get("method"), str) and _is_id(message.get("id")):
                self._answer(_error(message["id"], INTERNAL_ERROR, text))
                replied.set()

        with self._lock:
            for line in self._pending:
                sink(line)
            self._replay, self._pending = [], []
            self._sink = sink
            self.answered.set()
        replied.wait(wait)


class FrontLines:
    """The SDK's stdin after :meth:`StdioFront.attach` (an async iterator of lines)."""

    def __init__(self) -> None:
        import asyncio

        self.queue: asyncio.Queue[str | None] = asyncio.Queue()

    def __aiter__(self) -> FrontLines:
        return self

    async def __anext__(self) -> str:
        line = await self.queue.get()
        if line is None:
            raise StopAsyncIteration
        return line


class FrontWriter:
    """The SDK's stdout: whole lines to the wire, in a worker thread (a slow client never blocks the loop);
    drops the SDK's answer to the replayed ``initialize`` (the client has it already)."""

    def __init__(self, front: StdioFront, *, swallow: Any, swallowing: bool) -> None:
        self._front = front
        self._swallow = swallow
        self._swallowing = swallowing
        self._buffer: list[str] = []

    async def write(self, text: str) -> None:
        self._buffer.append(text)
        if not text.endswith("\n"):
            return
        data, self._buffer = "".join(self._buffer), []
        if self._swallowing and self._is_swallowed(data):
            return
        import anyio

        await anyio.to_thread.run_sync(self._front.write_bytes, data.encode("utf-8", "surrogatepass"))

    def _is_swallowed(self, data: str) -> bool:
        try:
            message = json.loads(data)
        except ValueError:
            return False
        if not isinstance(message, dict) or message.get("id") != self._swallow or "method" in message:
            return False
        self._swallowing = False
        if "error" in message:  # the SDK refused what the front accepted: should never happen
            sys.stderr.write(f"rlm-mcp: the SDK refused the initialize answered early: {message['error']}\n")
        return True

    async def flush(self) -> None:
        return None
