"""rlm-cache-sqlite: a SQLite-backed response cache for rlm (``[rlm] cache = "sqlite"``).

The hooks are in :mod:`rlm_cache_sqlite.plugin` (cheap to import); the cache itself,
:class:`rlm_cache_sqlite.cache.SqliteCache`, is imported only when a cache is opened.
"""

__version__ = "0.1.0"
