"""Persistent agent memory of the local provider (``rlm_remember`` / ``rlm_recall``).

Memories live in the same SQLite file as the index, with a type
(:data:`MEMORY_TYPES`) and an optional time to live.  Recall ranks by bm25
relevance, then recency; expired memories are never returned and are
deleted when next seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal, get_args

from rlm.errors import ToolError
from rlm.tokens import estimate_tokens

from rlm_snipara.budget import pack
from rlm_snipara.store import Store, match_expression

MemoryType = Literal["fact", "decision", "learning", "preference", "todo", "context"]
MEMORY_TYPES: tuple[str, ...] = get_args(MemoryType)
MAX_MEMORY_CHARS = 20_000
DAY = 86_400.0


class MemoryStore:
    """Memories in a :class:`Store`; ``clock`` is injectable for tests of expiry."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def remember(self, content: str, *, type: str = "fact", ttl_days: float | None = None) -> dict[str, Any]:
        """Store a memory; it expires after ``ttl_days`` (None: never)."""
        content = content.strip()
        if not content:
            raise ToolError("nothing to remember: content is empty", fix="pass the text to remember")
        if len(content) > MAX_MEMORY_CHARS:
            raise ToolError(f"the memory is {len(content)} characters long (limit {MAX_MEMORY_CHARS})",
                            fix="store a summary instead")
        if type not in MEMORY_TYPES:
            raise ToolError(f"unknown memory type {type!r}", fix=f"use one of {', '.join(MEMORY_TYPES)}")
        if ttl_days is not None and ttl_days <= 0:
            raise ToolError(f"ttl_days must be positive, got {ttl_days}", fix="omit it to keep the memory forever")
        now = self.clock()
        expires = now + ttl_days * DAY if ttl_days is not None else None
        with self.store.connect() as conn:
            cursor = conn.execute("INSERT INTO memories(content, type, created, expires) VALUES (?, ?, ?, ?)",
                                  (content, type, now, expires))
            memory_id = cursor.lastrowid
            conn.execute("INSERT INTO memories_fts(rowid, content) VALUES (?, ?)", (memory_id, content))
        return {"id": memory_id, "type": type, "stored": True,
                "expires_in_days": ttl_days if ttl_days is not None else None}

    def _purge(self, conn: Any, now: float) -> int:
        expired = [r[0] for r in conn.execute("SELECT id FROM memories WHERE expires IS NOT NULL AND expires <= ?",
                                              (now,))]
        for memory_id in expired:
            conn.execute("DELETE FROM memories_fts WHERE rowid = ?", (memory_id,))
            conn.execute("DELETE FROM memories WHERE id = ?", (memory_id,))
        return len(expired)

    def recall(self, query: str, *, type: str | None = None, limit: int = 5, max_tokens: int = 2000) -> dict[str, Any]:
        """The live memories most relevant to ``query`` (bm25, then newest first)."""
        if type is not None and type not in MEMORY_TYPES:
            raise ToolError(f"unknown memory type {type!r}", fix=f"use one of {', '.join(MEMORY_TYPES)} or omit it")
        limit = max(1, min(limit, 50))
        now = self.clock()
        expression = match_expression(query)
        type_filter = "AND m.type = ?" if type else ""
        type_args = (type,) if type else ()
        with self.store.connect() as conn:
            self._purge(conn, now)
            if expression is not None:
                rows = conn.execute(
                    f"SELECT m.id, m.content, m.type, m.created, bm25(memories_fts) AS score "
                    f"FROM memories_fts JOIN memories m ON m.id = memories_fts.rowid "
                    f"WHERE memories_fts MATCH ? {type_filter} ORDER BY score, m.created DESC LIMIT ?",
                    (expression, *type_args, limit)).fetchall()
            else:  # no usable words: the newest memories
                rows = conn.execute(
                    f"SELECT m.id, m.content, m.type, m.created, 0.0 FROM memories m WHERE 1=1 {type_filter} "
                    f"ORDER BY m.created DESC LIMIT ?", (*type_args, limit)).fetchall()
        packed = pack(rows, lambda r: r[1], max_tokens, overhead=lambda r: estimate_tokens(r[2]))
        memories = [{"id": r[0], "type": r[2], "content": text, "score": round(-r[4], 3),
                     "age_days": round((now - r[3]) / DAY, 2)} for r, text in packed.items]  # type: ignore[misc]
        return {"query": query, "memories": memories, "tokens": packed.tokens, "truncated": packed.truncated}
