"""The autonomous agent: ``AgentRunner`` runs observe -> think -> act until FINAL.

One conversation is kept across iterations (an iteration is one model turn
and the tools it calls).  ``FINAL(answer)`` and ``FINAL_VAR(name)`` are tools
that end the run at once (and text markers under the paper-style protocol).
The whole run has one timeout; :meth:`AgentRunner.cancel` stops it promptly,
even in the middle of a tool; :attr:`AgentRunner.status` is the live state.
When a limit is hit the model gets one forced last turn.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Mapping
from typing import Any, Literal

from attrs import define

from rlm.errors import ToolError
from rlm.events import describe, llm_action
from rlm.logging import get_logger
from rlm.budget import HARD_CAPS
from rlm.compat import AgentConfig
from rlm.tools import tool
from rlm.types import FinalSignal

log = get_logger(__name__)

#: The product text's safety limits: (default, hard cap).
LIMITS: Mapping[str, tuple[float, float]] = {
    "max_iterations": (10, 50),
    "cost_limit": (2.0, HARD_CAPS["cost_limit"]),
    "timeout": (300.0, HARD_CAPS["timeout"]),
    "max_depth": (4, HARD_CAPS["max_depth"]),
}

AnswerSource = Literal["final", "final_var", "forced", "error", "cancelled"]

AGENT_SYSTEM = """\
You are an autonomous agent working in a loop: observe (look at files and data with the tools), \
think, act (run code, delegate sub-problems), and repeat until the task is done.

Tools you can call (there are no others):
{tool_lines}

Rules:
- Python runs in a persistent sandboxed REPL: variables and imports persist between execute_code calls.
- Check your work with code before answering.
- End the run by calling FINAL(answer) with the complete answer, or FINAL_VAR(name) to answer with the \
value of a REPL variable. Nothing after FINAL is read."""

#: Tokens of provider context ``auto_context`` injects by default (it is re-sent with every model turn).
DEFAULT_CONTEXT_BUDGET = 2000

AUTO_CONTEXT_BLOCK = """\
Context retrieved automatically for this task by the context provider {provider!r} (it may be incomplete; \
check what matters with the tools):
{text}"""


@tool(name="FINAL")
async def final_tool(answer: str, ctx) -> str:
    """End the run with this answer (a complete, self-contained answer to the task).

    Args:
        answer: The final answer.
    """
    ctx.finish(FinalSignal(kind="final", value=str(answer)))
    return "accepted: the run ends with this answer"


@tool(name="FINAL_VAR")
async def final_var_tool(name: str, ctx) -> str:
    """End the run with the value of a REPL variable as the answer.

    Args:
        name: The variable's name in the REPL (set it with execute_code first).
    """
    env = await ctx.environment()
    try:
        value = await env.get_variable(name)
    except KeyError:
        context = await env.get_context()
        have = ", ".join(sorted(context)) or "none"
        raise ToolError(f"FINAL_VAR({name!r}): the REPL has no variable named {name!r} (variables: {have})",
                        fix="define it with execute_code first, or call FINAL(answer)") from None
    import json

    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    ctx.finish(FinalSignal(kind="final_var", value=text, variable=name))
    return "accepted: the run ends with this variable's value"


@define(frozen=True, kw_only=True)
class IterationSummary:
    """One observe-think-act cycle: what the model did and what it cost."""

    iteration: int
    action: str
    tokens: int
    cost: float | None
    duration_ms: float


@define(frozen=True, kw_only=True)
class AgentResult:
    """The outcome of :meth:`AgentRunner.run`."""

    answer: str
    answer_source: AnswerSource
    iterations: int
    total_tokens: int
    total_cost: float | None
    duration_ms: float
    forced_termination: bool
    run_id: str
    trajectory_id: str
    error: str | None = None
    error_type: str | None = None
    limit_hit: str | None = None
    iteration_summaries: tuple[IterationSummary, ...] = ()

    @property
    def response(self) -> str:
        """The answer (the product text's name for it)."""
        return self.answer

    @property
    def success(self) -> bool:
        """True when the run ended with an answer: FINAL/FINAL_VAR, a plain reply, or the forced last turn
        after a limit (``forced_termination`` and ``limit_hit`` say so).  rlm-runtime 2.x said False for a
        forced answer; ``success and not forced_termination`` is its meaning."""
        return self.answer_source in ("final", "final_var", "forced") and self.error is None

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data: every field, plus ``success`` (rlm-runtime 2.x's keys are all there)."""
        from rlm.trajectory import jsonable

        out: dict[str, Any] = jsonable(self)
        out["success"] = self.success
        return out


@define(frozen=True, kw_only=True)
class AgentStatus:
    """The live state of a run: ``state`` is idle, running, completed, failed or cancelled."""

    state: Literal["idle", "running", "completed", "failed", "cancelled"]
    run_id: str
    iteration: int = 0
    max_iterations: int = 0
    tokens: int = 0
    cost: float | None = 0.0
    last_action: str | None = None
    elapsed_s: float = 0.0
    trajectory_id: str | None = None


def clamp_limit(name: str, value: float | None) -> Any:
    """``value`` (or the default) clamped to the hard cap, with a warning when clamped."""
    default, cap = LIMITS[name]
    if value is None:
        return type(default)(default)
    if value > cap:
        log.warning("limit_clamped", setting=name, requested=value, cap=cap)
        return type(default)(cap)
    return value


class AgentRunner:
    """Run a task autonomously until FINAL, a limit, the timeout or :meth:`cancel`.

    :param model: model string; :param environment: REPL environment plugin.
    :param max_iterations: model turns (default 10, cap 50).
    :param cost_limit: USD for the whole run (default 2.0, cap 10); needs a known price.
    :param token_budget: tokens for the whole run (default 50000).
    :param timeout: seconds for the whole run (default 300, cap 600).
    :param max_depth: sub-call nesting (default 4, cap 5).
    :param auto_context: before the run, ask the context provider (``[rlm] context_provider``, or the only
        one installed, e.g. rlm-snipara's) for context on the task and put it in the system prompt;
        recorded as a ``context_injected`` event.  No provider: :class:`rlm.errors.ConfigError` here.
        A provider failing at run time is recorded (the event's ``error``) and the run goes on without it.
    :param context_budget: most tokens of that context (default 2000; it is re-sent with every turn).
    Other keyword arguments go to :class:`rlm.RLM` (``plugin_manager=``, ``config=``, ``backend=``...).

    rlm-runtime 2.x's form works too: ``AgentRunner(rlm, AgentConfig(...))`` (or ``config=AgentConfig(...)``)
    runs with that RLM's configuration, plugins, tools and session budget, and the AgentConfig's limits
    (:class:`rlm.compat.AgentConfig`); a limit given both as a keyword and in the AgentConfig, with two
    different values, is a ConfigError.
    """

    def __init__(self, model: Any = None, environment: Any = None, *,
                 max_iterations: int | None = None, cost_limit: float | None = None,
                 token_budget: int | None = 50_000, timeout: float | None = None, max_depth: int | None = None,
                 auto_context: bool = False, context_budget: int | None = None, **rlm_kwargs: Any) -> None:
        from rlm.config import NOT_FINITE_FIX
        from rlm.core import RLM
        from rlm.errors import ConfigError

        base: RLM | None = None
        agent_config = rlm_kwargs.pop("config") if isinstance(rlm_kwargs.get("config"), AgentConfig) else None
        if isinstance(environment, AgentConfig):  # AgentRunner(rlm, AgentConfig(...))
            if agent_config is not None:
                raise ConfigError("AgentRunner got two AgentConfigs", fix="pass one")
            agent_config, environment = environment, None
        if isinstance(model, RLM):
            base, model = model, None
            if environment is not None:
                raise ConfigError("AgentRunner(rlm, environment=...): the RLM already names its environment",
                                  fix="set environment= on the RLM, or pass model=/environment= instead of an RLM")
        if agent_config is not None:
            given = {"max_iterations": max_iterations, "cost_limit": cost_limit, "token_budget": token_budget,
                     "timeout": timeout, "max_depth": max_depth, "auto_context": auto_context,
                     "context_budget": context_budget}
            defaults = {"token_budget": 50_000, "auto_context": False}
            for key, value in agent_config.runner_arguments().items():
                if key in given:
                    mine = given[key]
                    if mine is not None and mine != defaults.get(key) and mine != value:
                        raise ConfigError(f"AgentRunner: {key} is given twice ({key}={mine!r} and "
                                          f"AgentConfig {value!r})", fix="give it once")
                    given[key] = value
                else:
                    rlm_kwargs.setdefault(key, value)
            max_iterations, cost_limit, token_budget = given["max_iterations"], given["cost_limit"], \
                given["token_budget"]
            timeout, max_depth, auto_context = given["timeout"], given["max_depth"], given["auto_context"]
            context_budget = given["context_budget"]
        if base is not None:
            if "config" in rlm_kwargs or "plugin_manager" in rlm_kwargs:
                raise ConfigError("AgentRunner(rlm, config=/plugin_manager=...): the RLM already has them",
                                  fix="pass an RLM, or config=/plugin_manager=, not both")
            rlm_kwargs.update(config=base.config, plugin_manager=base.pm)
            rlm_kwargs.setdefault("tools", base.extra_tools)
            rlm_kwargs.setdefault("system_prompt", base.system_prompt)
        for name, value in (("cost_limit", cost_limit), ("timeout", timeout)):  # inf would be clamped silently
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"keyword argument {name}: must be a finite number, got {value!r} "
                                  f"({NOT_FINITE_FIX})")
        self.max_iterations = int(clamp_limit("max_iterations", max_iterations))
        #: None: the default $2 applies once the model's price is known (see RLM.prepare_run)
        self.cost_limit = clamp_limit("cost_limit", cost_limit) if cost_limit is not None else None
        self.timeout = clamp_limit("timeout", timeout)
        depth = clamp_limit("max_depth", max_depth) if max_depth is not None else None
        self.rlm = RLM(model=model, environment=environment, max_depth=depth, token_budget=token_budget,
                       cost_limit=self.cost_limit, timeout=self.timeout, max_turns=self.max_iterations,
                       **rlm_kwargs)
        if base is not None:
            self.rlm._session_budget = base.session_budget  # its session_cost_cap covers the agent's runs too
        self.context_budget = _context_budget(context_budget)
        #: (name, provider) of the context provider when ``auto_context``, else None
        self.context_provider: tuple[str, Any] | None = self._context_provider() if auto_context else None
        self.run_id = ""
        self._run: Any = None
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state: str = "idle"
        self._started = 0.0
        self._last_action: str | None = None
        self._summaries: list[IterationSummary] = []
        self._cancel_requested = threading.Event()

    @property
    def config(self) -> Any:
        return self.rlm.config

    @property
    def auto_context(self) -> bool:
        return self.context_provider is not None

    def _context_provider(self) -> tuple[str, Any]:
        from rlm import context_providers
        from rlm.errors import ConfigError

        found = context_providers.registrations(self.rlm.pm)
        reg = context_providers.choose(self.rlm.config, found)
        if reg is None:
            message, fix = context_providers.missing_message(found, alternative="drop auto_context=True")
            raise ConfigError(f"auto_context: {message}", fix=fix)
        return reg.name, context_providers.build(reg, self.rlm.config)

    async def _with_context(self, run: Any, task: str, system: str | None) -> str | None:
        """``system`` with the provider's context for ``task`` appended; the ``context_injected`` event is
        written right after the run's ``run_start`` (the run's top call does not exist before)."""
        from rlm import context_providers

        assert self.context_provider is not None
        name, provider = self.context_provider
        text, error = "", None
        try:
            text = await asyncio.wait_for(
                context_providers.fetch(provider, name, task, max_tokens=self.context_budget),
                timeout=max(0.001, run.remaining_time()))
        except TimeoutError:
            error = f"context provider {name!r} did not answer before the run's timeout"
        except ToolError as exc:
            error = str(exc)
        if error is not None:
            log.warning("auto_context_failed", provider=name, error=error)
        fields = context_providers.event_fields(task, name, text)
        if error is not None:
            fields["error"] = error
        _emit_after_run_start(run, "context_injected", fields)
        if not text:
            return system
        block = AUTO_CONTEXT_BLOCK.format(provider=name, text=text)
        return f"{system}\n\n{block}" if system else block

    # --- live state ---------------------------------------------------------------------------

    @property
    def status(self) -> AgentStatus:
        run = self._run
        return AgentStatus(
            state=self._state,  # type: ignore[arg-type]
            run_id=self.run_id,
            iteration=run.top.turns if run is not None and run.top is not None else 0,
            max_iterations=self.max_iterations,
            tokens=run.usage.total_tokens if run is not None else 0,
            cost=run.usage.cost_usd if run is not None else 0.0,
            last_action=self._last_action,
            elapsed_s=round(time.monotonic() - self._started, 3) if self._started else 0.0,
            trajectory_id=run.trajectory_id if run is not None else None,
        )

    def _observe(self, event: Mapping[str, Any]) -> None:
        if event.get("type") == "llm_call":
            if event.get("depth") == 0:
                action = llm_action(event)
                self._last_action = action
                usage = event.get("token_usage") or {}
                self._summaries.append(IterationSummary(
                    iteration=len(self._summaries) + 1, action=action, tokens=int(usage.get("total") or 0),
                    cost=event.get("cost"), duration_ms=float(event.get("duration_ms") or 0.0)))
            return
        line = describe(event)
        if line is not None:
            self._last_action = line

    # --- control ------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop the run as soon as possible (safe from any thread); the result says "cancelled"."""
        self._cancel_requested.set()
        task, loop = self._task, self._loop
        if task is not None and loop is not None and not task.done():
            loop.call_soon_threadsafe(task.cancel)

    async def run(self, task: str, *, system: str | None = None) -> AgentResult:
        """Work on ``task`` until it is done; never raises for run-time failures (see ``answer_source``).

        A task or system prompt that is not valid text raises :class:`rlm.errors.InputError` before anything starts.
        """
        from rlm.core import check_input_text
        from rlm.prompts import tool_lines
        from rlm.trajectory import new_id

        check_input_text(task, system=system)  # before anything starts: an InputError, not a failed run
        self.run_id = new_id("agent-")
        self._started = time.monotonic()
        self._summaries = []
        self._last_action = None
        self._state = "running"
        self._loop = asyncio.get_running_loop()
        run = self.rlm.prepare_run(extra_tools=(final_tool, final_var_tool),
                                   default_cost_limit=LIMITS["cost_limit"][0])
        self._run = run
        if self.context_provider is not None:
            run.context_provider = self.context_provider  # context_query of this run's sub-calls uses it too
        run.recorder.listeners.append(self._observe)
        agent_system = AGENT_SYSTEM.format(tool_lines=tool_lines(run.tools.values()))

        async def go() -> Any:
            system_text = system if self.context_provider is None else await self._with_context(run, task, system)
            return await self.rlm.execute_run(run, task, system=system_text,
                                              system_prompt=agent_system if run.protocol == "tools" else None)

        self._task = asyncio.ensure_future(go())
        if self._cancel_requested.is_set():
            self._task.cancel()
        try:
            result = await self._task
        except asyncio.CancelledError:
            if not self._cancel_requested.is_set():
                self._state = "cancelled"
                raise  # the caller's own cancellation: let it through
            await run.close()
            self._state = "cancelled"
            return self._result_from_run(run, answer="", source="cancelled", error="the run was cancelled")
        finally:
            self._task = None
        source: AnswerSource
        if result.error:
            source = "error"
        elif result.answer_source in ("final", "final_var", "forced"):
            source = result.answer_source  # type: ignore[assignment]
        else:
            source = "final"  # the model answered in plain text: that ends the run too
        self._state = "failed" if source == "error" else "completed"
        return AgentResult(
            answer=result.response,
            answer_source=source,
            iterations=run.top.turns if run.top else 0,
            total_tokens=result.total_tokens,
            total_cost=result.total_cost_usd,
            duration_ms=result.duration_ms,
            forced_termination=source == "forced",
            run_id=self.run_id,
            trajectory_id=result.trajectory_id,
            error=result.error,
            error_type=result.error_type,
            limit_hit=result.limit_hit,
            iteration_summaries=tuple(self._summaries),
        )

    def _result_from_run(self, run: Any, *, answer: str, source: AnswerSource, error: str | None) -> AgentResult:
        if run.top is not None and not run.ended:  # a cancelled execute_run has written its own
            run.ended = True
            run.closed()
            run.emit(run.top, "run_end", response=answer, error=error, answer_source=source,
                     total_calls=run.llm_calls, cost=run.usage.cost_usd,
                     token_usage={"input": run.usage.input_tokens, "output": run.usage.output_tokens,
                                  "total": run.usage.total_tokens},
                     duration_ms=round((time.monotonic() - self._started) * 1000, 3))
        run.recorder.close()
        return AgentResult(
            answer=answer,
            answer_source=source,
            iterations=run.top.turns if run.top else 0,
            total_tokens=run.usage.total_tokens,
            total_cost=run.usage.cost_usd,
            duration_ms=round((time.monotonic() - self._started) * 1000, 3),
            forced_termination=False,
            run_id=self.run_id,
            trajectory_id=run.trajectory_id,
            error=error,
            error_type="Cancelled" if source == "cancelled" else None,
            iteration_summaries=tuple(self._summaries),
        )

    async def aclose(self) -> None:
        await self.rlm.aclose()


def _context_budget(value: Any) -> int:
    from rlm.errors import ConfigError

    if value is None:
        return DEFAULT_CONTEXT_BUDGET
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"keyword argument context_budget: must be a whole number of tokens, 1 or more, "
                          f"got {value!r}", fix=f"leave it out for {DEFAULT_CONTEXT_BUDGET} tokens")
    return value


def _emit_after_run_start(run: Any, type: str, fields: Mapping[str, Any]) -> None:
    """Write an event of the run's top call right after its ``run_start``, in order everywhere (sinks,
    observers, ``recorder.events``).  :meth:`rlm.core.RLM.execute_run` creates the top call and writes
    ``run_start`` itself: the recorder's ``emit`` is wrapped for that one event, then restored."""
    recorder = run.recorder
    original = recorder.emit

    def emit(event_type: str, **kwargs: Any) -> dict[str, Any]:
        event = original(event_type, **kwargs)
        if event_type == "run_start":
            recorder.emit = original
            if run.top is not None:
                run.emit(run.top, type, **fields)
        return event

    recorder.emit = emit


__all__ = ["AgentConfig", "AgentResult", "AgentRunner", "AgentStatus", "IterationSummary"]
