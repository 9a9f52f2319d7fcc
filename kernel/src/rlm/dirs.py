"""Where rlm keeps files between runs: the one cache-directory helper of every distribution.

:func:`cache_dir` is ``$RLM_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/rlm``
when that is set, else the platform's user cache directory for ``rlm``
(from :mod:`platformdirs`):

- Linux and other Unixes: ``~/.cache/rlm`` (what rlm always used, so
  nothing cached before is downloaded again);
- macOS: ``~/Library/Caches/rlm``;
- Windows: ``%LOCALAPPDATA%\\rlm\\Cache``.

:func:`data_dir` is the same for data that is not a cache (``$RLM_DATA_DIR``,
else ``$XDG_DATA_HOME/rlm``, else the platform's user data directory).

Both only compute a path: nothing is created.  :mod:`platformdirs` is
imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The application name in the platform's directories.
APP_NAME = "rlm"
#: Overrides the cache directory (rlm's own files go straight into it, without an ``rlm`` level).
CACHE_ENV = "RLM_CACHE_DIR"
#: Overrides the data directory.
DATA_ENV = "RLM_DATA_DIR"


def cache_dir(*parts: str) -> Path:
    """rlm's cache directory, joined with ``parts`` (e.g. ``cache_dir("models")``); see the module docstring."""
    return _base(CACHE_ENV, "XDG_CACHE_HOME", "user_cache_dir").joinpath(*parts)


def data_dir(*parts: str) -> Path:
    """rlm's data directory, joined with ``parts``; see the module docstring."""
    return _base(DATA_ENV, "XDG_DATA_HOME", "user_data_dir").joinpath(*parts)


def _base(own: str, xdg: str, platform_function: str) -> Path:
    explicit = os.environ.get(own, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    # platformdirs honours $XDG_* on Linux only; it stays an override everywhere, as it always was
    xdg_home = os.environ.get(xdg, "").strip()
    if xdg_home:
        return Path(xdg_home).expanduser() / APP_NAME
    import platformdirs  # first use only: `rlm --help` does not pay for it

    return Path(getattr(platformdirs, platform_function)(APP_NAME, appauthor=False)).expanduser()
