"""Running an eval: the generated items as one ``rlm batch`` per mode, then scored rows.

Every item's context is written to ``{output}.d/contexts/{id}.txt`` and each mode's batch input to
``{output}.d/{mode}.in.jsonl`` (``prompt``: the question, ``context_file``: the context); the batches
append to ``{output}.d/{mode}.jsonl``, so a re-run resumes where a killed one stopped (items are
generated again from the seed, identically).  The rows of ``output`` are rebuilt from those files
every time: one per (task, size, mode, item) with the score, what was spent, the depth reached, the
sub-calls and the trajectory id.

Modes:

- ``base``: the model alone, one call with the whole context in the prompt (the direct path with no
  size limit and no token budget).  An input larger than the model's context window is not sent (never cut to fit), and
  one the provider refuses as too long is not answered: the row says ``overflow`` and scores 0, as the
  paper's ``*``.
- ``rlm``: the RLM, with the context as the REPL variable ``context`` (the repl protocol).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from attrs import define

from rlm_eval.scoring import score
from rlm_eval.tasks import EvalItem

MODES = ("base", "rlm")
#: What each mode changes in the RLM's configuration.
MODE_SETTINGS: Mapping[str, Mapping[str, Any]] = {
    # always the direct path: one call, the context in the prompt; no token budget to speak of (a run reserves a token
    # per byte of a first prompt, so the default 100k refused every 32k-token input; the one call is
    # bounded by the model's window and max_tokens anyway, and a cost limit still applies)
    "base": {"direct_below_tokens": 2**40, "token_budget": 2**40},
    "rlm": {"direct_below_tokens": 0, "protocol": "repl"},  # the context lives in the REPL
}


def work_dir(output: str | os.PathLike[str]) -> Path:
    """Where an eval keeps its contexts and batch files: ``{output}.d``."""
    return Path(f"{output}.d")


def write_inputs(items: Sequence[EvalItem], output: str | os.PathLike[str], modes: Iterable[str]) -> dict[str, Path]:
    """Write every item's context file and one batch input per mode; the input path of each mode."""
    base = work_dir(output)
    contexts = base / "contexts"
    contexts.mkdir(parents=True, exist_ok=True)
    lines = []
    for item in items:
        path = contexts / f"{item.id}.txt"
        data = item.context.encode("utf-8")
        if not path.exists() or path.stat().st_size != len(data):
            path.write_bytes(data)
        lines.append(json.dumps({"id": item.id, "prompt": item.question,
                                 "context_file": f"contexts/{item.id}.txt"}) + "\n")
    inputs = {}
    for mode in modes:
        inputs[mode] = base / f"{mode}.in.jsonl"
        inputs[mode].write_text("".join(lines), encoding="utf-8")
    return inputs


def batch_output(output: str | os.PathLike[str], mode: str) -> Path:
    return work_dir(output) / f"{mode}.jsonl"


async def run_eval(items: Sequence[EvalItem], output: str | os.PathLike[str], *, modes: Sequence[str],
                   make_rlm: Callable[[str], Any], concurrency: int = 4, executor: str | None = None,
                   address: str | None = None, on_result: Callable[[str, dict[str, Any]], None] | None = None,
                   rerun_failed: bool = False) -> EvalRun:
    """Answer ``items`` in each of ``modes`` (one batch each, with the RLM ``make_rlm(mode)`` builds),
    then write and return the scored rows.  Cancelled (Ctrl-C): what finished is kept and scored, and the
    result says ``interrupted``.  An item whose last line is an outcome (:func:`settled`) is not asked
    again, unless ``rerun_failed`` and it failed."""
    from rlm.batch import read_items, run_batch

    inputs = write_inputs(items, output, modes)
    interrupted = False
    try:
        for mode in modes:
            done = last_lines(batch_output(output, mode))
            todo = [item for item in read_items(inputs[mode])
                    if not (item.id in done and settled(done[item.id], rerun_failed=rerun_failed))]
            rlm = make_rlm(mode)
            try:
                summary = await run_batch(rlm, todo, batch_output(output, mode),
                                          concurrency=concurrency, executor=executor, address=address,
                                          on_result=None if on_result is None else (lambda line, m=mode: on_result(m, line)))
            finally:
                await rlm.aclose()
            if summary.interrupted:
                interrupted = True
                break
    finally:
        rows = score_rows(items, {mode: last_lines(batch_output(output, mode)) for mode in modes})
        write_rows(rows, output)
    return EvalRun(rows=rows, interrupted=interrupted)


@define(frozen=True, kw_only=True)
class EvalRun:
    """The scored rows of an eval and whether it was interrupted before the end."""

    rows: list[dict[str, Any]]
    interrupted: bool = False


def settled(line: Mapping[str, Any], *, rerun_failed: bool = False) -> bool:
    """Whether an item's batch line is an outcome a re-run keeps: an answer, or a failure of the model or
    of a limit (no answer, a limit hit, an overflow).  A failure of the machinery (a provider or connection
    error, a dead worker) is asked again: re-asking the questions the model failed until they pass would
    raise the score, so those are asked again only with ``rerun_failed``."""
    if line.get("status") == "ok":
        return True
    if rerun_failed:
        return False
    error = line.get("error")
    return bool(line.get("limit_hit")) or line.get("error_type") == "ContextTooLongError" or (
        isinstance(error, str) and error.startswith("no answer"))


def last_lines(path: Path) -> dict[str, dict[str, Any]]:
    """The last line of each id in a batch output (a re-run's line replaces a failed one's)."""
    from rlm.batch import output_lines

    return {line["id"]: line for line in output_lines(path) if isinstance(line["id"], str)}


def score_rows(items: Sequence[EvalItem], lines: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (item, mode) that has an answer line, in item order then mode order."""
    rows = []
    for item in items:
        for mode, by_id in lines.items():
            line = by_id.get(item.id)
            if line is not None:
                rows.append(row(item, mode, line))
    return rows


def row(item: EvalItem, mode: str, line: Mapping[str, Any]) -> dict[str, Any]:
    """The scored row of one item's batch line."""
    # ours (the input's estimate is over the window: not sent) or the provider's (it counted more tokens
    # than we did and refused the call): either way the model never saw the input, and nothing was cut
    overflow = line.get("limit_hit") == "context_window" or line.get("error_type") == "ContextTooLongError"
    answer = line.get("response") if isinstance(line.get("response"), str) else ""
    duration = line.get("duration_ms")
    return {
        "task": item.task, "size": item.size, "target_tokens": item.target_tokens, "mode": mode, "id": item.id,
        "score": 0.0 if overflow else score(item.kind, item.answer, answer),
        "overflow": overflow, "status": line.get("status"), "error": line.get("error"),
        "expected": item.answer, "answer": answer[:2000],
        "total_tokens": line.get("total_tokens"), "total_cost_usd": line.get("total_cost_usd"),
        "duration_s": round(duration / 1000, 3) if isinstance(duration, (int, float)) else None,
        "depth": line.get("depth"), "sub_calls": line.get("sub_calls"),
        "trajectory_id": line.get("trajectory_id"), "batch_id": line.get("batch_id"),
        "meta": {k: v for k, v in item.meta.items() if isinstance(v, (str, int, float, bool))},  # not the labels
    }


def write_rows(rows: Sequence[Mapping[str, Any]], output: str | os.PathLike[str]) -> None:
    """Write ``rows`` to ``output`` whole (written to a temporary file, then moved into place)."""
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, path)
