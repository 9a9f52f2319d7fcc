"""The local provider's SQLite database: documents, sections (FTS5) and memories.

One file holds the document index and the memories.  Connections are
opened per operation (tools run in worker threads) in WAL mode, so several
runs and processes may share the file.  FTS5 is required; when the Python's
SQLite lacks it, :func:`check_fts5` says so and how to fix it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from rlm.errors import ToolError

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL, shared INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS sections (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL, title TEXT NOT NULL, heading_path TEXT NOT NULL,
    level INTEGER NOT NULL, line INTEGER NOT NULL, body TEXT NOT NULL, tokens INTEGER NOT NULL,
    shared INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS sections_path ON sections(path);
CREATE VIRTUAL TABLE IF NOT EXISTS sections_fts USING fts5(heading_path, body, tokenize='porter unicode61');
CREATE TABLE IF NOT EXISTS memories (
    id INTEGER PRIMARY KEY, content TEXT NOT NULL, type TEXT NOT NULL, created REAL NOT NULL, expires REAL);
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5(content, tokenize='porter unicode61');
"""


@lru_cache(maxsize=1)
def fts5_available() -> bool:
    """True when this Python's SQLite library was built with FTS5."""
    try:
        conn = sqlite3.connect(":memory:")
        try:
            conn.execute("CREATE VIRTUAL TABLE t USING fts5(x)")
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return True


FTS5_FIX = ("use a Python whose SQLite has FTS5 (python.org builds, uv/pyenv builds and most distributions do), "
            "or use the hosted provider (SNIPARA_API_KEY + SNIPARA_PROJECT_SLUG)")


def check_fts5() -> None:
    """Raise a ToolError naming the cause and the fix when FTS5 is missing."""
    if not fts5_available():
        raise ToolError(f"the local snipara index needs SQLite FTS5, which this Python's sqlite3 "
                        f"(SQLite {sqlite3.sqlite_version}) lacks", fix=FTS5_FIX)


class Store:
    """The database file at ``path`` (created with its schema on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._ready = False

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in a transaction (committed on success, rolled back on error)."""
        check_fts5()
        if not self._ready:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ToolError(f"cannot create the folder of the snipara index {self.path}: {exc.strerror}",
                                fix="set [plugins.snipara] db_path to a writable location") from exc
        try:
            conn = sqlite3.connect(self.path, timeout=30.0)
        except sqlite3.Error as exc:
            raise ToolError(f"cannot open the snipara index {self.path}: {exc}",
                            fix="set [plugins.snipara] db_path to a writable location") from exc
        try:
            if not self._ready:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
                conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
                conn.commit()
                self._ready = True
            with conn:
                yield conn
        except sqlite3.DatabaseError as exc:
            raise ToolError(f"the snipara index {self.path} is unusable: {exc}",
                            fix="delete the file (it is rebuilt from the docs; memories in it are lost) "
                                "or set [plugins.snipara] db_path elsewhere") from exc
        finally:
            conn.close()


def match_expression(text: str) -> str | None:
    """An FTS5 query matching any meaningful word of ``text`` (None when it has none)."""
    import re

    words = [w for w in re.findall(r"\w+", text.lower())]
    meaningful = [w for w in words if w not in STOPWORDS and len(w) > 1] or [w for w in words if len(w) > 1]
    if not meaningful:
        return None
    unique = list(dict.fromkeys(meaningful))[:32]
    return " OR ".join('"' + w.replace('"', "") + '"' for w in unique)


STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "but", "by", "can", "could", "did", "do", "does", "for", "from", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "of", "on", "or", "our", "should", "so", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "to", "was", "we", "what", "when", "where", "which", "who", "why", "will", "with", "would", "you", "your", "about", "all", "any", "also", "get", "got", "use", "using", "used"]
)
