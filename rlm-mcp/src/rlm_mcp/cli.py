"""``rlm mcp-serve``: start the MCP server (stdio by default, or streamable HTTP).

Registered lazily as ``rlm_mcp.cli:serve``.  Options override
``[plugins.mcp]``, which overrides the defaults; the model and the REPL
limits come from ``[rlm]`` (rlm.toml, ``RLM_*``; ``RLM_CONFIG`` names the
file when the client starts the server in another directory).

With stdio, the wire is taken and the MCP handshake answered (:mod:`rlm_mcp.handshake`) before
the plugins' sections, the configuration and the SDK are loaded: the transport is read first on its
own (:func:`rlm.config.peek_plugin_setting`); an error found later is reported on stderr and to the
client's next request.
"""

from __future__ import annotations

from typing import Annotated, Literal

from cyclopts import Parameter
from rlm.errors import RLMError

#: The SDK range this distribution is tested with (keep in step with pyproject.toml).
MCP_REQUIREMENT = "mcp>=2.3,<3"
PIP_HINT = f'pip install "{MCP_REQUIREMENT}"'


def installed_mcp_version() -> str | None:
    """The installed mcp's version, None when it is not installed.

    Read from the name of its ``mcp-<version>.dist-info`` folder when there is exactly one next to the
    package (importing :mod:`importlib.metadata` costs ~50 ms of the server's start); else from
    :func:`importlib.metadata.version`.
    """
    import importlib.util
    import os

    try:
        spec = importlib.util.find_spec("mcp")
        if spec is not None and spec.origin:
            site = os.path.dirname(os.path.dirname(spec.origin))
            found = [n for n in os.listdir(site) if n.startswith("mcp-") and n.endswith(".dist-info")]
            if len(found) == 1:
                return found[0][len("mcp-"):-len(".dist-info")]
    except (ImportError, OSError, ValueError):
        pass
    from importlib import metadata

    try:
        return metadata.version("mcp")
    except metadata.PackageNotFoundError:
        return None


def require_mcp() -> None:
    """Fail with the exact pip command when the SDK is missing or of another major version."""
    from rlm.errors import PluginError

    version = installed_mcp_version()
    if version is None:
        raise PluginError("rlm mcp-serve needs the official MCP Python SDK (the mcp package), which is not "
                          "installed", fix=PIP_HINT) from None
    parts = version.split(".")
    try:
        major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        major, minor = 0, 0
    if major != 2 or minor < 3:
        raise PluginError(f"rlm mcp-serve needs mcp 2.x (>=2.3); mcp {version} is installed", fix=PIP_HINT)


def serve(
    *,
    transport: Literal["stdio", "http"] | None = None,
    host: str | None = None,
    port: int | None = None,
    env: Annotated[str | None, Parameter(name=["--env", "-e"])] = None,
    model: str | None = None,
    idle_timeout: float | None = None,
    max_sessions: int | None = None,
    max_body_mb: float | None = None,
) -> int:
    """Start the MCP server for Claude Desktop / Claude Code.

    With stdio (the default) the client starts `rlm mcp-serve` and talks JSON-RPC over its stdin/stdout;
    logs go to stderr.  With --transport http it serves streamable HTTP at http://HOST:PORT/mcp.

    SIGTERM or SIGINT cancel the agent runs in progress (each trajectory ends with run_end), close the
    REPL sessions and exit with 128 + the signal's number (143, 130); stdin closed by the client: exit 0.

    Parameters
    ----------
    transport: str
        stdio (default) or http ([plugins.mcp] transport).
    host: str
        Address of the HTTP transport (default 127.0.0.1).
    port: int
        Port of the HTTP transport (default 8765).
    env: str
        REPL environment of the tools and agent runs: local, docker or wasm (default: [rlm] environment).
    model: str
        Model of agent runs (default: [rlm] model / RLM_MODEL).
    idle_timeout: float
        Seconds before an unused REPL session is closed (default 1800).
    max_sessions: int
        REPL sessions open at once (default 16).
    max_body_mb: float
        Largest HTTP request body in MiB (default 4); a larger one gets a JSON-RPC error naming the limit.
    """
    # Take the wire and answer the handshake first, while the plugins, the configuration, the SDK and
    # the rest are loaded (1-3 s); only when stdio is certain (an error in the configuration is
    # reported below: on stderr, and to the client's requests by the front).
    front = start_stdio_front() if (transport or configured_transport()) == "stdio" else None
    try:
        service, options = _prepare(front, transport=transport, host=host, port=port, env=env, model=model,
                                    idle_timeout=idle_timeout, max_sessions=max_sessions, max_body_mb=max_body_mb)
    except RLMError as exc:
        if front is not None:
            front.fail(str(exc))
        raise
    import asyncio

    from rlm_mcp.server import serve_http, serve_stdio

    if options.transport == "http":
        return asyncio.run(serve_http(service, host=options.host, port=options.port, path=options.path,
                                      max_body_bytes=options.max_body_bytes))
    return asyncio.run(serve_stdio(service, front))


def configured_transport() -> str | None:
    """The transport ``[plugins.mcp]`` (or its environment variable) names, ``"stdio"`` when unset;
    None when the configuration cannot be read (:func:`serve` then reports why before taking stdio)."""
    from rlm.config import peek_plugin_setting

    from rlm_mcp.config import SECTION

    try:
        value = peek_plugin_setting(SECTION, "transport")
    except RLMError:
        return None
    return "stdio" if value is None else value


def _prepare(front: object, *, transport: str | None, host: str | None, port: int | None, env: str | None,
             model: str | None, idle_timeout: float | None, max_sessions: int | None,
             max_body_mb: float | None) -> tuple[object, object]:
    """The configuration, the plugins and the service of :func:`serve`: ``(service, options)``."""
    import attrs
    from rlm.cli import plugin_manager
    from rlm.config import load_config
    from rlm.errors import ConfigError, PluginError
    from rlm.hints import missing_plugin_fix
    from rlm.logging import get_logger
    from rlm.registry import collect

    require_mcp()
    from rlm_mcp.config import SECTION, MCPConfig

    log = get_logger(__name__)
    pm = plugin_manager()
    sections = {name: reg.load() for name, reg in collect(pm, "config_section").items()}
    config = load_config(sections=sections, model=model)
    options = config.plugin(SECTION) or MCPConfig()
    overrides = {"transport": transport, "host": host, "port": port, "idle_timeout": idle_timeout,
                 "max_sessions": max_sessions, "max_body_mb": max_body_mb}
    try:
        options = attrs.evolve(options, **{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        raise ConfigError(f"rlm mcp-serve: {exc}", fix="pass a finite number above 0") from None
    env_name = env or options.environment or config.environment
    environments = collect(pm, "environment")
    if env_name not in environments:
        have = ", ".join(sorted(environments)) or "none"
        raise PluginError(f"environment {env_name!r} is not installed (installed: {have})",
                          fix=missing_plugin_fix("environment", env_name, environments))
    if env_name != config.environment:
        config = attrs.evolve(config, environment=env_name)

    if (options.transport == "stdio") != (front is not None):  # configured_transport() read it otherwise
        raise ConfigError(f"rlm mcp-serve: the transport is {options.transport!r} but stdio was "
                          f"{'taken' if front is not None else 'not taken'} for it",
                          fix="report this bug; pass --transport explicitly meanwhile")

    factory = environments[env_name].load()
    from rlm_mcp.completions import RLMSessionManager
    from rlm_mcp.runs import RunManager
    from rlm_mcp.service import RLMService
    from rlm_mcp.sessions import SessionManager, environment_settings

    # imported here, on the main thread before serving: a run's thread then imports only its backend
    from rlm.agent import AgentRunner

    def make_runner(**limits: object) -> object:  # called in the run's own thread (rlm_mcp.runs)
        return AgentRunner(config=config, plugin_manager=pm, **limits)

    from rlm import RLM

    def make_rlm() -> object:  # called on an RLM session's own worker thread (rlm_mcp.completions)
        return RLM(config=config, plugin_manager=pm)

    rlm_sessions = RLMSessionManager(make_rlm, idle_timeout=options.idle_timeout,
                                     max_sessions=options.max_rlm_sessions)
    sessions = SessionManager(factory, environment_settings(config, env_name), environment=env_name,
                              idle_timeout=options.idle_timeout, max_sessions=options.max_sessions)
    runs = RunManager(make_runner, max_runs=options.max_runs, keep_runs=options.keep_runs)
    service = RLMService(sessions=sessions, runs=runs, options=options, default_timeout=config.env_timeout,
                         model=config.model, rlm_sessions=rlm_sessions)
    log.info("mcp_config", transport=options.transport, environment=env_name, model=config.model)
    if options.transport == "http" and options.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("mcp_http_not_loopback", host=options.host,
                    note="anyone who can reach this address can run code in the REPL")
    return service, options


def start_stdio_front() -> object:
    """Claim stdin/stdout and start :class:`rlm_mcp.handshake.StdioFront` on them (imports no SDK module)."""
    from rlm import __version__ as kernel_version

    from rlm_mcp import __version__
    from rlm_mcp.handshake import StdioFront, server_identity
    from rlm_mcp.stdio_guard import claim_stdio

    wire_in, wire_out = claim_stdio()
    front = StdioFront(wire_in, wire_out, identity=server_identity(__version__, kernel_version))
    if front.trace:  # debugging: the handshake is answered before anything else is imported
        front.answered.wait(10)
    return front
