"""The MCP side: an ``mcp`` lowlevel :class:`~mcp.server.lowlevel.Server` over :class:`RLMService`.

The lowlevel server of the official SDK (2.x) is used with hand-written JSON
Schemas, so what the model sees is exactly :mod:`rlm_mcp.tools`.  Results
are returned both as JSON text (for clients that only read text) and as
``structuredContent``.  Transports: stdio (behind :mod:`rlm_mcp.stdio_guard`)
and streamable HTTP (uvicorn, loopback by default).

Both transports stop the same way (:class:`Shutdown`): on SIGTERM or SIGINT
the agent runs are cancelled at once, the transport stops, every run is
awaited until its trajectory ends with ``run_end``, the REPL sessions are
closed, and ``rlm mcp-serve`` exits with 128 + the signal's number (143 for
SIGTERM, 130 for SIGINT); a second signal exits at once with that code.
When the client closes stdin (stdio) the same cleanup runs and the exit code
is 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, BinaryIO

from mcp import types
from mcp.server.lowlevel import Server
from rlm import __version__ as kernel_version
from rlm.errors import RLMError
from rlm.logging import get_logger

from rlm_mcp import __version__
from rlm_mcp.handshake import INSTRUCTIONS, SERVER_NAME, SERVER_TITLE, StdioFront, server_description
from rlm_mcp.service import RLMService
from rlm_mcp.tools import ALIASES, TOOLS, TOOLS_BY_NAME

log = get_logger(__name__)

def _tool(defn: Any) -> types.Tool:
    return types.Tool(name=defn.name, title=defn.title, description=defn.description,
                      input_schema=dict(defn.input_schema),
                      annotations=types.ToolAnnotations(title=defn.title, **defn.annotations))


def _result(data: Any, *, error: bool = False) -> types.CallToolResult:
    text = json.dumps(data, ensure_ascii=False, indent=1, default=str)
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                structured_content=data if isinstance(data, dict) else None, is_error=error)


def build_server(service: RLMService) -> Server[Any]:
    """The lowlevel server whose tools call ``service``.

    ``tools/list`` shows :data:`~rlm_mcp.tools.TOOLS` only; a call by an rlm-runtime 2.x name
    (:data:`~rlm_mcp.tools.ALIASES`, e.g. ``destroy_session``) is answered by the tool it names.
    """
    tools = [_tool(t) for t in TOOLS]

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            return _result(await service.call(params.name, params.arguments or {}))
        except RLMError as exc:
            log.info("tool_refused", tool=params.name, error=exc.message)
            data = {"error": exc.message}
            if exc.fix:
                data["fix"] = exc.fix
            return _result(data, error=True)
        except Exception as exc:
            log.exception("tool_failed", tool=params.name)
            return _result({"error": f"{type(exc).__name__}: {exc}",
                            "fix": "see the server's log on stderr; report it if it persists"}, error=True)

    return Server(SERVER_NAME, version=__version__, title=SERVER_TITLE, description=server_description(kernel_version),
                  instructions=INSTRUCTIONS, on_list_tools=list_tools, on_call_tool=call_tool,
                  get_tool_input_schema=_input_schema)


def _input_schema(name: str) -> dict[str, Any] | None:
    """The input schema of tool ``name`` (an rlm-runtime 2.x alias: its target's); None for no such tool."""
    alias = ALIASES.get(name)
    tool = TOOLS_BY_NAME.get(alias.target if alias is not None else name)
    return dict(tool.input_schema) if tool is not None else None



def stdio_identity() -> dict[str, Any]:
    """What :class:`~rlm_mcp.handshake.StdioFront` answers for this server (see :func:`build_server`)."""
    from rlm_mcp.handshake import server_identity

    return server_identity(__version__, kernel_version)


# --- shutdown on SIGTERM / SIGINT ---------------------------------------------------------------

#: Seconds in-flight HTTP requests (and open SSE streams) get to finish once a signal arrived.
HTTP_GRACE_S = 2.0


class Shutdown:
    """SIGTERM / SIGINT -> a graceful stop of the server (see the module's docstring).

    ``exit_code`` is 0 until a signal arrived, then 128 + its number.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, service: RLMService) -> None:
        self.service = service
        self.signum: int | None = None
        self._signalled = asyncio.Event()

    @property
    def exit_code(self) -> int:
        return 0 if self.signum is None else 128 + self.signum

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle the signals on the running loop (main thread) while the block runs."""
        loop = asyncio.get_running_loop()
        installed = []
        for sig in self.SIGNALS:
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # no signals here (Windows, a thread)
                continue
            installed.append(sig)
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            log.warning("mcp_forced_exit", signal=name, exit_code=self.exit_code,
                        note="second signal: exiting without waiting for agent runs")
            os._exit(self.exit_code)
        self.signum = signum
        runs = self.service.begin_shutdown()
        log.warning("mcp_shutting_down", signal=name, cancelled_runs=runs, exit_code=self.exit_code,
                    note="send the signal again to exit at once")
        self._signalled.set()

    async def serve(self, transport: Awaitable[None], *, stop: Callable[[asyncio.Task[None]], None]) -> None:
        """Run ``transport`` until it ends or a signal arrives; then ``stop(task)`` and wait for it to end."""
        task: asyncio.Task[None] = asyncio.ensure_future(transport)
        signalled = asyncio.ensure_future(self._signalled.wait())
        try:
            await asyncio.wait({task, signalled}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            signalled.cancel()
        if not task.done():
            stop(task)
        try:
            await task
        except asyncio.CancelledError:
            if self.signum is None:
                raise


# --- the HTTP request body limit ----------------------------------------------------------------

def body_limit_error(limit: int, size: int | None) -> dict[str, Any]:
    """The JSON-RPC error for a request body over ``limit`` bytes (``id`` null: the body was not read)."""
    mib = limit / (1024 * 1024)
    got = f" (this one: {size} bytes)" if size is not None else ""
    message = (f"request body over this server's limit of {mib:g} MiB ({limit} bytes){got}; send less in one "
               "call (e.g. put large data in a file the REPL can read) or raise the limit with [plugins.mcp] "
               "max_body_mb in rlm.toml, RLM_PLUGINS__MCP__MAX_BODY_MB or rlm mcp-serve --max-body-mb")
    return {"jsonrpc": "2.0", "id": None,
            "error": {"code": types.INVALID_REQUEST, "message": message,
                      "data": {"limit_bytes": limit, "body_bytes": size, "option": "[plugins.mcp] max_body_mb"}}}


class HTTPFront:
    """ASGI wrapper in front of the SDK's streamable HTTP app.

    - The SDK's bare ``413 Request body too large`` becomes a 413 whose JSON
      body is a JSON-RPC error naming the limit and how to raise it (the
      official client shows that error's message, and its ``data``).
    - A response the app left unfinished (an SSE stream ended by the server's
      shutdown) gets its closing empty chunk, so the client sees a clean end.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = {"started": False, "complete": False, "replaced": False}

        async def front_send(message: Any) -> None:
            if state["replaced"]:
                return  # the SDK's plain-text 413 body
            if message["type"] == "http.response.start" and message.get("status") == 413:
                state["replaced"] = True
                size = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), None)
                body = json.dumps(body_limit_error(self.limit, int(size) if size and size.isdigit() else None))
                data = body.encode()
                log.warning("mcp_body_too_large", limit_bytes=self.limit, body_bytes=size and size.decode())
                await send({"type": "http.response.start", "status": 413,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(data)).encode())]})
                await send({"type": "http.response.body", "body": data})
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                state["complete"] = True
            await send(message)

        await self.app(scope, receive, front_send)
        if state["started"] and not state["complete"] and not state["replaced"]:
            with contextlib.suppress(Exception):  # the client may be gone already
                await send({"type": "http.response.body", "body": b"", "more_body": False})


# --- the transports -----------------------------------------------------------------------------

async def serve_stdio(service: RLMService, front: StdioFront | None = None) -> int:
    """Serve one client over stdin/stdout until it closes stdin (0) or a signal arrives (128 + signal).

    ``front``: the :class:`~rlm_mcp.handshake.StdioFront` that holds the wire since before the SDK was
    imported (``rlm mcp-serve`` starts it first); without one, one is started here.
    """
    from mcp.server.stdio import stdio_server

    from rlm_mcp.stdio_guard import claim_stdio

    server = build_server(service)
    if front is None:
        wire_in, wire_out = claim_stdio()
        front = StdioFront(wire_in, wire_out, identity=stdio_identity())
    stdin, stdout = front.attach()
    shutdown = Shutdown(service)

    async def transport() -> None:
        async with stdio_server(stdin=stdin, stdout=stdout) as (read_stream, write_stream):  # type: ignore[arg-type]
            await server.run(read_stream, write_stream, server.create_initialization_options())

    log.info("mcp_serving", transport="stdio")
    with shutdown.installed():
        async with service:
            await shutdown.serve(transport(), stop=lambda task: task.cancel())
    log.info("mcp_stopped", transport="stdio", exit_code=shutdown.exit_code)
    return shutdown.exit_code


async def serve_http(service: RLMService, *, host: str, port: int, path: str, max_body_bytes: int) -> int:
    """Serve streamable HTTP on ``host:port`` at ``path`` until a signal arrives (128 + signal)."""
    import sys

    import uvicorn

    class Uvicorn(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # :class:`Shutdown` owns SIGTERM/SIGINT: uvicorn's handlers would re-raise the signal after its
            # own shutdown and kill the process before the agent runs have ended.
            yield

    sys.stdout = sys.stderr  # uvicorn's access log and any print go to stderr too
    server = build_server(service)
    app = server.streamable_http_app(streamable_http_path=path, host=host, max_request_body_size=max_body_bytes)
    config = uvicorn.Config(HTTPFront(app, max_body_bytes), host=host, port=port, log_level="warning",
                            access_log=False, lifespan="on", timeout_graceful_shutdown=HTTP_GRACE_S)
    web = Uvicorn(config)
    shutdown = Shutdown(service)

    def stop(task: asyncio.Task[None]) -> None:
        # uvicorn stops accepting, gives requests HTTP_GRACE_S, then ends the lifespan; open SSE streams
        # (a client's GET stream) end at once when sse-starlette sees the exit (it hooks handle_exit)
        web.handle_exit(shutdown.signum or signal.SIGTERM, None)
        with contextlib.suppress(ImportError):
            from sse_starlette.sse import AppStatus

            AppStatus.should_exit = True

    log.warning("mcp_serving", transport="http", url=f"http://{host}:{port}{path}", max_body_bytes=max_body_bytes)
    with shutdown.installed():
        async with service:
            await shutdown.serve(web.serve(), stop=stop)
    log.info("mcp_stopped", transport="http", exit_code=shutdown.exit_code)
    return shutdown.exit_code
