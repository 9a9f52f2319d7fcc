"""Batches: many prompts from a JSONL file, answered concurrently, each result written as it ends.

Input: one JSON object per line: ``prompt`` (required), optional ``id`` (default: the line number),
``system``, ``response_format`` and per-item limits (:data:`ITEM_LIMITS`: ``token_budget``,
``cost_limit``, ``max_turns``, ``timeout``).  Output: one JSON object per finished item, appended
and flushed as it ends (so a killed batch keeps what it finished), keyed by ``id`` with the input's
``index``, ``status`` (``ok`` or ``failed``), the answer, usage, cost, limit hit, error and trajectory
id.  Re-running with the same output file skips the ids already ``ok`` there (resumption); a
failed item is tried again and its new line follows the old one (readers take an id's last line).

The batch's ``cost_limit`` is one cap across all items: it is the RLM's ``session_cost_cap``, which
every run's reservations draw from (:mod:`rlm.budget`), so concurrent items cannot overspend it
together.  An item that fails (a rejected request, no answer, a limit) fails alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from attrs import define, field

from rlm.errors import InputError, RLMError
from rlm.types import CompletionResult

#: Per-item limits an input line may set (they override the batch's configuration for that item).
ITEM_LIMITS = ("token_budget", "cost_limit", "max_turns", "timeout")
#: A line of the input longer than this is refused (a prompt this long belongs in a file it names).
MAX_LINE_BYTES = 8 * 1024 * 1024
#: Input lines at most.
MAX_ITEMS = 1_000_000


@define(frozen=True, kw_only=True)
class BatchItem:
    """One input line."""

    id: str
    index: int
    prompt: str
    system: str | None = None
    response_format: Mapping[str, Any] | None = None
    limits: Mapping[str, Any] = field(factory=dict)


@define(frozen=True, kw_only=True)
class BatchSummary:
    """What a batch did: items answered, failed, skipped (already ok in the output), cost, and whether
    it was interrupted before the end."""

    ok: int = 0
    failed: int = 0
    skipped: int = 0
    cost_usd: float | None = 0.0
    interrupted: bool = False


def read_items(path: str | os.PathLike[str]) -> list[BatchItem]:
    """The items of a JSONL input file; a line that is not a JSON object with a text ``prompt``, a duplicate
    id or an unknown field is an :class:`InputError` naming the line."""
    known = {"id", "prompt", "system", "response_format", *ITEM_LIMITS}
    items: list[BatchItem] = []
    seen: dict[str, int] = {}
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InputError(f"cannot read the batch input {str(path)!r}: {exc.strerror}",
                         fix="give a JSONL file, one {\"prompt\": ...} object per line") from None
    with fh:
        for number, raw in enumerate(iter(lambda: fh.readline(MAX_LINE_BYTES + 1), b""), start=1):
            where = f"{path}: line {number}"
            if len(raw) > MAX_LINE_BYTES:
                raise InputError(f"{where}: longer than {MAX_LINE_BYTES >> 20} MiB",
                                 fix="put the long text in a file and ask about that file")
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InputError(f"{where}: not JSON ({exc})", fix="write one JSON object per line") from None
            if not isinstance(data, dict) or not isinstance(data.get("prompt"), str) or not data["prompt"].strip():
                raise InputError(f"{where}: needs a \"prompt\" with text", fix='e.g. {"id": "q1", "prompt": "..."}')
            unknown = sorted(set(data) - known)
            if unknown:
                raise InputError(f"{where}: unknown field {unknown[0]!r}",
                                 fix=f"the fields are {', '.join(sorted(known))}")
            item_id = str(data.get("id", number))
            if item_id in seen:
                raise InputError(f"{where}: id {item_id!r} is also on line {seen[item_id]}",
                                 fix="give every line its own id")
            seen[item_id] = number
            system = data.get("system")
            fmt = data.get("response_format")
            if (system is not None and not isinstance(system, str)) or (fmt is not None and not isinstance(fmt, dict)):
                raise InputError(f"{where}: system must be text and response_format an object")
            items.append(BatchItem(id=item_id, index=len(items), prompt=data["prompt"], system=system,
                                   response_format=fmt,
                                   limits={k: data[k] for k in ITEM_LIMITS if data.get(k) is not None}))
            if len(items) > MAX_ITEMS:
                raise InputError(f"{path}: more than {MAX_ITEMS} items", fix="split the batch")
    return items


def done_ids(path: str | os.PathLike[str]) -> set[str]:
    """The ids whose last line in an existing output file says ``ok`` (a torn last line is ignored)."""
    last: dict[str, str] = {}
    try:
        with open(path, "rb") as fh:
            for raw in iter(lambda: fh.readline(MAX_LINE_BYTES + 1), b""):
                try:
                    data = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue  # a line cut by a kill, or not ours
                if isinstance(data, dict) and "id" in data:
                    last[str(data["id"])] = str(data.get("status"))
    except FileNotFoundError:
        return set()
    except OSError as exc:
        raise InputError(f"cannot read the batch output {str(path)!r}: {exc.strerror}") from None
    return {item_id for item_id, status in last.items() if status == "ok"}


def result_line(item: BatchItem, result: Any) -> dict[str, Any]:
    """The output object of an item from its CompletionResult."""
    return {"id": item.id, "index": item.index, "status": "ok" if result.success else "failed",
            "response": result.response, "parsed": result.parsed, "error": result.error,
            "error_type": result.error_type, "limit_hit": result.limit_hit, "total_tokens": result.total_tokens,
            "total_cost_usd": result.total_cost_usd, "duration_ms": result.duration_ms,
            "trajectory_id": result.trajectory_id or None}


async def run_batch(rlm: Any, items: Sequence[BatchItem], output: str | os.PathLike[str], *,
                    concurrency: int = 4, on_result: Callable[[dict[str, Any]], None] | None = None) -> BatchSummary:
    """Answer ``items`` with ``rlm`` (at most ``concurrency`` at once), appending each result to ``output``
    as it ends; ids already ok there are skipped.  Cancelled (Ctrl-C): what finished stays written and the
    summary says ``interrupted``."""
    if concurrency < 1:
        raise InputError(f"--concurrency {concurrency}: must be at least 1")
    done = done_ids(output)
    todo = [item for item in items if item.id not in done]
    counts = {"ok": 0, "failed": 0}
    cost: list[float | None] = [0.0]
    semaphore = asyncio.Semaphore(concurrency)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with open(output, "a", encoding="utf-8") as sink:

        async def one(item: BatchItem) -> None:
            async with semaphore:
                started = time.monotonic()
                try:
                    result = await rlm._complete(item.prompt, system=item.system,
                                                 response_format=item.response_format, overrides=item.limits)
                except RLMError as exc:  # a bad per-item limit, a schema error: this item fails alone, unrun
                    result = CompletionResult(response="", trajectory_id="", error=str(exc),
                                              error_type=type(exc).__name__, answer_source="error",
                                              duration_ms=round((time.monotonic() - started) * 1000, 3))
                line = result_line(item, result)
            counts[line["status"]] += 1
            item_cost = line["total_cost_usd"]
            cost[0] = None if cost[0] is None or item_cost is None else cost[0] + item_cost
            sink.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
            sink.flush()
            if on_result is not None:
                on_result(line)

        tasks = [asyncio.ensure_future(one(item)) for item in todo]
        try:
            await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return BatchSummary(ok=counts["ok"], failed=counts["failed"], skipped=len(items) - len(todo),
                                cost_usd=cost[0], interrupted=True)
    return BatchSummary(ok=counts["ok"], failed=counts["failed"], skipped=len(items) - len(todo), cost_usd=cost[0])
