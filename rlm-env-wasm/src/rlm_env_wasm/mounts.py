"""Which host directories the guest sees: ``allowed_paths`` read-only, ``writable_paths`` writable.

Each directory appears inside the guest at its own absolute host path, so a
path the model was told about (``/home/me/project/data.csv``) opens unchanged.
Nothing else of the host exists for the guest: no ``/etc``, no ``/tmp``.  WASI
resolves every path inside one of these preopened directories and refuses
``..`` and symlinks that lead out of it.  Paths that are not existing
directories (files, missing paths) are skipped with a log line.  Writable
directories are bounded by the session's write quota, which the host enforces
after each cell (:class:`rlm_repl.session.GuestSession`).
"""

from __future__ import annotations

import os

from rlm.environment import EnvironmentSettings
from rlm.logging import get_logger

from rlm_env_wasm.instance import Preopen

log = get_logger(__name__)


def preopens_for(settings: EnvironmentSettings, *, enabled: bool = True) -> list[Preopen]:
    """The directories to preopen for ``settings`` (none when ``enabled`` is False)."""
    if not enabled:
        return []
    chosen: dict[str, bool] = {}
    for path, writable in [(p, False) for p in settings.allowed_paths] + [(p, True) for p in settings.writable_paths]:
        guest = os.path.abspath(path)
        if not os.path.isdir(guest):
            log.info("wasm_preopen_skipped", path=guest, reason="not an existing directory")
            continue
        chosen[guest] = chosen.get(guest, False) or writable
    return [Preopen(host=path, guest=path, writable=writable) for path, writable in sorted(chosen.items())]
