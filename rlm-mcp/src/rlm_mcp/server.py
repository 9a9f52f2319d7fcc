"""The MCP side: an ``mcp`` lowlevel :class:`~mcp.server.lowlevel.Server` over :class:`RLMService`.

The lowlevel server of the official SDK (2.x) is used with hand-written JSON
Schemas, so what the model sees is exactly :mod:`rlm_mcp.tools`.  Results
are returned both as JSON text (for clients that only read text) and as
``structuredContent``.  Transports: stdio (behind :mod:`rlm_mcp.stdio_guard`)
and streamable HTTP (uvicorn, loopback by default).
"""

from __future__ import annotations

import json
from typing import Any

from mcp import types
from mcp.server.lowlevel import Server
from rlm import __version__ as kernel_version
from rlm.errors import RLMError
from rlm.logging import get_logger

from rlm_mcp import __version__
from rlm_mcp.service import RLMService
from rlm_mcp.tools import TOOLS, TOOLS_BY_NAME

log = get_logger(__name__)

INSTRUCTIONS = (
    "rlm gives you a sandboxed, persistent Python REPL (execute_python; variables persist per session_id) "
    "and autonomous rlm agent runs (rlm_agent_run starts one in the background; poll rlm_agent_status)."
)


def _tool(defn: Any) -> types.Tool:
    return types.Tool(name=defn.name, title=defn.title, description=defn.description,
                      input_schema=dict(defn.input_schema),
                      annotations=types.ToolAnnotations(title=defn.title, **defn.annotations))


def _result(data: Any, *, error: bool = False) -> types.CallToolResult:
    text = json.dumps(data, ensure_ascii=False, indent=1, default=str)
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                structured_content=data if isinstance(data, dict) else None, is_error=error)


def build_server(service: RLMService) -> Server[Any]:
    """The lowlevel server whose tools call ``service``."""
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

    return Server("rlm", version=__version__, title="rlm (Recursive Language Models)",
                  description=f"rlm {kernel_version}: sandboxed Python REPL and autonomous agent runs",
                  instructions=INSTRUCTIONS, on_list_tools=list_tools, on_call_tool=call_tool,
                  get_tool_input_schema=lambda name: (dict(TOOLS_BY_NAME[name].input_schema)
                                                      if name in TOOLS_BY_NAME else None))


async def serve_stdio(service: RLMService) -> None:
    """Serve one client over stdin/stdout until it closes stdin."""
    import io

    import anyio
    from mcp.server.stdio import stdio_server

    from rlm_mcp.stdio_guard import claim_stdio

    wire_in, wire_out = claim_stdio()
    stdin = anyio.wrap_file(io.TextIOWrapper(wire_in, encoding="utf-8", errors="replace"))
    stdout = anyio.wrap_file(io.TextIOWrapper(wire_out, encoding="utf-8", write_through=True))
    server = build_server(service)
    log.info("mcp_serving", transport="stdio")
    async with service, stdio_server(stdin=stdin, stdout=stdout) as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


async def serve_http(service: RLMService, *, host: str, port: int, path: str) -> None:
    """Serve streamable HTTP on ``host:port`` at ``path`` until interrupted."""
    import sys

    import uvicorn

    sys.stdout = sys.stderr  # uvicorn's access log and any print go to stderr too
    server = build_server(service)
    app = server.streamable_http_app(streamable_http_path=path, host=host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")
    log.warning("mcp_serving", transport="http", url=f"http://{host}:{port}{path}")
    async with service:
        await uvicorn.Server(config).serve()
