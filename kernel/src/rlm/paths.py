"""Confinement of file access to ``allowed_paths``.

A path is allowed when its real location (symlinks resolved) lies inside
one of the allowed roots.  Relative paths are taken from the first root.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from rlm.errors import ToolError


def roots(allowed: Sequence[str]) -> list[str]:
    return [os.path.realpath(os.path.abspath(os.path.expanduser(p))) for p in allowed]


def inside(path: str, allowed_roots: Sequence[str]) -> bool:
    real = os.path.realpath(path)
    return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in allowed_roots)


def confine(path: str, allowed: Sequence[str]) -> str:
    """The real path of ``path`` if it is inside ``allowed``; else a ToolError saying so."""
    if "\x00" in path:
        raise ToolError(f"{path!r} holds a NUL character, which no file name can",
                        fix="pass the path without it")
    if not path.isascii() and any(0xD800 <= ord(c) <= 0xDFFF and not 0xDC80 <= ord(c) <= 0xDCFF for c in path):
        raise ToolError(f"{path!r} holds a lone surrogate, which no file name can",
                        fix="pass the path as valid text (a byte that is not UTF-8 is written \\xNN)")
    allowed_roots = roots(allowed)
    if not allowed_roots:
        raise ToolError("file access is disabled (allowed_paths is empty)",
                        fix="add a directory to [rlm] allowed_paths")
    candidate = path if os.path.isabs(path) else os.path.join(allowed_roots[0], path)
    if not inside(candidate, allowed_roots):
        raise ToolError(
            f"{path!r} is outside the allowed paths ({', '.join(allowed_roots)})",
            fix="use a path inside them, or add its directory to [rlm] allowed_paths",
        )
    return os.path.realpath(candidate)
