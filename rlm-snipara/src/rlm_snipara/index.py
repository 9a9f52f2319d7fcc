"""The local documentation index: files -> Markdown sections -> SQLite FTS5 (bm25).

:meth:`DocIndex.refresh` re-reads only files whose mtime or size changed
and drops files that disappeared; every query refreshes first, so results
follow the docs as they are edited.  Queries rank sections with bm25
(headings weigh more than body text) and pack them into a token budget.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from attrs import define
from rlm.errors import ToolError
from rlm.logging import get_logger

from rlm_snipara.budget import estimate_tokens, pack
from rlm_snipara.markdown import MARKDOWN_SUFFIXES, split_sections
from rlm_snipara.store import Store, match_expression

log = get_logger(__name__)

#: File types indexed when a directory is listed in ``docs``.
INDEXED_SUFFIXES = (*MARKDOWN_SUFFIXES, ".txt", ".rst", ".adoc")
#: Files larger than this are skipped (with a warning).
MAX_FILE_BYTES = 8 * 1024 * 1024
#: bm25 weights of the FTS columns (heading path, body).
HEADING_WEIGHT, BODY_WEIGHT = 4.0, 1.0
MAX_PATTERN_CHARS = 500

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(str(path), threading.Lock())


@define(frozen=True, kw_only=True)
class RefreshStats:
    """What one refresh did."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    missing: tuple[str, ...] = ()


class DocIndex:
    """The sections of the configured ``docs`` (and ``shared``) in a :class:`Store`."""

    def __init__(self, store: Store, *, docs: Sequence[str], shared: Sequence[str] = (), base: Path) -> None:
        self.store = store
        self.docs = tuple(docs)
        self.shared = tuple(shared)
        self.base = Path(base)

    # --- files ----------------------------------------------------------------------------

    def _label(self, path: Path) -> str:
        try:
            return path.relative_to(self.base).as_posix()
        except ValueError:
            return path.as_posix()

    def _walk(self, entry: str) -> Iterator[Path] | None:
        root = Path(os.path.expanduser(entry))
        root = root if root.is_absolute() else self.base / root
        if root.is_file():
            return iter([root.resolve()])
        if not root.is_dir():
            return None

        def files() -> Iterator[Path]:
            for folder, dirs, names in os.walk(root):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in ("node_modules", "__pycache__"))
                for name in sorted(names):
                    if name.lower().endswith(INDEXED_SUFFIXES) and not name.startswith("."):
                        yield Path(folder, name).resolve()

        return files()

    def _current_files(self) -> tuple[dict[str, tuple[Path, bool]], list[str]]:
        found: dict[str, tuple[Path, bool]] = {}
        missing: list[str] = []
        for entries, shared in ((self.docs, False), (self.shared, True)):
            for entry in entries:
                walked = self._walk(entry)
                if walked is None:
                    missing.append(entry)
                    continue
                for path in walked:
                    label = self._label(path)
                    found[label] = (path, shared or found.get(label, (path, False))[1])
        return found, missing

    def refresh(self) -> RefreshStats:
        """Bring the index up to date with the files (only changed files are re-read)."""
        with _lock_for(self.store.path):
            current, missing = self._current_files()
            added = updated = removed = unchanged = 0
            with self.store.connect() as conn:
                known = {row[0]: (row[1], row[2], row[3]) for row in
                         conn.execute("SELECT path, mtime_ns, size, shared FROM files")}
                for label in known.keys() - current.keys():
                    self._drop(conn, label)
                    removed += 1
                for label, (path, shared) in current.items():
                    try:
                        stat = path.stat()
                    except OSError:
                        continue
                    if known.get(label) == (stat.st_mtime_ns, stat.st_size, int(shared)):
                        unchanged += 1
                        continue
                    if label in known:
                        self._drop(conn, label)
                        updated += 1
                    else:
                        added += 1
                    self._add(conn, label, path, stat, shared)
        if added or updated or removed:
            log.info("snipara_index_refreshed", added=added, updated=updated, removed=removed, unchanged=unchanged)
        return RefreshStats(added=added, updated=updated, removed=removed, unchanged=unchanged,
                            missing=tuple(missing))

    @staticmethod
    def _drop(conn: Any, label: str) -> None:
        conn.execute("DELETE FROM sections_fts WHERE rowid IN (SELECT id FROM sections WHERE path = ?)", (label,))
        conn.execute("DELETE FROM sections WHERE path = ?", (label,))
        conn.execute("DELETE FROM files WHERE path = ?", (label,))

    @staticmethod
    def _add(conn: Any, label: str, path: Path, stat: os.stat_result, shared: bool) -> None:
        conn.execute("INSERT INTO files(path, mtime_ns, size, shared) VALUES (?, ?, ?, ?)",
                     (label, stat.st_mtime_ns, stat.st_size, int(shared)))
        if stat.st_size > MAX_FILE_BYTES:
            log.warning("snipara_file_skipped", path=label, size=stat.st_size, limit=MAX_FILE_BYTES)
            return
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            log.warning("snipara_file_unreadable", path=label, error=exc.strerror)
            return
        markdown = path.suffix.lower() in MARKDOWN_SUFFIXES
        for section in split_sections(text, name=path.name, markdown=markdown):
            cursor = conn.execute(
                "INSERT INTO sections(path, title, heading_path, level, line, body, tokens, shared) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (label, section.title, section.heading_path, section.level, section.line, section.body,
                 estimate_tokens(section.body), int(shared)))
            conn.execute("INSERT INTO sections_fts(rowid, heading_path, body) VALUES (?, ?, ?)",
                         (cursor.lastrowid, section.heading_path, section.body))

    # --- queries --------------------------------------------------------------------------

    def query(self, text: str, *, max_tokens: int, shared_only: bool = False, limit: int = 50) -> dict[str, Any]:
        """The sections best matching ``text`` (bm25), packed into ``max_tokens``."""
        self.refresh()
        expression = match_expression(text)
        rows: list[tuple[Any, ...]] = []
        if expression is not None:
            where = "AND s.shared = 1" if shared_only else ""
            with self.store.connect() as conn:
                rows = conn.execute(
                    f"SELECT s.path, s.heading_path, s.line, s.body, bm25(sections_fts, ?, ?) AS score "
                    f"FROM sections_fts JOIN sections s ON s.id = sections_fts.rowid "
                    f"WHERE sections_fts MATCH ? {where} ORDER BY score LIMIT ?",
                    (HEADING_WEIGHT, BODY_WEIGHT, expression, limit)).fetchall()
        packed = pack(rows, lambda r: r[3], max_tokens, overhead=lambda r: estimate_tokens(r[0] + r[1]))
        results = [{"file": r[0], "section": r[1], "line": r[2], "score": round(-r[4], 3), "content": body}
                   for r, body in packed.items]  # type: ignore[misc]
        return {"query": text, "results": results, "tokens": packed.tokens, "max_tokens": max_tokens,
                "truncated": packed.truncated, "matches": len(rows)}

    def top_sections(self, text: str, *, k: int = 3) -> list[dict[str, Any]]:
        """References (file, heading path, line) of the ``k`` best sections for ``text``, no content."""
        expression = match_expression(text)
        if expression is None:
            return []
        with self.store.connect() as conn:
            rows = conn.execute(
                "SELECT s.path, s.heading_path, s.line FROM sections_fts JOIN sections s ON s.id = sections_fts.rowid "
                "WHERE sections_fts MATCH ? ORDER BY bm25(sections_fts, ?, ?) LIMIT ?",
                (expression, HEADING_WEIGHT, BODY_WEIGHT, k)).fetchall()
        return [{"file": r[0], "section": r[1], "line": r[2]} for r in rows]

    def shared_sections(self, *, max_tokens: int) -> dict[str, Any]:
        """All sections of the ``shared`` files in document order, packed into ``max_tokens``."""
        self.refresh()
        with self.store.connect() as conn:
            rows = conn.execute("SELECT path, heading_path, line, body FROM sections WHERE shared = 1 "
                                "ORDER BY path, line").fetchall()
        packed = pack(rows, lambda r: r[3], max_tokens, overhead=lambda r: estimate_tokens(r[0] + r[1]))
        results = [{"file": r[0], "section": r[1], "line": r[2], "content": body}
                   for r, body in packed.items]  # type: ignore[misc]
        return {"results": results, "tokens": packed.tokens, "max_tokens": max_tokens, "truncated": packed.truncated}

    def sections(self, *, filter: str = "", limit: int = 200) -> dict[str, Any]:
        """The indexed sections (file, heading path, line, tokens), optionally filtered by a substring."""
        self.refresh()
        with self.store.connect() as conn:
            rows = conn.execute(
                "SELECT path, heading_path, level, line, tokens FROM sections ORDER BY path, line").fetchall()
        needle = filter.lower().strip()
        if needle:
            rows = [r for r in rows if needle in r[0].lower() or needle in r[1].lower()]
        shown = rows[:limit]
        return {"sections": [{"file": r[0], "section": r[1], "level": r[2], "line": r[3], "tokens": r[4]}
                             for r in shown],
                "total": len(rows), "shown": len(shown)}

    def search(self, pattern: str, *, max_results: int = 50, max_tokens: int) -> dict[str, Any]:
        """Lines matching the regular expression ``pattern``, with file and line number."""
        if len(pattern) > MAX_PATTERN_CHARS:
            raise ToolError(f"the pattern is {len(pattern)} characters long (limit {MAX_PATTERN_CHARS})",
                            fix="use a shorter regular expression")
        try:
            regex = re.compile(pattern, re.MULTILINE)
        except re.error as exc:
            raise ToolError(f"invalid regular expression {pattern!r}: {exc}",
                            fix="fix the pattern (Python re syntax; escape special characters with \\)") from None
        self.refresh()
        with self.store.connect() as conn:
            rows = conn.execute("SELECT path, heading_path, line, body FROM sections ORDER BY path, line").fetchall()
        matches: list[dict[str, Any]] = []
        total = 0
        for path, heading, start, body in rows:
            for offset, line in enumerate(body.split("\n")):
                if regex.search(line):
                    total += 1
                    if len(matches) < max_results:
                        matches.append({"file": path, "line": start + offset, "section": heading,
                                        "text": line.strip()[:300]})
        packed = pack(matches, lambda m: m["text"], max_tokens, overhead=lambda m: estimate_tokens(m["file"]))
        kept = [m for m, _ in packed.items]
        return {"pattern": pattern, "matches": kept, "total": total,
                "truncated": total > len(kept), "tokens": packed.tokens}
