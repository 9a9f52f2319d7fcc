"""Batches: many prompts from a JSONL file, answered concurrently, each result written as it ends.

Input: one JSON object per line: ``prompt`` (required), optional ``id`` (default: the line number),
``system``, ``response_format``, the item's input as ``context`` (text) or ``context_file`` (a UTF-8
file read when the item runs, at most :data:`MAX_CONTEXT_BYTES`; the REPL's ``context`` variable) and
per-item limits (:data:`ITEM_LIMITS`: ``token_budget``, ``cost_limit``, ``max_turns``, ``timeout``).  Output: one JSON object per finished item, appended
and flushed as it ends (so a killed batch keeps what it finished), keyed by ``id`` with the input's
``index``, ``status`` (``ok`` or ``failed``), the answer, usage, cost, limit hit, error, trajectory
id, batch id, the depth the run reached and its sub-calls.  Re-running with the same output file skips the ids already ``ok`` there (resumption); a
failed item is tried again and its new line follows the old one (readers take an id's last line).

The batch's ``cost_limit`` is one cap across all items: it is the RLM's ``session_cost_cap``, which
every run's reservations draw from (:mod:`rlm.budget`), so concurrent items cannot overspend it
together (a remote executor leases it out: :class:`rlm.executors.CostLeases`).  An item that fails
(a rejected request, no answer, a limit) fails alone.  Where the items run is the executor's business
(:mod:`rlm.executors`: ``local``, or ``ray`` from rlm-executor-ray); every run of a batch has its
``batch_id`` in ``run_start``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from attrs import define, field

from rlm.errors import InputError
from rlm.trajectory import new_id
from rlm.types import CompletionResult

#: Per-item limits an input line may set (they override the batch's configuration for that item).
ITEM_LIMITS = ("token_budget", "cost_limit", "max_turns", "timeout")
#: A line of the input longer than this is refused (a prompt this long belongs in a file it names).
MAX_LINE_BYTES = 8 * 1024 * 1024
#: Input lines at most.
MAX_ITEMS = 1_000_000
#: A ``context_file`` larger than this is refused (the item fails alone).
MAX_CONTEXT_BYTES = 256 * 1024 * 1024
#: What a batch id looks like (``b-`` and 12 hex digits); another value in an output file is ignored.
BATCH_ID = re.compile(r"b-[0-9a-f]{12}")


@define(frozen=True, kw_only=True)
class BatchItem:
    """One input line."""

    id: str
    index: int
    prompt: str
    system: str | None = None
    response_format: Mapping[str, Any] | None = None
    limits: Mapping[str, Any] = field(factory=dict)
    context: str | None = None
    context_file: str | None = None

    def load_context(self) -> str | None:
        """The item's input: ``context``, or ``context_file`` read now (an :class:`InputError` when it cannot
        be read, is larger than :data:`MAX_CONTEXT_BYTES` or is not UTF-8)."""
        if self.context_file is None:
            return self.context
        try:
            with open(self.context_file, "rb") as fh:
                data = fh.read(MAX_CONTEXT_BYTES + 1)
        except OSError as exc:
            raise InputError(f"item {self.id!r}: cannot read its context_file {self.context_file!r}: {exc.strerror}",
                             fix="give a readable file (on a cluster: one every worker can see)") from None
        if len(data) > MAX_CONTEXT_BYTES:
            raise InputError(f"item {self.id!r}: context_file is larger than {MAX_CONTEXT_BYTES >> 20} MiB",
                             fix="split the input into several items")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"item {self.id!r}: context_file is not UTF-8 text ({exc.reason} at byte {exc.start})",
                             fix="convert the file to UTF-8") from None


@define(frozen=True, kw_only=True)
class BatchSummary:
    """What a batch did: items answered, failed, skipped (already ok in the output), cost, and whether
    it was interrupted before the end."""

    ok: int = 0
    failed: int = 0
    skipped: int = 0
    cost_usd: float | None = 0.0
    interrupted: bool = False
    batch_id: str | None = None


def read_items(path: str | os.PathLike[str]) -> list[BatchItem]:
    """The items of a JSONL input file; a line that is not a JSON object with a text ``prompt``, a duplicate
    id or an unknown field is an :class:`InputError` naming the line."""
    known = {"id", "prompt", "system", "response_format", "context", "context_file", *ITEM_LIMITS}
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
            system, fmt = data.get("system"), data.get("response_format")
            context, context_file = data.get("context"), data.get("context_file")
            if any(v is not None and not isinstance(v, str) for v in (system, context, context_file)) \
                    or (fmt is not None and not isinstance(fmt, dict)):
                raise InputError(f"{where}: system, context and context_file must be text and response_format "
                                 "an object")
            if context is not None and context_file is not None:
                raise InputError(f"{where}: give context or context_file, not both")
            if context_file is not None:  # relative to the input file, so a batch directory can move
                context_file = os.path.join(os.path.dirname(os.path.abspath(path)), context_file)
            items.append(BatchItem(id=item_id, index=len(items), prompt=data["prompt"], system=system,
                                   response_format=fmt, context=context, context_file=context_file,
                                   limits={k: data[k] for k in ITEM_LIMITS if data.get(k) is not None}))
            if len(items) > MAX_ITEMS:
                raise InputError(f"{path}: more than {MAX_ITEMS} items", fix="split the batch")
    return items


def _ends_with_newline(path: str | os.PathLike[str]) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def output_lines(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The result objects of an existing output file, in file order (none for a missing file); a torn
    line (a kill mid-write), a line over :data:`MAX_LINE_BYTES` or a foreign one (no ``id``) is skipped.
    A file that cannot be read is an :class:`InputError`."""
    try:
        with open(path, "rb") as fh:
            for raw in iter(lambda: fh.readline(MAX_LINE_BYTES + 1), b""):
                try:
                    data = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue  # a line cut by a kill, or not ours
                if isinstance(data, dict) and "id" in data:
                    yield data
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InputError(f"cannot read the batch output {str(path)!r}: {exc.strerror}") from None


def read_output(path: str | os.PathLike[str]) -> tuple[set[str], str | None]:
    """What an existing output file says: the ids whose last line says ``ok``, and the batch id of its
    lines (None for a new file)."""
    last: dict[str, str] = {}
    batch_id: str | None = None
    for data in output_lines(path):
        last[str(data["id"])] = str(data.get("status"))
        found = data.get("batch_id")
        if batch_id is None and isinstance(found, str) and BATCH_ID.fullmatch(found):
            batch_id = found
    return {item_id for item_id, status in last.items() if status == "ok"}, batch_id


def done_ids(path: str | os.PathLike[str]) -> set[str]:
    """The ids whose last line in an existing output file says ``ok``."""
    return read_output(path)[0]


def result_line(item: BatchItem, result: Any, *, batch_id: str | None = None) -> dict[str, Any]:
    """The output object of an item from its CompletionResult."""
    return {"id": item.id, "index": item.index, "status": "ok" if result.success else "failed",
            "response": result.response, "parsed": result.parsed, "error": result.error,
            "error_type": result.error_type, "limit_hit": result.limit_hit, "total_tokens": result.total_tokens,
            "total_cost_usd": result.total_cost_usd, "duration_ms": result.duration_ms,
            "trajectory_id": result.trajectory_id or None, "batch_id": batch_id, **call_tree(result.events)}


def call_tree(events: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """``depth`` (the deepest call the run reached, 0: the top call only) and ``sub_calls`` (how many
    sub-calls it made), from a run's events."""
    depths = [e.get("depth") for e in events if isinstance(e, Mapping)]
    depth = max((d for d in depths if isinstance(d, int) and not isinstance(d, bool)), default=0)
    sub_calls = sum(1 for e in events if isinstance(e, Mapping) and e.get("type") == "call_start")
    return {"depth": depth, "sub_calls": sub_calls}


async def run_batch(rlm: Any, items: Sequence[BatchItem], output: str | os.PathLike[str], *,
                    concurrency: int = 4, executor: str | None = None, address: str | None = None,
                    on_result: Callable[[dict[str, Any]], None] | None = None) -> BatchSummary:
    """Answer ``items`` with ``rlm`` on the executor ``executor`` (default: ``[rlm] executor``, ``local``;
    :mod:`rlm.executors`), at most ``concurrency`` at once, appending each result to ``output`` as it ends;
    ids already ok there are skipped, and a resumed batch keeps its batch id.  Cancelled (Ctrl-C): what
    finished stays written and the summary says ``interrupted``."""
    from rlm.executors import BatchJob, check_address, open_executor

    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InputError(f"--concurrency {concurrency!r}: must be a whole number of at least 1")
    check_address(address)
    done, batch_id = read_output(output)
    batch_id = batch_id or new_id("b-")
    todo = [item for item in items if item.id not in done]
    counts = {"ok": 0, "failed": 0}
    cost: list[float | None] = [0.0]
    runner = open_executor(rlm.pm, executor or rlm.config.executor, rlm.config, address=address)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with open(output, "a", encoding="utf-8") as sink:
        if sink.tell() and not _ends_with_newline(output):
            sink.write("\n")  # a line torn by a kill stays apart from the first new one

        def finished(item: BatchItem, result: CompletionResult) -> None:
            line = result_line(item, result, batch_id=batch_id)
            counts[line["status"]] += 1
            item_cost = line["total_cost_usd"]
            cost[0] = None if cost[0] is None or item_cost is None else cost[0] + item_cost
            sink.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
            sink.flush()
            if on_result is not None:
                on_result(line)

        job = BatchJob(rlm=rlm, items=todo, concurrency=concurrency, batch_id=batch_id, on_result=finished)
        interrupted = False
        try:
            await runner.run(job)
        except asyncio.CancelledError:
            interrupted = True
        finally:
            await runner.aclose()
    return BatchSummary(ok=counts["ok"], failed=counts["failed"], skipped=len(items) - len(todo), cost_usd=cost[0],
                        interrupted=interrupted, batch_id=batch_id)
