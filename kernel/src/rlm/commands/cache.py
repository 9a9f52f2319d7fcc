"""``rlm cache stats`` and ``rlm cache clear``: look at or empty the response cache ``[rlm] cache`` names.

The cache is made by its plugin's factory (:func:`rlm.cache.open_cache`).  With no cache
configured both commands print one line naming the fix and exit 2, like every
configuration error (README: Exit codes); a cache that cannot be read (a corrupt or
unreadable file) exits 1 with the cause.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from cyclopts import Parameter


def stats(*, json_output: Annotated[bool, Parameter(name=["--json"])] = False) -> int:
    """Show the response cache: its entries, size and location (and hits/misses when it counts them).

    Parameters
    ----------
    json_output: bool
        Print JSON instead of text.
    """
    name, cache = _open()
    try:
        result = _guard(name, "read", cache.stats)
    finally:
        cache.close()
    row = {"cache": name, "location": result.location, "entries": result.entries, "bytes": result.bytes,
           "hits": result.hits, "misses": result.misses}
    if json_output:
        print(json.dumps(row, indent=2, ensure_ascii=False))
        return 0
    print(f"cache:    {name}")
    print(f"location: {result.location}")
    print(f"entries:  {result.entries}")
    print(f"size:     {_size(result.bytes)}")
    if result.hits is not None or result.misses is not None:
        hits, misses = result.hits or 0, result.misses or 0
        rate = f" ({100 * hits / (hits + misses):.0f}% hits)" if hits + misses else ""
        print(f"hits:     {hits}, misses: {misses}{rate}")
    return 0


def clear() -> int:
    """Remove every entry of the response cache (asks nothing) and say how many were removed."""
    name, cache = _open()
    try:
        removed = _guard(name, "clear", cache.clear)
        location = _guard(name, "read", cache.stats).location
    finally:
        cache.close()
    print(f"removed {removed} entr{'y' if removed == 1 else 'ies'} from cache {name!r} ({location})")
    return 0


def _open() -> tuple[str, Any]:
    from rlm.cache import configured_name, open_cache
    from rlm.cli import plugin_manager
    from rlm.config import load_config
    from rlm.errors import ConfigError
    from rlm.registry import collect

    pm = plugin_manager()
    sections = {name: reg.load() for name, reg in collect(pm, "config_section", strict=False).items()}
    config = load_config(sections=sections)
    name = configured_name(config)
    if name is None:
        installed = ", ".join(sorted(collect(pm, "cache", strict=False))) or "none installed"
        raise ConfigError(f"no response cache is configured (caches: {installed})",
                          fix='set [rlm] cache = "sqlite" in rlm.toml or RLM_CACHE=sqlite '
                              "(pip install rlm-cache-sqlite for it)")
    cache = open_cache(pm, config)
    assert cache is not None
    return name, cache


def _guard(name: str, what: str, operation: Any) -> Any:
    """``operation()``; a failure other than an RLMError becomes one line naming the cache (exit 1)."""
    from rlm.errors import RLMError

    try:
        return operation()
    except RLMError:
        raise
    except Exception as exc:  # one line, not a traceback
        raise RLMError(f"cannot {what} cache {name!r}: {type(exc).__name__}: {exc}",
                       fix="check the file's permissions, or delete the cache file to start afresh") from exc


def _size(count: int) -> str:
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{count} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} bytes"  # pragma: no cover
