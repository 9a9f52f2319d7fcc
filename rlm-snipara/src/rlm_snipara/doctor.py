"""``rlm doctor``'s snipara check: which provider is active, or why none is and how to enable one.

It never contacts the hosted service and never shows the key; for the
local provider it checks FTS5, the docs paths and the database location.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from rlm.config import RLMConfig
from rlm.doctor import Check

from rlm_snipara import config as cfg


def check(config: RLMConfig) -> Iterator[Check]:
    choice = cfg.choose_provider(config)
    settings = cfg.settings_of(config)
    if choice.provider is None:
        explicit = settings.provider != "auto"
        yield Check(status="fail" if explicit else "warn", summary=f"snipara: {choice.reason}", fix=choice.fix)
        return
    tools = "6 context tools" + (" + memory tools" if config.memory_enabled else
                                 " (memory tools off: set [rlm] memory_enabled = true)")
    if settings.legacy_tool_names:
        tools += "; under their rlm-runtime 2.x names (legacy_tool_names = true)"
    if choice.provider == "snipara":
        if not cfg.key_looks_valid(config.snipara_api_key):
            yield Check(status="fail", summary="snipara: Invalid API key (the key does not start with rlm_)",
                        fix="check the key starts with rlm_; set SNIPARA_API_KEY")
            return
        yield Check(status="ok", summary=f"snipara: {choice.reason} at {settings.base_url}; {tools}")
        return
    from rlm_snipara.store import FTS5_FIX, fts5_available

    if not fts5_available():
        yield Check(status="fail", summary="snipara: this Python's SQLite has no FTS5 (the local index needs it)",
                    fix=FTS5_FIX)
        return
    base = cfg.base_dir(config)
    missing = [entry for entry in (*settings.docs, *settings.shared)
               if not (Path(entry).expanduser() if Path(entry).expanduser().is_absolute() else base / entry).exists()]
    if missing:
        yield Check(status="warn", summary=f"snipara: docs not found: {', '.join(missing)} (relative to {base})",
                    fix="fix [plugins.snipara] docs / shared")
    yield Check(status="ok", summary=f"snipara: {choice.reason}, index {cfg.db_path(config)}; {tools}")
