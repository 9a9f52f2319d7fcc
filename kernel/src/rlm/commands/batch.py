"""``rlm batch INPUT.jsonl -o OUTPUT.jsonl``: many prompts, answered concurrently (:mod:`rlm.batch`)."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated, Any, Literal

from cyclopts import Parameter

from rlm.commands.config import with_config_option


@with_config_option
def batch(
    input: str,
    *,
    output: Annotated[str, Parameter(name=["--output", "-o"])],
    concurrency: int = 4,
    cost_limit: float | None = None,
    model: Annotated[str | None, Parameter(name=["--model", "-m"])] = None,
    sub_model: str | None = None,
    env: Annotated[str | None, Parameter(name=["--env", "-e"])] = None,
    backend: Annotated[str | None, Parameter(name=["--backend", "-b"])] = None,
    protocol: Literal["auto", "tools", "repl"] | None = None,
    log_dir: str | None = None,
    executor: str | None = None,
    address: str | None = None,
    config: Annotated[str | None, Parameter(name=["--config", "-c"])] = None,
) -> int:
    """Answer every prompt of a JSONL file; each result is appended to OUTPUT as it ends.

    Input lines: {"prompt": ..., "id": ..., "system": ..., "response_format": {...}, "token_budget": ...,
    "cost_limit": ..., "max_turns": ..., "timeout": ...} (only prompt is required).  Re-running with the
    same OUTPUT skips the ids already answered there.  Exit codes: 0 every item answered, 1 some failed,
    2 usage or input error, 130 interrupted (what finished stays in OUTPUT).

    Parameters
    ----------
    input: str
        The JSONL file of prompts.
    output: str
        The JSONL file results are appended to (keyed by id; the input's position is "index").
    concurrency: int
        Items answered at once.
    cost_limit: float
        USD the whole batch may spend, across all items (needs the model's price).
    model: str
        Model name.
    sub_model: str
        Model of the sub-calls.
    env: str
        REPL environment: local, docker or wasm.
    backend: str
        Backend plugin.
    protocol: str
        tools, repl or auto.
    log_dir: str
        Where the trajectories are written.
    executor: str
        Where the items run: local (this process, the default) or ray (a Ray cluster; pip install
        rlm-executor-ray).
    address: str
        The cluster of the executor (ray: auto, host:6379 or ray://host:10001; unset: a local Ray
        cluster started for this batch).
    config: str
        Read this rlm.toml (or an rlm-runtime 2.x one) instead of the one found from the current directory.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from rlm.batch import read_items, run_batch
    from rlm.cli import plugin_manager
    from rlm.config import check_cli_numbers
    from rlm.core import RLM
    from rlm.interrupts import EXIT_INTERRUPTED, Interrupts

    check_cli_numbers(concurrency=concurrency, cost_limit=cost_limit)
    items = read_items(input)
    rlm = RLM(model=model, sub_model=sub_model, environment=env, backend=backend, protocol=protocol,
              log_dir=log_dir, session_cost_cap=cost_limit, plugin_manager=plugin_manager())
    stop: list[Any] = []
    totals = {"failed": 0, "cost": 0.0}
    progress = Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[failed]} failed, ${task.fields[cost]:.4f}"), TimeRemainingColumn(),
                        console=_stderr_console(), transient=False)

    async def main() -> Any:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        stop.append(lambda: loop.call_soon_threadsafe(task.cancel))  # type: ignore[union-attr]
        bar = progress.add_task("batch", total=len(items), failed=0, cost=0.0)

        def advance(line: dict[str, Any]) -> None:
            totals["failed"] += line["status"] != "ok"
            totals["cost"] += line.get("total_cost_usd") or 0.0
            progress.update(bar, advance=1, failed=totals["failed"], cost=totals["cost"])

        try:
            with progress:
                summary = await run_batch(rlm, items, output, concurrency=concurrency, executor=executor,
                                          address=address, on_result=advance)
                progress.update(bar, completed=summary.ok + summary.failed + summary.skipped)
                return summary
        finally:
            await rlm.aclose()

    with Interrupts(lambda: stop[0]() if stop else None):
        try:
            summary = asyncio.run(main())
        except (asyncio.CancelledError, KeyboardInterrupt):
            print(f"rlm: batch cancelled; what finished is in {output}", file=sys.stderr)
            return EXIT_INTERRUPTED
    cost = "unknown cost" if summary.cost_usd is None else f"${summary.cost_usd:.4f}"
    print(f"[rlm] batch {summary.batch_id}: {summary.ok} answered, {summary.failed} failed, "
          f"{summary.skipped} already done, {cost}; results in {output}", file=sys.stderr)
    if summary.interrupted:
        print(f"rlm: batch cancelled; what finished is in {output}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 1 if summary.failed else 0


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)
