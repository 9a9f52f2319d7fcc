"""``[plugins.mcp]`` of rlm.toml: how ``rlm mcp-serve`` serves.

Every key can also be set as ``RLM_PLUGINS__MCP__<KEY>``; the command-line
options of ``rlm mcp-serve`` override both.  The model, the backend and the
REPL limits (``env_timeout``, ``env_memory_mb``, ``allowed_paths``) come from
``[rlm]`` like for every other command.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from attrs import define, field, validators

SECTION = "mcp"

#: Bytes per ``max_body_mb`` (MiB): the default 4 is the SDK's own default of 4 MiB.
MIB = 1024 * 1024


def _finite_positive(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: a finite number above 0 (nan and inf refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"[plugins.mcp] {attribute.name} must be a finite number above 0, got {value!r}")

Transport = Literal["stdio", "http"]


@define(frozen=True, kw_only=True)
class MCPConfig:
    """Settings of the MCP server (``[plugins.mcp]``)."""

    transport: Transport = field(default="stdio", validator=validators.in_(("stdio", "http")), metadata={
        "help": '"stdio" (Claude Desktop / Claude Code launch the server) or "http" (streamable HTTP)'})
    host: str = field(default="127.0.0.1", metadata={
        "help": "address the HTTP transport binds to (loopback by default: the REPL runs code)"})
    port: int = field(default=8765, validator=[validators.ge(0), validators.le(65535)], metadata={
        "help": "port of the HTTP transport"})
    path: str = field(default="/mcp", metadata={"help": "URL path of the streamable HTTP endpoint"})
    environment: str = field(default="", metadata={
        "help": "REPL environment of the tools: local, docker or wasm (empty: [rlm] environment)"})
    idle_timeout: float = field(default=1800.0, validator=validators.gt(0), metadata={
        "help": "seconds a REPL session may stay unused before it is closed (its variables are lost)"})
    max_sessions: int = field(default=16, validator=validators.ge(1), metadata={
        "help": "REPL sessions open at once; more is refused until one is closed or expires"})
    max_rlm_sessions: int = field(default=4, validator=validators.ge(1), metadata={
        "help": "RLM sessions of rlm_complete open at once (each holds a REPL, a worker thread and backend "
                "connections); more is refused until one is closed or expires"})
    max_execute_timeout: float = field(default=300.0, validator=validators.gt(0), metadata={
        "help": "cap of the timeout argument of execute_python, seconds"})
    max_runs: int = field(default=4, validator=validators.ge(1), metadata={
        "help": "agent runs in progress at once; more is refused until one ends"})
    keep_runs: int = field(default=100, validator=validators.ge(1), metadata={
        "help": "finished agent runs whose status is kept (oldest forgotten first)"})
    max_body_mb: float = field(default=4.0, validator=_finite_positive, metadata={
        "help": "largest HTTP request body, MiB (one tool call's arguments: code, set_repl_context values); "
                "a larger one is refused with a JSON-RPC error naming this limit"})

    @property
    def max_body_bytes(self) -> int:
        """``max_body_mb`` in bytes."""
        return max(1, int(self.max_body_mb * MIB))
