"""The hook implementations of rlm-mcp (imported on every ``rlm`` run: keep it cheap).

Nothing here imports ``mcp``: the command is registered as a ``"module:attr"``
string and the SDK is imported only when ``rlm mcp-serve`` runs.
"""

from __future__ import annotations

from rlm import hookimpl


@hookimpl
def rlm_register_commands(register):
    register("mcp-serve", "rlm_mcp.cli:serve",
             help="Start the MCP server for Claude Desktop / Claude Code (stdio, or --transport http).")
    register("mcp install", "rlm_mcp.install:install",  # `rlm mcp install`: the kernel's CLI makes the group "mcp"
             help="Write the Claude Desktop (--claude-desktop) or Claude Code (--claude-code: ./.mcp.json) "
                  "configuration that starts this rlm's `rlm mcp-serve`; --dry-run prints it.")


@hookimpl
def rlm_register_config_sections(register):
    register("mcp", "rlm_mcp.config:MCPConfig")  # imported when a config is built
