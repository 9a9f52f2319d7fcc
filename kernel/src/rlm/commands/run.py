"""``rlm run``: answer one prompt with the recursive loop; the answer on stdout."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Any, Literal

from cyclopts import Parameter

from rlm.commands.config import with_config_option


@with_config_option
def run(
    prompt: str,
    *,
    model: Annotated[str | None, Parameter(name=["--model", "-m"])] = None,
    sub_model: str | None = None,
    temperature: float | None = None,
    env: Annotated[str | None, Parameter(name=["--env", "-e"])] = None,
    backend: Annotated[str | None, Parameter(name=["--backend", "-b"])] = None,
    max_depth: Annotated[int | None, Parameter(name=["--max-depth", "-d"])] = None,
    sub_calls: Annotated[bool | None, Parameter(negative="--no-sub-calls")] = None,
    max_sub_calls: int | None = None,
    max_turns: int | None = None,
    token_budget: Annotated[int | None, Parameter(name=["--token-budget", "-t"])] = None,
    cost_limit: float | None = None,
    timeout: float | None = None,
    protocol: Literal["auto", "tools", "repl"] | None = None,
    system: Annotated[str | None, Parameter(name=["--system", "-s"])] = None,
    log_dir: str | None = None,
    config: Annotated[str | None, Parameter(name=["--config", "-c"])] = None,
    json_output: Annotated[bool, Parameter(name=["--json"])] = False,
    verbose: Annotated[bool, Parameter(name=["--verbose", "-v"])] = False,
) -> int:
    """Run a prompt: the model may run Python, read files and delegate to sub-LLM calls.

    The answer goes to stdout; progress and the run's summary go to stderr.
    Exit codes: 0 answered (also when a limit forced the answer), 1 no answer or
    the run failed, 2 usage, configuration or input error, 3 plugin error,
    4 LLM backend error, 5 sandbox error, 6 no answer because of a limit,
    130 interrupted (Ctrl-C).  A reply that is only code, empty or a short
    give-up is no answer (6 when a limit forced that reply, else 1); stderr
    says why in one line and --json has "success": false.

    Parameters
    ----------
    prompt: str
        The task.
    model: str
        Model name (default from rlm.toml / RLM_MODEL).
    sub_model: str
        Model of the sub-calls (default: the model; RLM_SUB_MODEL).
    temperature: float
        Sampling temperature of every model call (default: the provider's).
    env: str
        REPL environment: local, docker or wasm.
    backend: str
        Backend plugin (default: the one that claims the model).
    max_depth: int
        Nesting of sub-LLM calls (hard cap 5).
    sub_calls: bool
        Let the model delegate to sub-LLM calls.
    max_sub_calls: int
        Sub-calls one turn may start.
    max_turns: int
        Model turns before it must answer.
    token_budget: int
        Tokens the run may spend.
    cost_limit: float
        USD the run may spend (hard cap 10).
    timeout: float
        Seconds the run may take (hard cap 600).
    protocol: str
        tools (native tool calls), repl (code blocks + FINAL) or auto.
    system: str
        Extra system instructions.
    log_dir: str
        Where the JSONL trajectory is written.
    config: str
        Read this rlm.toml (or an rlm-runtime 2.x one) instead of the one found from the current directory.
    json_output: bool
        Print the whole result as JSON.
    verbose: bool
        Show each step on stderr.
    """
    from rlm.cli import plugin_manager
    from rlm.config import check_cli_numbers
    from rlm.core import RLM
    from rlm.interrupts import EXIT_INTERRUPTED, Interrupts
    from rlm.progress import ProgressPrinter

    check_cli_numbers(timeout=timeout, cost_limit=cost_limit, token_budget=token_budget, max_turns=max_turns,
                      max_sub_calls=max_sub_calls, max_depth=max_depth)  # nan/inf/negative: one line, exit 2
    pm = plugin_manager()
    rlm = RLM(model=model, environment=env, backend=backend, max_depth=max_depth, plugin_manager=pm,
              sub_calls=sub_calls, max_subcalls=max_sub_calls, max_turns=max_turns, token_budget=token_budget,
              cost_limit=cost_limit, timeout=timeout, protocol=protocol, log_dir=log_dir,
              verbose=verbose or None, sub_model=sub_model, temperature=temperature)
    progress = ProgressPrinter(stream=sys.stderr, verbose=verbose or rlm.config.verbose)
    pm.register(progress, name="rlm-cli-progress")
    stop: list[Any] = []

    async def main() -> Any:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        stop.append(lambda: loop.call_soon_threadsafe(task.cancel))  # type: ignore[union-attr]
        return await rlm._complete_and_close(prompt, system=system)

    try:
        with Interrupts(lambda: stop[0]() if stop else None):
            result = asyncio.run(main())
    except (asyncio.CancelledError, KeyboardInterrupt):
        progress.finish()
        print("rlm: cancelled (the trajectory ends with run_end: cancelled)", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        pm.unregister(progress)
        progress.finish()
    return report(result, answer=result.response, summary=progress.summary(result, rlm.config),
                  json_output=json_output)


def report(result: Any, *, answer: str | None, summary: str, json_output: bool) -> int:
    """Print a run's or an agent's outcome (``--json``, else the answer on stdout; the summary and any error
    on stderr) and return its exit code."""
    if json_output:
        from rlm.trajectory import jsonable

        data = jsonable(result)
        data["success"] = result.success
        print(json.dumps(data, indent=2, ensure_ascii=False))
    elif answer:
        print(answer)
    print(summary, file=sys.stderr)
    if getattr(result, "answer_source", None) == "cancelled":
        from rlm.interrupts import EXIT_INTERRUPTED

        print("rlm: cancelled", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.error:
        print(f"rlm: error: {result.error}", file=sys.stderr)
        return exit_code_for(result.error_type)
    return 0


def exit_code_for(error_type: str | None) -> int:
    """The exit code of an rlm error class name (1 for anything else)."""
    import rlm.errors as errors

    cls = getattr(errors, error_type or "", None)
    return getattr(cls, "exit_code", 1) if isinstance(cls, type) and issubclass(cls, errors.RLMError) else 1
