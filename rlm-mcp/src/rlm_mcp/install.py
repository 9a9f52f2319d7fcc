"""``rlm mcp install``: write the MCP client configuration that starts this rlm's ``rlm mcp-serve``.

Registered lazily as ``rlm_mcp.install:install`` under the name ``"mcp install"`` (a command group
``mcp`` of the kernel's CLI).  The entry written is
``{"command": <this rlm, absolute>, "args": ["mcp-serve"], "env": {...}}`` under ``mcpServers.<name>``,
merged into the file by :mod:`rlm_mcp.client_config` (nothing else in it changes; see there for the
safety rules).  Which ``rlm``: :func:`server_command`.  Where: :func:`claude_desktop_config` (the paths
Claude Desktop documents) or the project's ``.mcp.json`` for Claude Code (its project scope).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from cyclopts import Parameter
from rlm.errors import ConfigError

#: Names the ``rlm`` console script has (Windows: ``rlm.exe``; some launchers drop the suffix from argv[0]).
SCRIPT_NAMES = ("rlm", "rlm.exe")
#: Claude Code's project-scope file, in the directory Claude Code is started in.
CLAUDE_CODE_FILE = ".mcp.json"
DESKTOP_FILE = "claude_desktop_config.json"
#: A plain on/off option (no --no-... form, no "[default: False]").
FLAG = Parameter(negative="", show_default=False)


def claude_desktop_config(platform: str | None = None, environ: Mapping[str, str] | None = None,
                          home: Path | None = None) -> Path:
    """Claude Desktop's configuration file: macOS ``~/Library/Application Support/Claude/``, Windows
    ``%APPDATA%\\Claude\\``, Linux (and other Unixes) ``$XDG_CONFIG_HOME/Claude/`` (default ``~/.config``).

    Spelled out rather than asked of platformdirs: Claude Desktop (an Electron app) uses these folders
    whatever ``XDG_CONFIG_HOME`` says on macOS, which platformdirs 4 honours there.
    """
    platform = sys.platform if platform is None else platform
    environ = os.environ if environ is None else environ
    home = Path.home() if home is None else home
    if platform == "darwin":
        base = home / "Library" / "Application Support"
    elif platform.startswith(("win", "cygwin")):
        base = Path(environ["APPDATA"]) if environ.get("APPDATA") else home / "AppData" / "Roaming"
    else:
        xdg = environ.get("XDG_CONFIG_HOME", "").strip()
        base = Path(xdg).expanduser() if xdg and os.path.isabs(os.path.expanduser(xdg)) else home / ".config"
    return base / "Claude" / DESKTOP_FILE


def server_command(argv0: str | None = None, executable: str | None = None,
                   scripts_dirs: Sequence[str] | None = None) -> list[str]:
    """The command line that starts this rlm's MCP server, absolute.

    1. ``sys.argv[0]`` when it is the ``rlm`` console script (``rlm mcp install`` was run as ``rlm``);
    2. else the ``rlm`` script beside this interpreter (the folder of ``sys.executable``, then the
       scripts folder of its install scheme): e.g. ``python -m rlm mcp install`` in a virtual environment;
    3. else ``[sys.executable, "-m", "rlm", "mcp-serve"]``.
    """
    argv0 = (sys.argv[0] if sys.argv else "") if argv0 is None else argv0
    executable = sys.executable if executable is None else executable
    if scripts_dirs is None:
        scripts_dirs = [d for d in (os.path.dirname(executable or ""), sysconfig.get_path("scripts")) if d]
    if argv0 and os.path.basename(argv0).lower() in SCRIPT_NAMES:
        for candidate in (argv0, argv0 + ".exe") if os.name == "nt" else (argv0,):
            path = os.path.abspath(candidate)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return [path, "mcp-serve"]
    for folder in dict.fromkeys(scripts_dirs):
        found = shutil.which("rlm", path=folder)
        if found:
            return [os.path.abspath(found), "mcp-serve"]
    if not executable:
        raise ConfigError("cannot tell which Python runs this rlm (sys.executable is empty)",
                          fix="run `rlm mcp install` with the rlm script of your installation")
    return [os.path.abspath(executable), "-m", "rlm", "mcp-serve"]


def parse_env(pairs: Sequence[str]) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` as a dict (a later KEY wins); :class:`ConfigError` for a pair without a key."""
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or key != key.strip():
            raise ConfigError(f"--env {pair!r} is not KEY=VALUE", fix="pass e.g. --env RLM_CONFIG=/path/to/rlm.toml")
        env[key] = value
    return env


def server_entry(env: Mapping[str, str]) -> dict[str, Any]:
    """The ``mcpServers`` entry: ``command``, ``args``, ``env``."""
    command, *args = server_command()
    return {"command": command, "args": args, "env": dict(env)}


def install(
    *,
    claude_desktop: Annotated[bool, FLAG] = False,
    claude_code: Annotated[bool, FLAG] = False,
    config_file: Path | None = None,
    name: str = "rlm",
    env: Annotated[list[str] | None, Parameter(name=["--env", "-e"], negative="")] = None,
    force: Annotated[bool, FLAG] = False,
    dry_run: Annotated[bool, FLAG] = False,
) -> int:
    """Write the MCP client configuration that starts this rlm's MCP server.

    Adds {"command": "<this rlm, absolute>", "args": ["mcp-serve"],
    "env": {...}} as mcpServers.<name> of the client's JSON file, keeping
    every other server and key.  Neither --claude-desktop nor --claude-code
    (nor --config-file): a usage error naming both (exit 2).  A file that is
    not valid JSON is never overwritten (exit 2); an entry of that name that
    differs is replaced only with --force; the previous file is kept as
    <file>.bak.  --dry-run prints the merged file and writes nothing.

    Parameters
    ----------
    claude_desktop: bool
        Claude Desktop: claude_desktop_config.json (macOS ~/Library/Application Support/Claude/, Windows
        %APPDATA%\\Claude\\, Linux ~/.config/Claude/); restart Claude Desktop after.
    claude_code: bool
        Claude Code: ./.mcp.json, its project scope (preferred: shared with the project; Claude Code asks to
        approve it on first use).  Alternative: `claude mcp add rlm -- <path of rlm> mcp-serve`.
    config_file: Path
        Write this file instead of the client's default one.
    name: str
        Name of the server entry.
    env: list[str]
        KEY=VALUE for the server's environment, one per --env (e.g. --env RLM_CONFIG=/path/to/rlm.toml).
    force: bool
        Replace an existing entry of that name that differs.
    dry_run: bool
        Print the merged configuration to stdout; write nothing.
    """
    from rlm.cli import UsageError

    from rlm_mcp import client_config

    if claude_desktop and claude_code:
        raise UsageError("rlm mcp install: --claude-desktop and --claude-code exclude each other",
                         fix="run it once for each client")
    if not (claude_desktop or claude_code or config_file):
        raise UsageError(f"rlm mcp install: say which client: --claude-desktop (writes {claude_desktop_config()}) "
                         f"or --claude-code (writes ./{CLAUDE_CODE_FILE}, the project scope)",
                         fix="add one of them, or --config-file PATH; see `rlm mcp install --help`")
    if not name.strip():
        raise UsageError("rlm mcp install: --name is empty", fix="pass a server name such as --name rlm")
    if config_file is not None:
        path = config_file.expanduser()
    elif claude_desktop:
        path = claude_desktop_config()
    else:
        path = Path.cwd() / CLAUDE_CODE_FILE
    path = Path(os.path.abspath(path))
    client = "Claude Desktop" if claude_desktop else "Claude Code" if claude_code else "the MCP client"
    server_env = parse_env(env or ())
    entry = server_entry(server_env)

    existing = client_config.read(path)
    plan = client_config.merge(existing, name, entry, force=force)
    text = client_config.render(plan.config)
    log = _logger()
    if dry_run:
        print(f"rlm mcp install: dry run: {plan.action} mcpServers.{name} in {existing.path}; nothing written",
              file=sys.stderr)
        log.info("mcp_install", path=str(existing.path), name=name, action=plan.action, dry_run=True)
        sys.stdout.write(text)
        return 0
    if plan.action == "unchanged":
        print(f"{existing.path} already has this MCP server {name!r}; nothing to do")
        return 0
    backup = client_config.write(existing, text)
    if backup is not None:
        print(f"rlm mcp install: saved the previous {existing.path.name} as {backup}", file=sys.stderr)
    print(f"rlm mcp install: {plan.action} mcpServers.{name} = {json.dumps(entry, ensure_ascii=False)} in "
          f"{existing.path}", file=sys.stderr)
    log.info("mcp_install", path=str(existing.path), name=name, action=plan.action,
             backup=str(backup) if backup else None, command=entry["command"])
    if claude_desktop and "RLM_CONFIG" not in server_env and Path("rlm.toml").is_file():
        print("rlm mcp install: note: Claude Desktop starts the server in another directory, where ./rlm.toml "
              f"is not read: add --env RLM_CONFIG={Path('rlm.toml').resolve()} to use it", file=sys.stderr)
    then = "restart Claude Desktop to load it" if claude_desktop else (
        "start Claude Code in this directory to load it" if claude_code else "restart the client to load it")
    print(f"installed MCP server {name!r} for {client} in {existing.path}: {then}")
    return 0


def _logger() -> Any:
    from rlm.logging import get_logger

    return get_logger(__name__)
