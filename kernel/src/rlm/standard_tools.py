"""The kernel's standard tools (registered by ``rlm.builtin.tools``).

``execute_code`` (through the configured environment plugin), ``file_read``
and ``list_files`` (confined to ``allowed_paths``), and the sub-LLM tools
``rlm_sub_complete`` / ``rlm_batch_complete`` (only when sub-calls are on).
"""

from __future__ import annotations

import fnmatch
import os

from rlm.tools import tool

MAX_READ_CHARS = 100_000
MAX_LIST_ENTRIES = 1000


@tool
async def execute_code(code: str, ctx) -> dict:
    """Run Python in the persistent sandboxed REPL and return its output.

    Args:
        code: Python source. State (variables, functions, imports) persists between calls.
    """
    env = await ctx.environment()
    result = await env.execute(code)
    ctx.emit("repl_execution", code=code, output=result.output, value=result.value, error=result.error,
             truncated=result.truncated, execution_time_ms=result.execution_time_ms, final=result.final)
    if result.final is not None:
        ctx.finish(result.final)
    out: dict = {"output": result.output}
    if result.value is not None:
        out["value"] = result.value
    if result.error is not None:
        out["error"] = result.error
    if result.truncated:
        out["truncated"] = True
    if result.final is not None:
        out["final"] = result.final.value
    return out


@tool
def file_read(path: str, ctx, offset: int = 0, max_chars: int = MAX_READ_CHARS) -> dict:
    """Read a text file inside the allowed paths.

    Args:
        path: File path, relative to the working directory or absolute inside an allowed path.
        offset: Character offset to start reading at.
        max_chars: Most characters to return.
    """
    from rlm.errors import ToolError
    from rlm.paths import confine

    real = confine(path, ctx.config.allowed_paths)
    if not os.path.isfile(real):
        raise ToolError(f"{path!r} is not a file")
    max_chars = max(1, min(max_chars, MAX_READ_CHARS))
    with open(real, encoding="utf-8", errors="replace") as fh:
        fh.seek(0)
        text = fh.read(offset + max_chars + 1)[offset:] if offset else fh.read(max_chars + 1)
    truncated = len(text) > max_chars
    return {"path": path, "content": text[:max_chars], "truncated": truncated}


@tool
def list_files(ctx, path: str = ".", pattern: str = "*", recursive: bool = False) -> dict:
    """List files inside the allowed paths.

    Args:
        path: Directory to list.
        pattern: Shell-style pattern for names, e.g. "*.csv".
        recursive: Descend into sub-directories.
    """
    from rlm.errors import ToolError
    from rlm.paths import confine, inside, roots

    if os.path.isabs(pattern) or ".." in pattern.replace("\\", "/").split("/") or "/" in pattern:
        raise ToolError(f"pattern {pattern!r} may only match names, not paths",
                        fix="pass the directory as path= and a name pattern like '*.csv'")
    base = confine(path, ctx.config.allowed_paths)
    if not os.path.isdir(base):
        raise ToolError(f"{path!r} is not a directory")
    allowed_roots = roots(ctx.config.allowed_paths)
    entries: list[str] = []
    walker = os.walk(base) if recursive else [(base, *next(os.walk(base))[1:])]
    for directory, dirs, files in walker:
        dirs[:] = [d for d in dirs if inside(os.path.join(directory, d), allowed_roots)]
        for name in sorted(files) + [d + "/" for d in sorted(dirs)]:
            full = os.path.join(directory, name.rstrip("/"))
            if fnmatch.fnmatch(name.rstrip("/"), pattern) and inside(full, allowed_roots):
                entries.append(os.path.relpath(full, base) + ("/" if name.endswith("/") else ""))
            if len(entries) >= MAX_LIST_ENTRIES:
                return {"path": path, "entries": entries, "truncated": True}
    return {"path": path, "entries": entries, "truncated": False}


@tool
async def rlm_sub_complete(query: str, ctx, system: str | None = None, max_tokens: int | None = None,
                           context: str | None = None) -> str:
    """Delegate a focused sub-problem to a fresh sub-LLM call with its own context and part of your budget.

    Args:
        query: The sub-problem, self-contained.
        system: Optional system prompt for the sub-call.
        max_tokens: Token budget to ask for (you get at most half of what you have left).
        context: Text the sub-call needs (it sees nothing else).
    """
    return await ctx.sub_complete(query, system=system, max_tokens=max_tokens, context=context)


@tool
async def rlm_batch_complete(queries: list[str], ctx, max_parallel: int | None = None) -> list:
    """Run several independent sub-LLM calls in parallel; they share one budget.

    Args:
        queries: Self-contained sub-problems.
        max_parallel: How many run at once.
    """
    return await ctx.batch_complete(queries, max_parallel=max_parallel)
