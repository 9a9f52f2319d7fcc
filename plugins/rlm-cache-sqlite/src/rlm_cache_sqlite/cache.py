"""The SQLite response cache: one file, many tasks, threads and processes.

- The file is opened on first use (the factory touches nothing), created with mode
  0600 in a 0700 directory: it holds prompts and answers.
- WAL journal, a busy timeout, and every operation in one short ``BEGIN IMMEDIATE``
  transaction, so readers and writers in several processes neither corrupt nor
  deadlock each other.
- The async methods run the blocking sqlite work in a thread
  (``asyncio.to_thread``); one connection per cache object, used under a lock (a
  connection inherited through ``fork`` is abandoned and a fresh one opened).
- Bounded: ``max_entries`` and ``max_bytes`` are kept by evicting the least recently
  used entries (a logical clock in the file orders uses across processes); a
  response larger than ``max_entry_bytes`` is not stored, and a stored one larger
  than it is a miss that is never loaded into memory.
- Entries, bytes, hits and misses are counted in the file (by triggers and the
  ``get`` transaction), so ``rlm cache stats`` sees what every process did.
- An entry that does not read back as a response (:func:`rlm.cache.response_from_json`
  raises) is a miss and is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlm.cache import CacheEntryError, CacheStats, response_from_json, response_to_json
from rlm.logging import get_logger

from rlm_cache_sqlite.plugin import NAME, SECTION, SqliteCacheOptions

if TYPE_CHECKING:
    from rlm.backend import LLMResponse
    from rlm.config import RLMConfig
    from rlm.doctor import Check

log = get_logger(__name__)

#: The default file name in rlm's cache directory.
FILENAME = "responses.sqlite3"
#: Connections a forked child inherited: kept referenced so that they are never closed (closing one
#: in the child could checkpoint or unlock the parent's database).
_INHERITED: list[sqlite3.Connection] = []
#: ``PRAGMA user_version`` of the schema this code writes; a file with a newer one is refused.
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    used INTEGER NOT NULL,
    created REAL NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_used ON entries(used);
CREATE TABLE IF NOT EXISTS totals (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    entries INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    clock INTEGER NOT NULL,
    hits INTEGER NOT NULL,
    misses INTEGER NOT NULL
);
INSERT OR IGNORE INTO totals (id, entries, bytes, clock, hits, misses) VALUES (1, 0, 0, 0, 0, 0);
CREATE TRIGGER IF NOT EXISTS entries_inserted AFTER INSERT ON entries BEGIN
    UPDATE totals SET entries = entries + 1, bytes = bytes + NEW.size WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS entries_deleted AFTER DELETE ON entries BEGIN
    UPDATE totals SET entries = entries - 1, bytes = bytes - OLD.size WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS entries_resized AFTER UPDATE OF size ON entries BEGIN
    UPDATE totals SET bytes = bytes - OLD.size + NEW.size WHERE id = 1;
END;
"""


def default_path() -> Path:
    """``responses.sqlite3`` in rlm's cache directory (:func:`rlm.dirs.cache_dir`)."""
    from rlm.dirs import cache_dir

    return cache_dir(FILENAME)


def options_from(config: RLMConfig) -> SqliteCacheOptions:
    """The ``[plugins.cache-sqlite]`` settings (defaults when the config was built without the section)."""
    options = config.plugin(SECTION) if config is not None else None
    return options if isinstance(options, SqliteCacheOptions) else SqliteCacheOptions()


def from_config(*, config: RLMConfig) -> SqliteCache:
    """The factory the kernel calls (``factory(config=...)``): nothing is opened yet."""
    options = options_from(config)
    path = Path(options.path).expanduser() if options.path else default_path()
    return SqliteCache(path, max_entries=options.max_entries, max_bytes=options.max_bytes,
                       max_entry_bytes=options.max_entry_bytes, busy_timeout=options.busy_timeout)


class SqliteCache:
    """A :class:`rlm.cache.ResponseCache` in one SQLite file (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], *, max_entries: int = 100_000, max_bytes: int = 512 * 2**20,
                 max_entry_bytes: int = 4 * 2**20, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_entry_bytes = min(max_entry_bytes, max_bytes)
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None

    def __repr__(self) -> str:
        return f"SqliteCache({str(self.path)!r})"

    # --- the ResponseCache interface ---

    async def get(self, key: str) -> LLMResponse | None:
        return await asyncio.to_thread(self.get_sync, key)

    async def put(self, key: str, response: LLMResponse) -> None:
        await asyncio.to_thread(self.put_sync, key, response)

    def stats(self) -> CacheStats:
        location = str(self.path)
        if not self.path.exists():
            return CacheStats(entries=0, bytes=0, location=location, hits=0, misses=0)
        with self._connection() as conn:
            entries, size, hits, misses = conn.execute(
                "SELECT entries, bytes, hits, misses FROM totals WHERE id = 1").fetchone()
        return CacheStats(entries=entries, bytes=size, location=location, hits=hits, misses=misses)

    def clear(self) -> int:
        """Remove every entry and reset the hit/miss counts; return how many entries there were."""
        if not self.path.exists():
            return 0
        with self._connection() as conn, _transaction(conn):
            removed = conn.execute("DELETE FROM entries").rowcount
            conn.execute("UPDATE totals SET entries = 0, bytes = 0, hits = 0, misses = 0 WHERE id = 1")
        with contextlib.suppress(sqlite3.Error), self._connection() as conn:  # give the space back
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return max(removed, 0)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None and self._pid == os.getpid():
                conn.close()
            elif conn is not None:
                _INHERITED.append(conn)

    # --- the blocking work (run in a thread by get/put) ---

    def get_sync(self, key: str) -> LLMResponse | None:
        """The response under ``key``: None when absent, too large or unreadable (that entry is deleted)."""
        with self._connection() as conn, _transaction(conn):
            row = conn.execute("SELECT size, CASE WHEN length(value) <= ? THEN value END FROM entries WHERE key = ?",
                               (self.max_entry_bytes, key)).fetchone()
            response = None
            if row is not None and row[1] is None:
                log.info("cache_entry_too_large", key=key[:16], size=row[0], max_entry_bytes=self.max_entry_bytes)
            elif row is not None:
                try:
                    response = response_from_json(row[1])
                except CacheEntryError as exc:
                    log.warning("cache_entry_corrupt", key=key[:16], error=str(exc)[:300], action="deleted")
                    conn.execute("DELETE FROM entries WHERE key = ?", (key,))
            if response is None:
                conn.execute("UPDATE totals SET misses = misses + 1 WHERE id = 1")
                return None
            conn.execute("UPDATE entries SET used = ? WHERE key = ?", (_tick(conn), key))
            conn.execute("UPDATE totals SET hits = hits + 1 WHERE id = 1")
            return response

    def put_sync(self, key: str, response: LLMResponse) -> None:
        """Store ``response`` under ``key`` (not when larger than ``max_entry_bytes``); evict past the bounds."""
        raw = response_to_json(response)
        if len(raw) > self.max_entry_bytes:
            log.info("cache_entry_too_large", key=key[:16], size=len(raw), max_entry_bytes=self.max_entry_bytes,
                     action="not stored")
            return
        with self._connection() as conn, _transaction(conn):
            conn.execute(
                "INSERT INTO entries (key, size, used, created, value) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET size = excluded.size, used = excluded.used, "
                "created = excluded.created, value = excluded.value",
                (key, len(raw), _tick(conn), time.time(), raw))
            self._evict(conn, keep=key)

    def _evict(self, conn: sqlite3.Connection, *, keep: str) -> None:
        entries, size = conn.execute("SELECT entries, bytes FROM totals WHERE id = 1").fetchone()
        extra_entries, extra_bytes = entries - self.max_entries, size - self.max_bytes
        if extra_entries <= 0 and extra_bytes <= 0:
            return
        doomed: list[tuple[str]] = []
        freed = 0
        for old_key, old_size in conn.execute("SELECT key, size FROM entries WHERE key != ? ORDER BY used", (keep,)):
            if len(doomed) >= extra_entries and freed >= extra_bytes:
                break
            doomed.append((old_key,))
            freed += old_size
        conn.executemany("DELETE FROM entries WHERE key = ?", doomed)
        log.debug("cache_evicted", entries=len(doomed), bytes=freed)

    # --- the connection ---

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """This object's connection (opened, and the schema made, on first use), held under the lock."""
        with self._lock:
            if self._conn is None or self._pid != os.getpid():
                if self._conn is not None:  # inherited through fork: never used, nor closed (SQLite's rule)
                    _INHERITED.append(self._conn)
                self._conn = self._open()
                self._pid = os.getpid()
            yield self._conn

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.path.exists():  # prompts and answers: readable by the owner only
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            _retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone(), self.busy_timeout)
            conn.execute("PRAGMA synchronous = NORMAL")
            with _transaction(conn):
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise sqlite3.DatabaseError(
                        f"{self.path} was written by a newer rlm-cache-sqlite (schema {version}); "
                        "upgrade rlm-cache-sqlite or point [plugins.cache-sqlite] path elsewhere")
                for statement in _statements(_SCHEMA):
                    conn.execute(statement)
                if version < SCHEMA_VERSION:
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            conn.close()
            raise
        return conn


def _statements(script: str) -> list[str]:
    """The statements of ``script`` (``executescript`` would commit the open transaction)."""
    out, buffer = [], ""
    for line in script.strip().splitlines():
        buffer += line + "\n"
        if sqlite3.complete_statement(buffer):
            out.append(buffer.strip())
            buffer = ""
    return out


def _tick(conn: sqlite3.Connection) -> int:
    """The next value of the file's logical clock (orders uses across processes for LRU eviction)."""
    conn.execute("UPDATE totals SET clock = clock + 1 WHERE id = 1")
    return conn.execute("SELECT clock FROM totals WHERE id = 1").fetchone()[0]


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One short write transaction: ``BEGIN IMMEDIATE`` takes the write lock up front (waiting up to
    the busy timeout), so two writers never deadlock upgrading a read lock."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    try:
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def _retry_busy(operation: Any, timeout: float) -> Any:
    """``operation()``, tried again while the database is locked (switching to WAL takes an exclusive lock)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return operation()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def doctor_check(config: RLMConfig) -> Iterator[Check]:
    """When ``[rlm] cache = "sqlite"``: can the cache file be opened, and what it holds."""
    from rlm.doctor import Check

    if (getattr(config, "cache", None) or "").strip() != NAME:
        return
    cache = from_config(config=config)
    if not cache.path.exists():
        yield Check(status="ok", summary=f"sqlite cache: no file yet at {cache.path} (made on the first call)")
        return
    try:
        stats = cache.stats()
    except (OSError, sqlite3.Error) as exc:
        yield Check(status="fail", summary=f"sqlite cache: cannot open {cache.path}: {exc}",
                    fix="fix its permissions, delete the file, or set [plugins.cache-sqlite] path elsewhere")
        return
    finally:
        cache.close()
    yield Check(status="ok", summary=f"sqlite cache: {stats.entries} entries, {stats.bytes} bytes at {cache.path}")
