"""Background agent runs: ``rlm_agent_run`` returns a run id at once, the run goes on.

Each run is an :class:`rlm.agent.AgentRunner` (model, backend and limits from
the configuration, so the configured model is the one used) driven by an
asyncio task.  :meth:`RunManager.status` reports the live state while it runs
and the truth once it ended: ``completed`` (with the answer), ``failed``
(with the error) or ``cancelled``.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from rlm.errors import RLMError
from rlm.logging import get_logger
from rlm.trajectory import new_id

log = get_logger(__name__)


class RunError(RLMError):
    """An unknown run id, or too many runs at once."""


class AgentRun:
    """One background run (mutable: owned by the manager)."""

    def __init__(self, run_id: str, task: str, runner: Any) -> None:
        self.run_id = run_id
        self.task = task
        self.runner = runner
        self.model: str = runner.config.model
        self.started = time.time()
        self.ended: float | None = None
        self.result: Any = None
        self.error: str | None = None  # a failure before/outside the agent loop (config, backend)
        self.cancel_requested = False
        self.future: asyncio.Task[None] | None = None

    @property
    def done(self) -> bool:
        return self.future is not None and self.future.done()

    def state(self) -> str:
        if self.result is not None:
            source = self.result.answer_source
            return "cancelled" if source == "cancelled" else ("failed" if source == "error" else "completed")
        if self.error is not None:
            return "failed"
        if self.done:
            return "cancelled" if self.cancel_requested else "failed"
        return "running"

    def to_json(self) -> dict[str, Any]:
        state = self.state()
        data: dict[str, Any] = {"run_id": self.run_id, "state": state, "task": self.task, "model": self.model}
        if self.result is not None:
            r = self.result
            data.update(answer=r.answer, answer_source=r.answer_source, iterations=r.iterations,
                        total_tokens=r.total_tokens, total_cost_usd=r.total_cost, duration_s=round(r.duration_ms / 1000, 3),
                        forced_termination=r.forced_termination, limit_hit=r.limit_hit, error=r.error,
                        trajectory_id=r.trajectory_id)
        else:
            live = self.runner.status
            data.update(iteration=live.iteration, max_iterations=live.max_iterations, total_tokens=live.tokens,
                        total_cost_usd=live.cost, last_action=live.last_action,
                        duration_s=round((self.ended or time.time()) - self.started, 3),
                        trajectory_id=live.trajectory_id)
            if self.error is not None:
                data["error"] = self.error
            elif state == "cancelled":
                data["error"] = "the run was cancelled"
        return data


class RunManager:
    """The agent runs of one server process.

    :param make_runner: ``make_runner(max_iterations=, cost_limit=, token_budget=)`` -> AgentRunner.
    """

    def __init__(self, make_runner: Callable[..., Any], *, max_runs: int, keep_runs: int) -> None:
        self.make_runner = make_runner
        self.max_runs = max_runs
        self.keep_runs = keep_runs
        self._runs: OrderedDict[str, AgentRun] = OrderedDict()

    def running(self) -> list[AgentRun]:
        return [r for r in self._runs.values() if not r.done]

    def start(self, task: str, **limits: Any) -> AgentRun:
        if len(self.running()) >= self.max_runs:
            raise RunError(f"{self.max_runs} agent runs are in progress already",
                           fix="wait for one to finish (rlm_agent_status), cancel one (rlm_agent_cancel), "
                               "or raise [plugins.mcp] max_runs")
        runner = self.make_runner(**{k: v for k, v in limits.items() if v is not None})
        run = AgentRun(new_id("run-"), task, runner)
        run.future = asyncio.get_running_loop().create_task(self._drive(run), name=f"rlm-agent-{run.run_id}")
        self._runs[run.run_id] = run
        self._forget_old()
        log.info("agent_run_started", run_id=run.run_id, model=run.model)
        return run

    async def _drive(self, run: AgentRun) -> None:
        try:
            run.result = await run.runner.run(run.task)
        except asyncio.CancelledError:
            if not run.cancel_requested:
                raise
        except RLMError as exc:
            run.error = str(exc)
        except Exception as exc:
            log.exception("agent_run_crashed", run_id=run.run_id)
            run.error = f"{type(exc).__name__}: {exc}"
        finally:
            run.ended = time.time()
            try:
                await run.runner.aclose()
            except Exception as exc:  # noqa: BLE001
                log.warning("agent_close_failed", run_id=run.run_id, error=str(exc))
            log.info("agent_run_ended", run_id=run.run_id, state=run.state())

    def get(self, run_id: str) -> AgentRun:
        run = self._runs.get(run_id)
        if run is None:
            raise RunError(f"no agent run with id {run_id!r}",
                           fix="use the run_id rlm_agent_run returned (finished runs are forgotten after "
                               f"{self.keep_runs} newer ones; runs do not survive a server restart)")
        return run

    def cancel(self, run_id: str) -> AgentRun:
        run = self.get(run_id)
        if not run.done:
            run.cancel_requested = True
            run.runner.cancel()
        return run

    async def wait(self, run: AgentRun, timeout: float) -> None:
        if run.future is not None and not run.future.done():
            await asyncio.wait({run.future}, timeout=timeout)

    def _forget_old(self) -> None:
        finished = [rid for rid, r in self._runs.items() if r.done]
        for rid in finished[: max(0, len(self._runs) - self.keep_runs)]:
            del self._runs[rid]

    async def cancel_all(self) -> None:
        for run in self.running():
            run.cancel_requested = True
            run.runner.cancel()
        pending = [r.future for r in self._runs.values() if r.future is not None and not r.future.done()]
        if pending:
            await asyncio.wait(pending, timeout=10)
