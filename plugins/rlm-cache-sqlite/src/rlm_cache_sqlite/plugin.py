"""The hook implementations of rlm-cache-sqlite (cheap to import: attrs only, no sqlite3).

Registers the ``sqlite`` response cache (``[rlm] cache = "sqlite"``) as a ``"module:attr"``
string, its ``[plugins.cache-sqlite]`` settings and a doctor check that opens the cache file
when it is the configured cache.
"""

from __future__ import annotations

from typing import Any

import attrs
from rlm import hookimpl

#: ``[plugins.cache-sqlite]`` in rlm.toml, ``RLM_PLUGINS__CACHE_SQLITE__<KEY>`` in the environment.
SECTION = "cache-sqlite"
#: What users name in ``[rlm] cache``.
NAME = "sqlite"


def _at_least_one(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be a whole number of at least 1, got {value!r}")


def _seconds(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
        raise ValueError(f"{attribute.name} must be a number of seconds more than 0 and at most 3600, got {value!r}")


def _path(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not value.strip():
        raise ValueError(f"{attribute.name} must name a file (leave it unset for the default)")


@attrs.define(frozen=True, kw_only=True)
class SqliteCacheOptions:
    """``[plugins.cache-sqlite]``, validated by the kernel (unknown keys are errors)."""

    path: str | None = attrs.field(default=None, validator=_path, metadata={
        "help": "the cache file (unset: responses.sqlite3 in rlm's cache directory; a relative path is "
                "relative to the current directory)"})
    max_entries: int = attrs.field(default=100_000, validator=_at_least_one, metadata={
        "help": "responses kept; past it the least recently used are evicted"})
    max_bytes: int = attrs.field(default=512 * 2**20, validator=_at_least_one, metadata={
        "help": "bytes of responses kept (512 MiB); past it the least recently used are evicted"})
    max_entry_bytes: int = attrs.field(default=4 * 2**20, validator=_at_least_one, metadata={
        "help": "largest response stored (4 MiB); a larger one is not cached, a larger stored one is a miss"})
    busy_timeout: float = attrs.field(default=10.0, validator=_seconds, metadata={
        "help": "seconds to wait for another process's write lock before the cache gives up on one call"})


@hookimpl
def rlm_register_caches(register):
    register(NAME, "rlm_cache_sqlite.cache:from_config",
             description="SQLite file in rlm's cache directory (LRU-bounded; safe across processes)")


@hookimpl
def rlm_register_config_sections(register):
    register(SECTION, "rlm_cache_sqlite.plugin:SqliteCacheOptions", description="the SQLite response cache ([rlm] cache = \"sqlite\")")


@hookimpl
def rlm_register_doctor_checks(register):
    register("cache-sqlite", "rlm_cache_sqlite.cache:doctor_check")
