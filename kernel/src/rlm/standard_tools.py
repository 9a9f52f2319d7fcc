"""The kernel's standard tools (registered by ``rlm.builtin.tools``).

``execute_code`` (through the configured environment plugin), ``file_read``
and ``list_files`` (confined to ``allowed_paths``), and the sub-LLM tools
``rlm_sub_complete`` / ``rlm_batch_complete`` (only when sub-calls are on).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from rlm.tools import tool
from rlm.trajectory import escape_surrogates

MAX_READ_CHARS = 100_000
MAX_LIST_ENTRIES = 1000


@tool
async def execute_code(code: str, ctx) -> dict:
    """Run Python in the persistent sandboxed REPL and return its output.

    Args:
        code: Python source. State (variables, functions, imports) persists between calls.
    """
    result = await ctx.execute(code)
    if result.final is not None:
        final = result.final
        if isinstance(final.value, str) and escape_surrogates(final.value) is not final.value:
            # e.g. FINAL_VAR of a file name that is not UTF-8: the answer must be printable
            final = attrs.evolve(final, value=escape_surrogates(final.value))
        ctx.finish(final)
    out: dict = {"output": result.output}
    if result.notice is not None:
        out["notice"] = result.notice
    if result.value is not None:
        out["value"] = result.value
    if result.error is not None:
        out["error"] = result.error
    if result.truncated:
        out["truncated"] = True
    if result.final is not None:
        out["final"] = final.value
    return out


@tool
def file_read(path: str, ctx, offset: int = 0, max_chars: int = MAX_READ_CHARS) -> dict:
    """Read a window of a UTF-8 text file inside the allowed paths.

    Returns the text, the byte offset it starts at, ``next_offset`` (pass it as ``offset`` to read
    on), the file's size in bytes and ``truncated`` (more follows).

    Args:
        path: File path, relative to the working directory or absolute inside an allowed path.
        offset: Byte offset to start at (0: the beginning); negative counts from the end (-2000: the last 2000 bytes).
        max_chars: Most characters to return (at most 100000).
    """
    from rlm.errors import ToolError

    real = _resolve(path, ctx.config.allowed_paths, os.path.isfile)
    if not os.path.isfile(real):
        raise _not_there(path, real, "file")
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise ToolError(f"offset must be an integer number of bytes, not {offset!r}")
    max_chars = max(1, min(int(max_chars), MAX_READ_CHARS))
    with _open_confined(path, real) as fh:
        size = os.fstat(fh.fileno()).st_size
        start = offset if offset >= 0 else max(0, size + offset)
        if start > size:
            raise ToolError(f"offset {offset} is past the end of {path!r} ({size} bytes)",
                            fix=f"use an offset from 0 to {size}, or a negative one to count from the end")
        fh.seek(start)
        raw = fh.read(max_chars * 4 + 4)  # the window only: at most 4 bytes a character
    skip = 0
    while start > 0 and skip < 3 and skip < len(raw) and 0x80 <= raw[skip] < 0xC0:
        skip += 1  # start on a character, not inside one
    start += skip
    # surrogateescape keeps a byte count exact even for invalid UTF-8; shown as U+FFFD below
    text = raw[skip:].decode("utf-8", "surrogateescape")[:max_chars]
    data = text.encode("utf-8", "surrogateescape")
    next_offset = start + len(data)
    return {"path": path, "content": data.decode("utf-8", "replace"), "offset": start, "next_offset": next_offset,
            "size": size, "truncated": next_offset < size}


def _not_there(path: str, real: str, wanted: str) -> Exception:
    """The ToolError for ``path`` (confined to ``real``) that is not the ``wanted`` "file"/"directory"."""
    from rlm.errors import ToolError

    if not os.path.lexists(real):
        return ToolError(f"{path!r} does not exist", fix="list_files shows what there is")
    if os.path.isdir(real):
        return ToolError(f"{path!r} is a directory, not a file", fix="list it with list_files")
    return ToolError(f"{path!r} is not a {wanted}" if wanted == "directory" else f"{path!r} is not a regular file")


def _open_confined(path: str, real: str):
    """``real`` (a confined, fully resolved path) opened for reading, refusing what may have taken its
    place since it was checked: a symbolic link (not followed) or anything but a regular file (a FIFO
    would block the read)."""
    import errno
    import stat

    from rlm.errors import ToolError

    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(real, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ToolError(f"{path!r} became a symbolic link while it was being read",
                            fix="read the file it points to by its own path") from None
        raise ToolError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ToolError(f"{path!r} is not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


_BYTE_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")


def _resolve(path: str, allowed: Sequence[str], exists: Callable[[str], bool]) -> str:
    """The confined real path of ``path``; a name as :func:`list_files` shows it (``caf\\xe9.txt``
    for a name that is not UTF-8 on disk) is found too, when no file has the literal name."""
    from rlm.paths import confine

    real = confine(path, allowed)
    if exists(real) or "\\x" not in path:
        return real
    raw = _BYTE_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), path.encode("utf-8", "surrogateescape"))
    candidate = confine(os.fsdecode(raw), allowed)
    return candidate if exists(candidate) else real


#: Told to the model when a listing holds names that are not valid UTF-8.
ESCAPED_NAMES_NOTICE = ("names shown with \\xNN are not valid UTF-8 on disk (NN: the byte); "
                        "pass them to file_read or list_files exactly as shown")


@tool
def list_files(ctx, path: str = ".", pattern: str = "*", recursive: bool = False) -> dict:
    """List files inside the allowed paths (at most 1000 entries; ``truncated`` says when more match).

    Hidden (dot) files are listed; an entry whose real location is outside the allowed paths (a
    symbolic link out) is left out, and a recursive listing does not descend into one.

    Args:
        path: Directory to list.
        pattern: Shell-style pattern for names, e.g. "*.csv".
        recursive: Descend into sub-directories.
    """
    from rlm.errors import ToolError
    from rlm.paths import inside, roots

    if os.path.isabs(pattern) or ".." in pattern.replace("\\", "/").split("/") or "/" in pattern:
        raise ToolError(f"pattern {pattern!r} may only match names, not paths",
                        fix="pass the directory as path= and a name pattern like '*.csv'")
    base = _resolve(path, ctx.config.allowed_paths, os.path.isdir)
    if not os.path.isdir(base):
        if not os.path.lexists(base):
            raise ToolError(f"{path!r} does not exist", fix="list its parent directory to see what there is")
        raise ToolError(f"{path!r} is not a directory", fix="read a file with file_read")
    allowed_roots = roots(ctx.config.allowed_paths)
    entries: list[str] = []
    escaped = False

    def done(truncated: bool) -> dict:
        out: dict = {"path": escape_surrogates(path), "entries": entries, "truncated": truncated}
        if escaped:
            out["notice"] = ESCAPED_NAMES_NOTICE
        return out

    if recursive:
        walker: Any = os.walk(base)
    else:
        top = next(os.walk(base), None)
        if top is None:
            raise ToolError(f"cannot read the directory {path!r}", fix="check its permissions")
        walker = [top]
    for directory, dirs, files in walker:
        dirs[:] = [d for d in dirs if inside(os.path.join(directory, d), allowed_roots)]
        for name in sorted(files) + [d + "/" for d in sorted(dirs)]:
            full = os.path.join(directory, name.rstrip("/"))
            if fnmatch.fnmatch(name.rstrip("/"), pattern) and inside(full, allowed_roots):
                if len(entries) >= MAX_LIST_ENTRIES:
                    return done(True)  # one more than the limit: the listing is cut
                # a name that is not UTF-8 on disk holds lone surrogates: escape it, or nothing can encode it
                entry = os.path.relpath(full, base) + ("/" if name.endswith("/") else "")
                shown = escape_surrogates(entry)
                escaped = escaped or shown is not entry
                entries.append(shown)
    return done(False)


@tool
async def rlm_sub_complete(query: str, ctx, system: str | None = None, max_tokens: int | None = None,
                           context: str | None = None, context_query: str | None = None) -> str:
    """Delegate a focused sub-problem to a fresh sub-LLM call with its own context and part of your budget.

    Args:
        query: The sub-problem, self-contained.
        system: Optional system prompt for the sub-call.
        max_tokens: Token budget to ask for (you get at most half of what you have left).
        context: Text the sub-call needs (it sees nothing else).
        context_query: Words to look up in the project's documentation; what is found is added to the
            sub-call's context (needs a context provider, e.g. rlm-snipara).
    """
    return await ctx.sub_complete(query, system=system, max_tokens=max_tokens, context=context,
                                  context_query=context_query)


@tool
async def rlm_batch_complete(queries: list[str], ctx, max_parallel: int | None = None) -> list:
    """Run several independent sub-LLM calls in parallel; they share one budget.

    Args:
        queries: Self-contained sub-problems.
        max_parallel: How many run at once.
    """
    return await ctx.batch_complete(queries, max_parallel=max_parallel)
