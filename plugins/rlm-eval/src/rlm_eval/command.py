"""``rlm eval TASK``: generate a long-context benchmark offline, answer it with the base model and the RLM
(one ``rlm batch`` per mode), score it, print the summary and write one row per item."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated, Any, Literal

from cyclopts import Parameter


def eval_command(
    task: str,
    *,
    sizes: str = "8k,32k",
    n: Annotated[int, Parameter(name=["-n", "--n"])] = 20,
    mode: Literal["base", "rlm", "both"] = "both",
    model: str | None = None,
    sub_model: str | None = None,
    seed: int = 0,
    output: Annotated[str, Parameter(name=["--output", "-o"])] = "eval-results.jsonl",
    concurrency: int = 4,
    executor: str | None = None,
    address: str | None = None,
    env: Annotated[str | None, Parameter(name=["--env", "-e"])] = None,
    backend: str | None = None,
    cost_limit: float | None = None,
    plot: str | None = None,
    log_dir: str | None = None,
    rerun_failed: bool = False,
) -> int:
    """Long-context benchmarks from the RLM paper, generated offline: base model vs RLM.

    TASK is sniah (one needle in filler, exact match), oolong (classify and count every line; numbers
    score 0.75^|error|), pairs (pairs of users meeting a condition; F1), a comma list, or all.  Items are
    generated from --seed with their answers known.  Rows go to OUTPUT (one per task, size, mode and
    item); the summary is printed.  Re-running with the same OUTPUT resumes: it asks what has no answer
    line yet and what failed for a reason outside the model (a provider error...), never a question the
    model failed, unless --rerun-failed.  Exit codes: 0 every item
    ran (whatever its score), 1 some failed, 2 usage error, 130 interrupted.

    Parameters
    ----------
    task: str
        sniah, oolong, pairs, a comma list of them, or all.
    sizes: str
        Input lengths in tokens, comma-separated (8k, 32k, 128k, 1m...).
    n: int
        Items per task and size.
    mode: str
        base (the model alone, the whole input in one call), rlm, or both.
    model: str
        Model name.
    sub_model: str
        Model of the RLM's sub-calls.
    seed: int
        Seed of the generated items (the same seed gives the same items).
    output: str
        The JSONL file of scored rows (its batches and contexts live in OUTPUT.d/).
    concurrency: int
        Items answered at once.
    executor: str
        Where the items run: local or ray (rlm-executor-ray).
    address: str
        The executor's cluster (ray: auto, ray://host:10001).
    env: str
        REPL environment of the RLM: local, docker or wasm.
    backend: str
        Backend plugin.
    cost_limit: float
        USD the whole eval may spend, each mode's batch apart.
    plot: str
        Also draw score, cost and time vs input length to this PNG (needs rlm-eval[plot]).
    log_dir: str
        Where the trajectories are written (the dashboard opens them, grouped by batch).
    rerun_failed: bool
        On a re-run, ask again the questions the model failed too (no answer, a limit hit); their new
        answers replace the old rows.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from rlm.cli import plugin_manager
    from rlm.config import check_cli_numbers
    from rlm.core import RLM
    from rlm.errors import InputError
    from rlm.interrupts import EXIT_INTERRUPTED, Interrupts

    from rlm_eval.report import check_plot_support, plot as draw, summarize, table
    from rlm_eval.runner import MODE_SETTINGS, MODES, run_eval
    from rlm_eval.tasks import TASKS, generate, parse_size

    check_cli_numbers(concurrency=concurrency, cost_limit=cost_limit)
    tasks = list(TASKS) if task == "all" else [t.strip() for t in task.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if not tasks or unknown:
        raise InputError(f"unknown task {(unknown or [task])[0]!r}", fix=f"choose {', '.join(TASKS)} or all")
    size_labels = [s.strip() for s in sizes.split(",") if s.strip()]
    if not size_labels:
        raise InputError("--sizes is empty", fix="e.g. --sizes 8k,32k,128k")
    for label in size_labels:
        try:
            parse_size(label)
        except ValueError as exc:
            raise InputError(f"--sizes {label!r}: {exc}", fix="e.g. --sizes 8k,32k,128k,1m") from None
    if n < 1:
        raise InputError(f"-n {n}: must be at least 1")
    if plot:
        check_plot_support()
    modes = list(MODES) if mode == "both" else [mode]
    items = [item for t in tasks for label in size_labels for item in generate(t, size=label, n=n, seed=seed)]
    pm = plugin_manager()

    def make_rlm(which: str) -> Any:
        return RLM(model=model, sub_model=sub_model, environment=env, backend=backend, log_dir=log_dir,
                   session_cost_cap=cost_limit, plugin_manager=pm, **MODE_SETTINGS[which])

    make_rlm(modes[0])  # a configuration error (no backend, bad key) is reported before anything is generated
    console = Console(stderr=True)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[failed]} failed"), TimeRemainingColumn(), console=console)
    bars = {m: progress.add_task(f"{m:<4}", total=len(items), failed=0) for m in modes}
    failed = {m: 0 for m in modes}
    stop: list[Any] = []

    def advance(which: str, line: dict[str, Any]) -> None:
        failed[which] += line["status"] != "ok" and line.get("limit_hit") != "context_window"
        progress.update(bars[which], advance=1, failed=failed[which])

    async def main() -> Any:
        loop, current = asyncio.get_running_loop(), asyncio.current_task()
        stop.append(lambda: loop.call_soon_threadsafe(current.cancel))  # type: ignore[union-attr]
        with progress:
            return await run_eval(items, output, modes=modes, make_rlm=make_rlm, concurrency=concurrency,
                                  executor=executor, address=address, on_result=advance,
                                  rerun_failed=rerun_failed)

    with Interrupts(lambda: stop[0]() if stop else None):
        try:
            done_run = asyncio.run(main())
            rows, interrupted = done_run.rows, done_run.interrupted
        except (asyncio.CancelledError, KeyboardInterrupt):
            from rlm_eval.runner import batch_output, last_lines, score_rows

            interrupted = True
            rows = score_rows(items, {m: last_lines(batch_output(output, m)) for m in modes})
    cells = summarize(rows)
    print(table(cells))
    if plot and cells:
        draw(cells, plot)
        print(f"[rlm] eval: plot in {plot}", file=sys.stderr)
    done = len(rows)
    print(f"[rlm] eval: {done} of {len(items) * len(modes)} rows in {output} (trajectories: rlm logs, rlm visualize)",
          file=sys.stderr)
    if interrupted or done < len(items) * len(modes):
        print(f"rlm: eval stopped early; run the same command again to resume ({output})", file=sys.stderr)
        return EXIT_INTERRUPTED if interrupted else 1
    return 1 if any(r["status"] != "ok" and not r["overflow"] for r in rows) else 0
