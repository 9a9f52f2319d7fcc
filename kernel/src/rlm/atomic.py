"""Atomic file replacement: write a temporary file in the target's folder, then rename it over the target.

Readers see the old content or the new, never a half-written file. Standard library only, so that the
help cache (on the `rlm --help` path) can use it.
"""

from __future__ import annotations

import os
import tempfile


def replace_file(path: str | os.PathLike[str], data: bytes, *, mode: int | None = None, sync: bool = False) -> None:
    """Put ``data`` at ``path`` atomically (OSError when it cannot; no temporary file is left behind).

    :param mode: permission bits of the new file (default: ``mkstemp``'s 0600).
    :param sync: ``fsync`` the data before the rename (a file a user would lose on a crash).
    """
    folder = os.path.dirname(os.fspath(path)) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(os.fspath(path))}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
