"""rlm-mcp: ``rlm mcp-serve``, an MCP server for Claude Desktop and Claude Code.

It gives the model a sandboxed Python REPL (``execute_python`` and the
``*_repl_context`` tools, no API key needed) and background rlm agent runs
(``rlm_agent_run`` / ``rlm_agent_status`` / ``rlm_agent_cancel``).  Built on
the official ``mcp`` SDK (2.x); the SDK is imported only when the server runs.
"""

__version__ = "0.1.0"
