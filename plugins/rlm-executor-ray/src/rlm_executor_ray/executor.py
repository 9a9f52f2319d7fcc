"""The ``ray`` batch executor: a pool of Ray actors, each answering several items at once.

Each actor (:class:`ItemRunner`) is a :class:`rlm.executors.WorkerHost`: it rebuilds the driver's
RLM from its effective configuration (:func:`rlm.executors.worker_spec`, sent once with ``ray.put``)
on first use and keeps it, so an item costs one Ray call, not an interpreter's worth of setup; the
item's sandbox starts in the actor's process, on the worker that runs it.  LLM calls mostly wait, so
an actor is an async actor running up to ``ceil(concurrency / actors)`` items on its event loop.
The pool has ``min(concurrency, cluster CPUs / task_cpus)`` actors of ``task_cpus`` CPUs each.
The result comes back with the trajectory's events, which the driver writes through its own sinks
(``rlm logs`` and the dashboard see them).

The batch's cost cap holds across workers through :class:`rlm.executors.CostLeases`: each item is
sent with a lease of what the cap leaves and runs under it; its real cost is settled when it returns.
An actor that dies (killed, out of memory, its node lost), or that has not answered an item by the
item's own timeout plus :data:`GRACE_S` (it is then killed), fails every item it was running: each is
charged its whole lease (what it spent is unknown) and tried again, on a new actor that takes the
dead one's place, up to ``max_item_retries`` times; Ray's own retries are off (they would rerun on
the old lease).  An item whose call raised fails alone.

Without an address rlm starts a local cluster for the batch (``ray.init``) and stops it after; with
one (``--address auto``, ``host:6379``, ``ray://host:10001``) it connects to that cluster and leaves
it running.  A Ray session already open in this process is used as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Any

from rlm.budget import HARD_CAPS
from rlm.errors import ConfigError, PluginError
from rlm.executors import (BatchJob, CostLeases, WorkerHost, failed_result, gather_or_cancel, run_cost_limit,
                           worker_spec)
from rlm.logging import get_logger
from rlm.types import CompletionResult

from rlm_executor_ray.plugin import SECTION, RayOptions

log = get_logger(__name__)

#: Seconds past an item's own timeout the driver waits before it counts the worker as dead.
GRACE_S = 60.0
#: Seconds the actors get to close their RLMs at the end of a batch before they are killed.
CLOSE_S = 30.0


def import_ray() -> Any:
    """The ``ray`` module; a clear error naming the install when it is missing."""
    try:
        import ray
    except ImportError as exc:
        raise PluginError(f"the ray executor needs Ray, which cannot be imported: {exc}",
                          fix="pip install rlm-executor-ray (it installs ray)") from exc
    return ray


class ItemRunner:
    """One actor of the pool: a :class:`WorkerHost` behind Ray's async actor interface."""

    def __init__(self, spec: Any) -> None:
        self.host = WorkerHost(spec)

    async def answer(self, item: Any, batch_id: str, lease: float | None) -> CompletionResult:
        return await self.host.answer(item, batch_id=batch_id, lease=lease)

    async def close(self) -> None:
        await self.host.aclose()


def _worker_died(ray: Any) -> tuple[type[BaseException], ...]:
    """Ray's errors for a task whose process or node went away (its item may be tried again)."""
    exc = ray.exceptions
    return tuple(getattr(exc, name) for name in ("RayActorError", "WorkerCrashedError", "NodeDiedError",
                                                 "LocalRayletDiedError", "ObjectLostError", "OutOfMemoryError",
                                                 "RaySystemError")
                 if hasattr(exc, name))


class _Pool:
    """The actors of one batch, least busy first; a dead actor's place is taken by a new one."""

    def __init__(self, make: Any, size: int) -> None:
        self.make = make
        self.actors = [make() for _ in range(size)]
        self.busy = [0] * size

    def pick(self) -> int:
        return min(range(len(self.actors)), key=self.busy.__getitem__)

    def replace(self, slot: int, dead: Any) -> None:
        if self.actors[slot] is dead:  # several items of one dead actor: replace it once
            self.actors[slot] = self.make()


class RayExecutor:
    """Runs a batch's items on a pool of Ray actors (``--executor ray``)."""

    #: the actor class (a subclass or a test may wrap it)
    runner_class: type = ItemRunner

    def __init__(self, *, config: Any, address: str | None = None) -> None:
        self.options: RayOptions = (config.plugin(SECTION) if config is not None else None) or RayOptions()
        self.address = address or self.options.address
        self._started_cluster = False

    async def _connect(self, ray: Any) -> None:
        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "WARNING",
                                  "ignore_reinit_error": True}
        if self.address is None and self.options.num_cpus is not None:
            kwargs["num_cpus"] = self.options.num_cpus
        where = self.address or "a local cluster"
        log.info("ray_connecting", address=where)
        try:
            await asyncio.to_thread(ray.init, address=self.address, **kwargs)
        except Exception as exc:  # noqa: BLE001 - ray raises ConnectionError, RuntimeError, ValueError...
            fix = ("start one (ray start --head) and pass --address auto, or drop --address for a local cluster"
                   if self.address else "check that this machine can run Ray (ray start --head shows why not)")
            if self.address and self.address.startswith("ray://"):
                fix += "; ray:// needs Ray Client: pip install 'rlm-executor-ray[client]'"
            raise ConfigError(f"cannot reach the Ray cluster at {where}: {type(exc).__name__}: {exc}",
                              fix=fix) from None
        self._started_cluster = self.address is None
        log.info("ray_connected", address=where, cpus=ray.cluster_resources().get("CPU"))

    def _pool_size(self, ray: Any, concurrency: int) -> int:
        cpus = float(ray.cluster_resources().get("CPU") or 0)
        if cpus < self.options.task_cpus:  # no actor could ever be placed: say so rather than wait
            raise ConfigError(f"[plugins.executor-ray] task_cpus = {self.options.task_cpus:g} is more than the "
                              f"{cpus:g} CPUs of the Ray cluster", fix="lower task_cpus, or add nodes to the cluster")
        return max(1, min(concurrency, int(cpus / self.options.task_cpus)))

    async def run(self, job: BatchJob) -> None:
        if not job.items:
            return
        ray = import_ray()
        await self._connect(ray)
        size = self._pool_size(ray, job.concurrency)
        per_actor = math.ceil(job.concurrency / size)
        actor = ray.remote(num_cpus=self.options.task_cpus, max_restarts=0, max_task_retries=0,
                           max_concurrency=per_actor)(self.runner_class)
        spec = ray.put(worker_spec(job.rlm, env=None if self.options.forward_env else {}))
        pool = _Pool(lambda: actor.remote(spec), size)
        log.info("ray_pool", actors=size, items_per_actor=per_actor, task_cpus=self.options.task_cpus)
        leases = CostLeases(job.rlm.session_budget, slots=job.concurrency)
        died = _worker_died(ray)
        semaphore = asyncio.Semaphore(job.concurrency)

        async def one(item: Any) -> None:
            async with semaphore:
                result, remote = await self._attempts(ray, pool, job, item, leases, died)
            (job.finish_remote if remote else job.finish)(item, result)

        try:
            await gather_or_cancel(one(item) for item in job.items)
        finally:
            await self._stop(ray, pool)

    async def _stop(self, ray: Any, pool: _Pool) -> None:
        """Close every actor's RLM (its backends' connections), then end the actors."""
        closing = [asyncio.wrap_future(a.close.remote().future()) for a in pool.actors]
        with contextlib.suppress(TimeoutError):  # an actor the cluster never placed cannot close: it is killed
            await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), CLOSE_S)
        for a in pool.actors:
            with contextlib.suppress(Exception):
                ray.kill(a, no_restart=True)

    async def _attempts(self, ray: Any, pool: _Pool, job: BatchJob, item: Any, leases: CostLeases,
                        died: tuple[type[BaseException], ...]) -> tuple[CompletionResult, bool]:
        """Run ``item`` until it returns, fails, or its actor died ``max_item_retries + 1`` times;
        the result and whether it came from a worker (with a trajectory to write)."""
        started = time.monotonic()
        tries = self.options.max_item_retries + 1
        deaths: list[str] = []
        for attempt in range(1, tries + 1):
            lease = await leases.acquire(run_cost_limit(job.rlm.config, item))
            if lease.amount is not None and lease.amount <= 0:
                leases.forfeit(lease)
                return failed_result("Session cost cap reached: the batch's cost limit is spent "
                                     "(increase --cost-limit)", started=started, error_type="BudgetExceeded"), False
            slot = pool.pick()
            runner = pool.actors[slot]
            pool.busy[slot] += 1
            ref = runner.answer.remote(item, job.batch_id, lease.amount)
            try:
                result = await asyncio.wait_for(asyncio.wrap_future(ref.future()), self._deadline(job, item))
            except asyncio.CancelledError:
                ray.cancel(ref, force=False)
                leases.forfeit(lease)
                raise
            except (TimeoutError, *died) as exc:
                if isinstance(exc, TimeoutError):  # past its own timeout and the grace: a hung worker is a dead one
                    with contextlib.suppress(Exception):
                        ray.kill(runner, no_restart=True)
                leases.forfeit(lease)
                pool.replace(slot, runner)
                deaths.append("no answer in time" if isinstance(exc, TimeoutError) else type(exc).__name__)
                log.warning("ray_worker_died", item=item.id, attempt=attempt, of=tries, error=deaths[-1])
                continue
            except Exception as exc:  # noqa: BLE001 - the item's call raised: this item fails alone
                leases.forfeit(lease)
                cause = getattr(exc, "cause", None) or exc
                return failed_result(f"the Ray task answering this item raised {type(cause).__name__}: "
                                     f"{str(cause)[:2000]}", started=started, error_type="ExecutorError"), False
            finally:
                pool.busy[slot] -= 1
            if not isinstance(result, CompletionResult):
                leases.forfeit(lease)
                return failed_result(f"the Ray task returned a {type(result).__name__}, not a CompletionResult "
                                     "(is the same rlm-kernel installed on the cluster?)",
                                     started=started, error_type="ExecutorError"), False
            leases.settle(lease, result)
            return result, True
        return failed_result(f"the Ray worker running this item died {len(deaths)} times ({', '.join(deaths)}); "
                             "raise [plugins.executor-ray] max_item_retries or check the cluster's memory",
                             started=started, error_type="ExecutorError"), False

    @staticmethod
    def _deadline(job: BatchJob, item: Any) -> float:
        """Seconds the driver waits for one item: its run's own timeout (capped at the hard cap) and
        :data:`GRACE_S` for the actor's start and the trip back."""
        timeout = item.limits.get("timeout", job.rlm.config.timeout)
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
            timeout = job.rlm.config.timeout
        return min(float(timeout), HARD_CAPS["timeout"]) + GRACE_S

    async def aclose(self) -> None:
        if self._started_cluster:
            ray = import_ray()
            self._started_cluster = False
            await asyncio.to_thread(ray.shutdown)
