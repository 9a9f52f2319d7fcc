"""An MCP client's JSON configuration file (``claude_desktop_config.json``, ``.mcp.json``): read, merge, write.

Nothing is ever lost: a file that cannot be read as a JSON object (too big, not
UTF-8, not JSON, a duplicated key, ``mcpServers`` not an object) is an error
naming the file and the fix, and is left untouched; the other servers and the
other top-level keys are kept as they are; an entry of the same name that
differs is replaced only when asked (``force``).  Writing is atomic (a temporary
file in the same folder, then :func:`os.replace`), keeps the file's permission
bits, writes through a symbolic link to its target, and first saves the previous
content as ``<file>.bak``.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from attrs import frozen
from rlm.atomic import replace_file
from rlm.errors import ConfigError

#: The largest file read (a client's configuration is a few KiB; a bigger file is not one).
MAX_BYTES = 10 * 1024 * 1024
#: The key holding the servers, in Claude Desktop's and Claude Code's files alike.
SERVERS = "mcpServers"


@frozen
class Existing:
    """A configuration file as read: ``config`` (``{}`` when absent), ``raw`` (its bytes, None when absent)
    and ``path`` (where it is written: the target of a symbolic link)."""

    path: Path
    config: dict[str, Any]
    raw: bytes | None


@frozen
class Plan:
    """What :func:`merge` decided: the merged ``config``, ``action`` (``"create"``, ``"add"``, ``"replace"``
    or ``"unchanged"``) and the ``previous`` entry of that name (None when there was none)."""

    config: dict[str, Any]
    action: str
    previous: Any = None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"the key {key!r} appears twice in one object (rewriting would drop one)")
        seen[key] = value
    return seen


def read(path: Path) -> Existing:
    """The configuration at ``path`` (a missing file reads as ``{}``; an empty one too); :class:`ConfigError`
    when it cannot be used as it is (see the module docstring)."""
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        with open(target, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return Existing(path=target, config={}, raw=None)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}",
                          fix="check that it is a file you may read, or pass --config-file PATH") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_BYTES // (1024 * 1024)} MiB, too big for an MCP client "
                          "configuration; it was not changed", fix="check that this is the right file, or pass "
                          "--config-file PATH")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start}); it was not changed",
                          fix="save it as UTF-8, or fix or move it away, then run this again") from None
    if not text.strip():
        return Existing(path=target, config={}, raw=raw)
    try:
        config = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                          "it was not changed",
                          fix="fix the JSON (or move the file away), then run this again") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}; it was not changed",
                          fix="remove the duplicate, then run this again") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path} holds a JSON {type(config).__name__}, not an object; it was not changed",
                          fix='make it an object such as {"mcpServers": {}}, or move it away, then run this again')
    servers = config.get(SERVERS)
    if servers is not None and not isinstance(servers, dict):
        raise ConfigError(f'{path}: "{SERVERS}" is a JSON {type(servers).__name__}, not an object of servers; '
                          'it was not changed', fix=f'make it an object ("{SERVERS}": {{"name": {{...}}}}), '
                          'then run this again')
    return Existing(path=target, config=config, raw=raw)


def merge(existing: Existing, name: str, entry: dict[str, Any], *, force: bool) -> Plan:
    """``existing`` with ``entry`` as server ``name``, everything else kept; :class:`ConfigError` showing both
    when an entry of that name differs and ``force`` is not set."""
    config = dict(existing.config)
    servers = dict(config.get(SERVERS) or {})
    previous = servers.get(name)
    if name in servers and previous == entry:
        return Plan(config=existing.config, action="unchanged", previous=previous)
    if name in servers and not force:
        raise ConfigError(
            f"{existing.path} already has an MCP server {name!r} that differs: it has "
            f"{json.dumps(previous, ensure_ascii=False)}, this would write {json.dumps(entry, ensure_ascii=False)}; "
            "nothing was changed",
            fix=f"pass --force to replace it (the previous file is kept as {existing.path.name}.bak), "
                "or --name NAME to add this one beside it")
    servers[name] = entry
    config[SERVERS] = servers
    action = "create" if existing.raw is None else ("replace" if name in existing.config.get(SERVERS, {}) else "add")
    return Plan(config=config, action=action, previous=previous)


def render(config: dict[str, Any]) -> str:
    """The JSON text written (two-space indent, non-ASCII kept, final newline)."""
    return json.dumps(config, indent=2, ensure_ascii=False) + "\n"


def write(existing: Existing, text: str) -> Path | None:
    """Write ``text`` over ``existing.path`` atomically, keeping its permission bits, after saving its previous
    content as ``<file>.bak`` (returned; None when there was no file).  Parent folders are created.  The file
    changed since it was read: :class:`ConfigError`, nothing written."""
    path = existing.path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = _mode_of(path)
        if _current_bytes(path) != existing.raw:
            raise ConfigError(f"{path} changed while this ran; it was not changed", fix="run this again")
        backup = None
        if existing.raw is not None:
            backup = path.with_name(path.name + ".bak")
            _replace(backup, existing.raw, mode)
        _replace(path, text.encode("utf-8"), mode)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write it: {exc.strerror or exc}",
                          fix="check that its folder is writable, or pass --dry-run and add the entry by hand"
                          ) from None
    return backup


def _mode_of(path: Path) -> int:
    """The permission bits of ``path``; for a new file, those a newly created file gets (0666 less the umask)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _current_bytes(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None


def _replace(path: Path, data: bytes, mode: int) -> None:
    """Put ``data`` at ``path`` atomically, synced (the user's client config), with ``mode``."""
    replace_file(path, data, mode=mode, sync=True)
