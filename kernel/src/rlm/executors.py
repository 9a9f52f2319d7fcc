"""Batch executors: where the items of a batch run (the ``rlm_register_executors`` extension point).

An executor gets a :class:`BatchJob` and answers its items, calling ``job.finish(item, result)``
once per item as it ends.  The kernel's :class:`LocalExecutor` (``local``, the default) runs them
as asyncio tasks of this process, sharing the driver's :class:`~rlm.core.RLM`.

A remote executor (``ray``, from ``rlm-executor-ray``) runs each item in another process with the
pieces here, so every remote executor keeps the same guarantees:

- :func:`worker_spec` is the driver's effective configuration, made for a worker: the worker
  builds its own RLM from it (:class:`WorkerHost`), so its sandboxes start where it runs;
- trajectories come back in ``result.events`` and :meth:`BatchJob.finish_remote` writes them
  through the *driver's* sinks (``rlm logs`` and the dashboard see them; a worker has no sinks);
- :class:`CostLeases` holds the batch's cost cap across processes: before an item is sent it is
  leased a share of what is left of the driver's ``session_cost_cap``, which it runs under as its
  own cap; its real cost is settled when it comes back, and an item whose worker died is charged
  its whole lease (what it spent is unknown).  The leases never add up to more than the cap.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs
from attrs import define, field

from rlm.budget import BudgetNode, Reservation
from rlm.errors import ConfigError, InputError, PluginError, RLMError
from rlm.types import CompletionResult, ToolSpec

#: Environment variables a worker is given by default (:func:`provider_environment`): provider keys
#: and endpoints, which backends read when they start.
PROVIDER_ENV = re.compile(r"^[A-Z][A-Z0-9_]*_(API_KEY|API_BASE|BASE_URL|API_VERSION|ORGANIZATION)$|^SNIPARA_[A-Z_]+$")


@define(frozen=True, kw_only=True)
class BatchJob:
    """A batch handed to an executor.

    :ivar rlm: the driver's RLM: its configuration, plugins, session budget and trajectory sinks.
    :ivar items: the items to answer (those already done are not here).
    :ivar concurrency: items running at once, at most.
    :ivar batch_id: written in every item's ``run_start`` (the dashboard groups a batch by it).
    :ivar on_result: called with ``(item, result)`` once per item that ended.
    """

    rlm: Any
    items: Sequence[Any]
    concurrency: int
    batch_id: str
    on_result: Callable[[Any, CompletionResult], None]

    def finish(self, item: Any, result: CompletionResult) -> None:
        """An item ended in this process (its trajectory was written as it ran)."""
        self.on_result(item, result)

    def finish_remote(self, item: Any, result: CompletionResult) -> None:
        """An item ended in another process: its trajectory (``result.events``) is written through the
        driver's sinks first, then it is reported like any other."""
        write_events(self.rlm, result.events)
        self.on_result(item, result)


@runtime_checkable
class BatchExecutor(Protocol):
    """What ``factory(config=RLMConfig, address=str | None)`` returns (``rlm_register_executors``)."""

    async def run(self, job: BatchJob) -> None:
        """Answer every item of ``job``, at most ``job.concurrency`` at once, calling ``job.finish`` (or
        ``job.finish_remote``) for each as it ends, on the event loop's thread.  An item's own failure is
        a failed :class:`CompletionResult`, never an exception; cancelled (Ctrl-C), stop what runs and
        re-raise.  Raise :class:`rlm.errors.RLMError` when the executor itself cannot work (a cluster
        that cannot be reached)."""
        ...

    async def aclose(self) -> None:
        """Release what :meth:`run` started (a cluster it started itself)."""
        ...


def failed_result(error: RLMError | str, *, started: float, error_type: str | None = None) -> CompletionResult:
    """A result for an item that did not run (a bad per-item limit, a dead worker)."""
    return CompletionResult(response="", trajectory_id="", error=str(error),
                            error_type=error_type or (type(error).__name__ if isinstance(error, RLMError)
                                                      else "ExecutorError"),
                            answer_source="error", duration_ms=round((time.monotonic() - started) * 1000, 3))


async def answer_item(rlm: Any, item: Any, *, batch_id: str, session_budget: BudgetNode | None = None
                      ) -> CompletionResult:
    """Answer one batch item with ``rlm`` (drawing on ``session_budget`` when given, else on the RLM's own);
    an error of the item's own (a bad limit, a bad schema) is a failed result, not an exception."""
    started = time.monotonic()
    try:
        return await rlm._complete(item.prompt, system=item.system, context=item.load_context(),
                                   response_format=item.response_format, overrides=item.limits, batch_id=batch_id,
                                   session_budget=session_budget)
    except RLMError as exc:
        return failed_result(exc, started=started)


class LocalExecutor:
    """``local``: the items run as asyncio tasks in this process, on the driver's RLM (one session
    budget: the batch's cost cap is exact)."""

    def __init__(self, *, config: Any = None, address: str | None = None) -> None:
        if address:
            raise ConfigError(f"--address {address!r}: the local executor runs in this process",
                              fix="drop --address, or pick a cluster executor: --executor ray")

    async def run(self, job: BatchJob) -> None:
        semaphore = asyncio.Semaphore(job.concurrency)

        async def one(item: Any) -> None:
            async with semaphore:
                result = await answer_item(job.rlm, item, batch_id=job.batch_id)
            job.finish(item, result)

        await gather_or_cancel(one(item) for item in job.items)

    async def aclose(self) -> None:
        return None


async def gather_or_cancel(coros: Iterable[Awaitable[Any]]) -> None:
    """Run ``coros`` concurrently to the end; when one raises or the caller is cancelled (Ctrl-C), the
    others are cancelled and waited for before the exception goes on."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def open_executor(pm: Any, name: str, config: Any, *, address: str | None = None) -> BatchExecutor:
    """Make the executor ``name`` (``local``, ``ray``...) with ``factory(config=, address=)``.

    An unknown name is a :class:`ConfigError` naming the installed ones and the distribution to install;
    a factory that fails with anything but an :class:`RLMError` is a :class:`PluginError` naming the plugin.
    """
    from rlm.registry import collect

    found = collect(pm, "executor")
    reg = found.get(name)
    if reg is None:
        installed = ", ".join(sorted(found)) or "none"
        raise ConfigError(f"executor {name!r} is not installed (installed: {installed})",
                          fix=f"pip install rlm-executor-{name}" if name == "ray"
                          else "pick an installed executor with --executor")
    executor = reg.make(config=config, address=address, fix="check its [plugins.*] settings and --address")
    if not isinstance(executor, BatchExecutor):
        raise PluginError(f"executor {name!r} from plugin {reg.plugin!r} made a {type(executor).__name__}, "
                          "which has no async run(job) and aclose()", fix="report it to the plugin's authors")
    return executor


# --- for executors that run items in other processes ------------------------------------------


@define(frozen=True, kw_only=True)
class WorkerSpec:
    """What a worker needs to build the driver's RLM: its effective configuration (without trajectory
    sinks: the driver writes; ``session_cost_cap`` stays, so a capped batch still needs a price, but each
    item draws on its lease instead), its system prompt and tools, the environment variables forwarded
    to it (:func:`provider_environment`) and the driver's working directory."""

    config: Any
    system_prompt: str | None = None
    tools: tuple[ToolSpec, ...] = ()
    env: Mapping[str, str] = field(factory=dict, repr=lambda env: f"<{len(env)} variables>")
    #: the driver's working directory: a worker that has it (a local cluster, a shared file system) works
    #: there, so relative paths (``allowed_paths = ["."]``) mean what they mean on the driver
    cwd: str | None = None


def worker_spec(rlm: Any, *, env: Mapping[str, str] | None = None) -> WorkerSpec:
    """The driver RLM ``rlm`` as a :class:`WorkerSpec`; ``env`` defaults to :func:`provider_environment`."""
    config = attrs.evolve(rlm.config, trajectory_sinks=(), log_dir=os.path.abspath(rlm.config.log_dir))
    return WorkerSpec(config=config, system_prompt=rlm.system_prompt, tools=tuple(rlm.extra_tools),
                      env=provider_environment() if env is None else dict(env), cwd=os.getcwd())


def provider_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The provider keys and endpoints set here (``*_API_KEY``, ``*_BASE_URL``, ``*_API_BASE``...,
    ``SNIPARA_*``): backends on a worker read them when they start."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if PROVIDER_ENV.match(k)}


class WorkerHost:
    """The driver's RLM rebuilt in a worker process (a Ray actor holds one): made from a :class:`WorkerSpec`
    on first use, on the worker's event loop, and kept for the items that follow, which may run
    concurrently.  Each item draws on a budget node of its own whose limit is its lease."""

    def __init__(self, spec: WorkerSpec, *, plugin_manager: Any = None) -> None:
        self.spec = spec
        self.plugin_manager = plugin_manager
        self._rlm: Any = None
        os.environ.update(spec.env)
        if spec.cwd and os.path.isdir(spec.cwd) and os.getcwd() != spec.cwd:
            os.chdir(spec.cwd)  # the worker process serves this driver only

    async def answer(self, item: Any, *, batch_id: str, lease: float | None) -> CompletionResult:
        """Answer ``item`` under ``lease`` USD (None: no cap); the result carries the trajectory's events."""
        from rlm.core import RLM

        started = time.monotonic()
        if self._rlm is None:
            try:
                self._rlm = RLM(config=self.spec.config, system_prompt=self.spec.system_prompt,
                                tools=self.spec.tools, plugin_manager=self.plugin_manager)
            except RLMError as exc:  # a plugin missing on this worker, a config it cannot validate
                return failed_result(exc, started=started)
        budget = BudgetNode(name="session", cost_limit=lease, cost_limit_name="session_cost_cap")
        return await answer_item(self._rlm, item, batch_id=batch_id, session_budget=budget)

    async def aclose(self) -> None:
        rlm, self._rlm = self._rlm, None
        if rlm is not None:
            await rlm.aclose()


@define(kw_only=True, eq=False)
class Lease:
    """USD held on the driver's session budget for one item sent away (``amount`` None: no cap)."""

    amount: float | None
    reservation: Reservation
    closed: bool = False


class CostLeases:
    """The batch's cost cap held across processes, on the driver's session budget node.

    :meth:`take` leases an item ``remaining / free slots`` of what the cap leaves (at most its own
    per-run ``cost_limit``); the item runs with the lease as its session cap, so it cannot spend more.
    :meth:`settle` charges what it reports; :meth:`forfeit` charges the whole lease (a worker that
    died, an item cancelled in flight: what it spent is unknown).  Synchronous, on the driver's loop.
    """

    #: a share smaller than this fraction of ``cap / slots`` waits for a lease in flight to settle
    MIN_SHARE = 0.05

    def __init__(self, session: BudgetNode, *, slots: int) -> None:
        self.session = session
        self.slots = max(1, slots)
        self.outstanding = 0
        self._settled = asyncio.Event()

    async def acquire(self, run_cost_limit: float | None = None) -> Lease:
        """:meth:`take`, but while the share left is too small to be of use and other leases are in
        flight, wait for one of them to settle first (it may give back what it did not spend)."""
        while True:
            lease = self.take(run_cost_limit)
            limit = self.session.cost_limit
            small = lease.amount is not None and limit is not None and \
                lease.amount < min(run_cost_limit or math.inf, limit / self.slots * self.MIN_SHARE)
            if not small or self.outstanding <= 1:
                return lease
            self._release(lease)
            self._settled.clear()
            await self._settled.wait()

    def take(self, run_cost_limit: float | None = None) -> Lease:
        remaining = self.session.remaining_cost()
        amount: float | None = None
        if not math.isinf(remaining):
            amount = max(0.0, remaining) / max(1, self.slots - self.outstanding)
            if run_cost_limit is not None:
                amount = min(amount, run_cost_limit)
        self.outstanding += 1
        return Lease(amount=amount, reservation=self.session.reserve(0, amount or 0.0))

    def settle(self, lease: Lease, result: CompletionResult) -> None:
        """Charge what the item reports (a cost that is not a finite non-negative number: the whole lease)."""
        cost = result.total_cost_usd
        if not isinstance(cost, (int, float)) or isinstance(cost, bool) or not math.isfinite(cost) or cost < 0:
            cost = lease.amount or 0.0
        tokens = result.total_tokens
        tokens = tokens if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0 else 0
        self._close(lease, tokens=tokens, cost=float(cost))

    def forfeit(self, lease: Lease) -> None:
        """Charge the whole lease (what the item spent is unknown)."""
        self._close(lease, tokens=0, cost=lease.amount or 0.0)

    def _close(self, lease: Lease, *, tokens: int, cost: float) -> None:
        if lease.closed:
            return
        self._release(lease, tokens=tokens, cost=cost)
        self._settled.set()

    def _release(self, lease: Lease, *, tokens: int = 0, cost: float = 0.0) -> None:
        lease.closed = True
        self.outstanding -= 1
        self.session.settle(lease.reservation, tokens=tokens, cost=cost)


def run_cost_limit(config: Any, item: Any) -> float | None:
    """The per-run cost limit an item runs under (its own, else the configuration's)."""
    value = item.limits.get("cost_limit", config.cost_limit)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def write_events(rlm: Any, events: Sequence[Mapping[str, Any]]) -> None:
    """Write a trajectory made elsewhere through ``rlm``'s sinks and its ``rlm_trajectory_event`` hook
    (as :class:`rlm.trajectory.Recorder` would have); events that are not mappings with a text ``type``
    and ``trajectory_id`` are dropped."""
    from rlm.trajectory import Recorder

    good = [e for e in events if isinstance(e, Mapping) and isinstance(e.get("type"), str)
            and isinstance(e.get("trajectory_id"), str) and e["trajectory_id"]]
    if not good:
        return
    recorder = Recorder(trajectory_id=good[0]["trajectory_id"], sinks=rlm.trajectory_sinks(), hook=rlm.pm.hook,
                        keep=False)
    try:
        for event in good:
            recorder.dispatch(dict(event))
    finally:
        recorder.close()


def check_address(address: str | None) -> None:
    """An ``--address`` that is blank or holds a control character is an :class:`InputError`."""
    if address is not None and (not address.strip() or any(ord(c) < 32 for c in address)):
        raise InputError(f"--address {address!r} is not an address",
                         fix="give auto, host:port or ray://host:10001 (or leave it unset for a local cluster)")
