"""``rlm agent``: run a task autonomously (observe -> think -> act) until FINAL; the answer on stdout."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated, Literal

from cyclopts import Parameter

from rlm.commands.config import with_config_option


@with_config_option
def agent(
    task: str,
    *,
    max_iterations: Annotated[int | None, Parameter(name=["--max-iterations", "-i"])] = None,
    cost_limit: float | None = None,
    token_budget: Annotated[int, Parameter(name=["--token-budget", "--budget", "-t"])] = 50_000,
    timeout: float | None = None,
    env: Annotated[str | None, Parameter(name=["--env", "-e"])] = None,
    model: Annotated[str | None, Parameter(name=["--model", "-m"])] = None,
    sub_model: str | None = None,
    temperature: float | None = None,
    backend: Annotated[str | None, Parameter(name=["--backend", "-b"])] = None,
    max_depth: Annotated[int | None, Parameter(name=["--max-depth", "-d"])] = None,
    protocol: Literal["auto", "tools", "repl"] | None = None,
    auto_context: bool = False,
    context_budget: int | None = None,
    log_dir: str | None = None,
    config: Annotated[str | None, Parameter(name=["--config", "-c"])] = None,
    json_output: Annotated[bool, Parameter(name=["--json"])] = False,
    verbose: Annotated[bool, Parameter(name=["--verbose", "-v"])] = False,
) -> int:
    """Run an autonomous agent: it explores, runs code and delegates until it calls FINAL.

    Live progress (iteration, tokens, cost, current action) goes to stderr; the answer to stdout.
    Ctrl-C cancels the run cleanly.  Exit codes as for `rlm run`; 130 when cancelled.

    Parameters
    ----------
    task: str
        What to do.
    max_iterations: int
        Observe-think-act cycles (default 10, hard cap 50).
    cost_limit: float
        USD for the run (default 2.0 when the model's price is known, cap 10).
    token_budget: int
        Tokens for the run (--budget: rlm-runtime 2.x's name).
    timeout: float
        Seconds for the whole run (default 300, cap 600).
    env: str
        REPL environment: local, docker or wasm.
    model: str
        Model name.
    sub_model: str
        Model of the sub-calls (default: the model; RLM_SUB_MODEL).
    temperature: float
        Sampling temperature of every model call (default: the provider's).
    backend: str
        Backend plugin.
    max_depth: int
        Sub-call nesting (default 4, cap 5).
    protocol: str
        tools, repl or auto.
    auto_context: bool
        Put the context provider's text for the task (rlm-snipara) into the system prompt before the
        first turn (off by default; rlm-runtime 2.x had it on).
    context_budget: int
        Tokens of that context (default 2000).
    log_dir: str
        Where the trajectory is written.
    config: str
        Read this rlm.toml (or an rlm-runtime 2.x one) instead of the one found from the current directory.
    json_output: bool
        Print the result as JSON.
    verbose: bool
        Print each step on stderr.
    """
    from rlm.agent import AgentRunner
    from rlm.cli import plugin_manager
    from rlm.interrupts import EXIT_INTERRUPTED, Interrupts
    from rlm.commands.run import report
    from rlm.config import check_cli_numbers
    from rlm.progress import ProgressPrinter

    check_cli_numbers(timeout=timeout, cost_limit=cost_limit, token_budget=token_budget,  # nan/inf/negative:
                      max_iterations=max_iterations, max_depth=max_depth,  # one line, exit 2
                      context_budget=context_budget)
    pm = plugin_manager()
    runner = AgentRunner(model=model, environment=env, backend=backend, max_iterations=max_iterations,
                         cost_limit=cost_limit, token_budget=token_budget, timeout=timeout, max_depth=max_depth,
                         plugin_manager=pm, protocol=protocol, log_dir=log_dir, sub_model=sub_model,
                         temperature=temperature, auto_context=auto_context, context_budget=context_budget)
    progress = ProgressPrinter(stream=sys.stderr, verbose=verbose, max_iterations=runner.max_iterations)
    pm.register(progress, name="rlm-cli-progress")

    async def main() -> object:
        try:
            return await runner.run(task)
        finally:
            await runner.aclose()

    try:
        with Interrupts(runner.cancel):  # first Ctrl-C: a clean cancel; second: exit 130 at once
            result = asyncio.run(main())
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("rlm: cancelled", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        pm.unregister(progress)
        progress.finish()
    cost = "unknown cost" if result.total_cost is None else f"${result.total_cost:.4f}"
    summary = (f"[rlm] {result.answer_source} after {result.iterations} iteration(s), {result.total_tokens} tokens, "
               f"{cost}, {result.duration_ms / 1000:.1f}s; trajectory: {runner.config.log_dir}/{result.trajectory_id}.jsonl")
    return report(result, answer=result.answer, summary=summary, json_output=json_output)
