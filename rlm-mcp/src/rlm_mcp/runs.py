"""Background agent runs: ``rlm_agent_run`` returns a run id at once, the run goes on.

Each run is an :class:`rlm.agent.AgentRunner` (model, backend and limits from
the configuration, so the configured model is the one used) driven on its
own event loop in its own daemon thread.  Whatever a run does synchronously
-- importing the backend's SDK on first use (1-2 s for openai, up to 9 s for
litellm), building its client, reading price tables, writing its trajectory
-- therefore never holds up the server's event loop: the other tools answer
while a run starts and works.  :class:`rlm.agent.AgentRunner` is made to be
driven like that (``cancel`` is safe from any thread, ``status`` is plain
reads).

:meth:`AgentRun.to_json` reports the live state while it runs and the truth
once it ended: ``completed`` (with the answer), ``failed`` (with the error)
or ``cancelled``.  :meth:`RunManager.cancel_all` (server shutdown) cancels
every run and waits for them, so each trajectory ends with its ``run_end``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from rlm.errors import RLMError
from rlm.logging import get_logger
from rlm.trajectory import new_id

log = get_logger(__name__)

#: Seconds :meth:`RunManager.cancel_all` waits for cancelled runs to write their ``run_end``.
STOP_TIMEOUT_S = 10.0


class RunError(RLMError):
    """An unknown run id, too many runs at once, or a server shutting down."""


class AgentRun:
    """One background run (mutable: owned by the manager; ``result``/``error`` are set by its thread)."""

    def __init__(self, run_id: str, task: str, finished: asyncio.Future[None]) -> None:
        self.run_id = run_id
        self.task = task
        self.runner: Any = None  # set by the run's thread once made
        self.model: str = ""
        self.started = time.time()
        self.ended: float | None = None
        self.result: Any = None
        self.error: str | None = None  # a failure before/outside the agent loop (config, backend)
        self.cancel_requested = False
        #: Done (on the server's loop) once the run's thread is over.
        self.finished = finished

    @property
    def done(self) -> bool:
        return self.finished.done()

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


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class RunManager:
    """The agent runs of one server process.

    :param make_runner: ``make_runner(max_iterations=, cost_limit=, token_budget=)`` -> AgentRunner
        (called in the run's thread).
    """

    def __init__(self, make_runner: Callable[..., Any], *, max_runs: int, keep_runs: int) -> None:
        self.make_runner = make_runner
        self.max_runs = max_runs
        self.keep_runs = keep_runs
        self.closing = False
        self._runs: OrderedDict[str, AgentRun] = OrderedDict()

    def running(self) -> list[AgentRun]:
        return [r for r in self._runs.values() if not r.done]

    async def start(self, task: str, **limits: Any) -> AgentRun:
        """Start a run in its own thread; returns once its runner is made (errors in its settings raise here)."""
        if self.closing:
            raise RunError("the server is shutting down: no new agent runs",
                           fix="start the run again once the server has been restarted")
        if len(self.running()) >= self.max_runs:
            raise RunError(f"{self.max_runs} agent runs are in progress already",
                           fix="wait for one to finish (rlm_agent_status), cancel one (rlm_agent_cancel), "
                               "or raise [plugins.mcp] max_runs")
        loop = asyncio.get_running_loop()
        run = AgentRun(new_id("run-"), task, loop.create_future())
        self._runs[run.run_id] = run  # counts against max_runs while its runner is made
        made: asyncio.Future[None] = loop.create_future()
        made.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even if nobody waits
        limits = {k: v for k, v in limits.items() if v is not None}
        thread = threading.Thread(target=self._thread_main, args=(run, limits, made, loop),
                                  name=f"rlm-agent-{run.run_id}", daemon=True)
        thread.start()
        try:
            await asyncio.shield(made)
        except asyncio.CancelledError:  # the caller gave up (shutdown): the thread stops on its own
            run.cancel_requested = True
            if run.runner is not None:
                run.runner.cancel()
            raise
        except BaseException:
            self._runs.pop(run.run_id, None)
            raise
        self._forget_old()
        log.info("agent_run_started", run_id=run.run_id, model=run.model)
        return run

    def _thread_main(self, run: AgentRun, limits: dict[str, Any], made: asyncio.Future[None],
                     loop: asyncio.AbstractEventLoop) -> None:
        """The run's thread: make the runner, then drive it on this thread's own event loop."""

        def report(exc: BaseException | None = None) -> None:
            def settle() -> None:
                if made.done():
                    return
                if exc is not None:
                    made.set_exception(exc)
                else:
                    made.set_result(None)
            try:
                loop.call_soon_threadsafe(settle)
            except RuntimeError:  # the server's loop is closed: nobody waits any more
                pass

        try:
            try:
                runner = self.make_runner(**limits)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller of start()
                run.error = f"{type(exc).__name__}: {exc}"
                report(exc)
                return
            run.runner = runner
            run.model = runner.config.model
            if run.cancel_requested:
                runner.cancel()
            report()
            asyncio.run(self._drive(run))
        except BaseException:  # a thread has nobody to raise to
            log.exception("agent_thread_crashed", run_id=run.run_id)
            if run.result is None and run.error is None:
                run.error = "the run's thread crashed (see the server's log)"
        finally:
            run.ended = run.ended or time.time()
            try:
                loop.call_soon_threadsafe(_set_done, run.finished)
            except RuntimeError:
                pass

    async def _drive(self, run: AgentRun) -> None:
        try:
            run.result = await run.runner.run(run.task)
        except asyncio.CancelledError:
            if not run.cancel_requested:
                run.error = "the run was stopped"
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
            state = run.state()
            error = run.error or (run.result.error if run.result is not None else None)
            (log.warning if state == "failed" else log.info)("agent_run_ended", run_id=run.run_id, state=state,
                                                             error=error)

    def get(self, run_id: str) -> AgentRun:
        run = self._runs.get(run_id)
        if run is None or run.runner is None:
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
        if not run.done:
            await asyncio.wait({run.finished}, timeout=timeout)

    def _forget_old(self) -> None:
        finished = [rid for rid, r in self._runs.items() if r.done]
        for rid in finished[: max(0, len(self._runs) - self.keep_runs)]:
            del self._runs[rid]

    def cancel_everything(self) -> int:
        """Refuse new runs and ask every running one to stop (returns at once); how many were running."""
        self.closing = True
        running = self.running()
        for run in running:
            run.cancel_requested = True
            if run.runner is not None:
                run.runner.cancel()
        return len(running)

    async def cancel_all(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Cancel every run and wait (up to ``timeout``) until each has ended and written its ``run_end``."""
        self.cancel_everything()
        pending = {r.finished for r in self._runs.values() if not r.done}
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        for run in self.running():
            log.warning("agent_run_not_stopped", run_id=run.run_id, waited_s=timeout,
                        note="its trajectory may lack run_end")
