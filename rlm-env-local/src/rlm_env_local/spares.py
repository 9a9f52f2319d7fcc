"""Pre-started workers: a session claims a worker that already did its imports and entered its jail.

A worker's cold start is mostly the interpreter and its imports (tens of ms);
a worker started ahead of time (a *spare*) waits for ``init`` inside its OS
jail, so a session that claims one is ready as soon as ``init`` is answered.
``[plugins.env-local] spare_workers`` (default 1, 0: off) is how many spares
this process keeps.

What makes a spare safe to hand out:

* it is fresh: it was never given ``init`` nor ran any code, and it is handed
  out once (taken out of the pool under a lock), to one session only; a session
  never gives its worker back -- closing the session kills it;
* everything fixed before ``init`` -- the interpreter, the import paths, the
  working directory, the paths the jail lets it read and write, the layers
  switched off, and which directories those paths are (:class:`WorkerSpec`) -- must
  equal the claiming session's, or
  the spare is not used (it is killed and a worker is started for the session);
  the rest (limits, modules, output cap) is applied at ``init`` as for a cold
  worker;
* spares die with this process: they are killed at exit, and a spare whose
  host is gone reads the end of its input and exits; a child made by
  ``os.fork`` forgets its parent's spares (closing its copies of their pipes)
  and starts its own.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

from attrs import define

from rlm.logging import get_logger

from rlm_env_local.process import WorkerProcess

log = get_logger(__name__)


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


@define(frozen=True, kw_only=True)
class WorkerSpec:
    """What a worker process is started with, before ``init``: a spare serves only an equal spec."""

    python: str
    extra_modules: tuple[str, ...]
    cwd: str
    allowed_paths: tuple[str, ...]
    writable_paths: tuple[str, ...]
    layers_off: tuple[str, ...]
    pretend_missing: tuple[str, ...]
    #: (device, inode) of the working directory, each allowed then writable path (None: missing)
    #: when the spec was made: Landlock's rules hold the directories there when the worker entered its jail
    identity: tuple[tuple[int, int] | None, ...] = ()

    @classmethod
    def of(cls, **fields: Any) -> WorkerSpec:
        """The spec of a worker started now (``identity`` read from the paths)."""
        paths = (fields["cwd"], *fields["allowed_paths"], *fields["writable_paths"])
        return cls(**fields, identity=tuple(_identity(path) for path in paths))

    def jail(self) -> dict[str, list[str]]:
        """The worker's jail (its command line): what it may read and write, the layers switched off."""
        return {"allowed_paths": list(self.allowed_paths), "writable_paths": list(self.writable_paths),
                "layers_off": list(self.layers_off), "pretend_missing": list(self.pretend_missing)}

    def start(self) -> WorkerProcess:
        """A new worker process of this spec (OSError when it cannot be started)."""
        return WorkerProcess(python=self.python, extra_modules=self.extra_modules, cwd=self.cwd, jail=self.jail())


class SparePool:
    """The spares of this process (see the module docstring); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spares: list[tuple[WorkerSpec, WorkerProcess]] = []
        self._starting = 0
        self._closed = False

    def claim(self, spec: WorkerSpec, keep: int) -> WorkerProcess:
        """A worker for one session: a spare of ``spec`` when one is alive, else one started now
        (OSError when it cannot be); then ``keep`` spares of ``spec`` are started in the background."""
        worker: WorkerProcess | None = None
        stale: list[WorkerProcess] = []
        with self._lock:
            kept: list[tuple[WorkerSpec, WorkerProcess]] = []
            for their_spec, spare in self._spares:
                if not spare.alive or their_spec != spec or keep <= 0:
                    stale.append(spare)
                elif worker is None:
                    worker = spare
                else:
                    kept.append((their_spec, spare))
            self._spares = kept
        for spare in stale:
            spare.kill("spare not usable")
        if worker is not None:
            log.debug("spare_worker_claimed", pid=worker.pid)
        else:
            worker = spec.start()
        if keep > 0 and not self._closed:
            self._top_up(spec, keep)
        return worker

    def _top_up(self, spec: WorkerSpec, keep: int) -> None:
        with self._lock:
            wanted = keep - len(self._spares) - self._starting
            if wanted <= 0:
                return
            self._starting += wanted
        # in a thread: starting a process takes milliseconds the claiming session need not wait for
        threading.Thread(target=self._start, args=(spec, wanted), name="rlm-spare-worker", daemon=True).start()

    def _start(self, spec: WorkerSpec, count: int) -> None:
        for _ in range(count):
            try:
                spare = spec.start()
            except OSError as exc:  # the session that claims next starts its own and reports why
                log.info("spare_worker_not_started", error=str(exc))
                spare = None
            with self._lock:
                self._starting -= 1
                if spare is not None and not self._closed:
                    self._spares.append((spec, spare))
                    spare = None
            if spare is not None:  # started while the process exits
                spare.kill("exit")

    def spare_of(self, spec: WorkerSpec) -> int | None:
        """The process id of a spare waiting for ``spec`` (None: none)."""
        with self._lock:
            return next((spare.pid for their_spec, spare in self._spares if their_spec == spec), None)

    def pids(self) -> list[int]:
        """The process ids of the spares now waiting (tests, ``rlm doctor``)."""
        with self._lock:
            return [spare.pid for _spec, spare in self._spares]

    def close(self) -> None:
        """Kill every spare and start no more (at exit)."""
        with self._lock:
            spares, self._spares = self._spares, []
            self._closed = True
        for _spec, spare in spares:
            spare.kill("exit")

    def forget(self) -> None:
        """In a forked child: the spares are the parent's; close our copies of their pipes, kill nothing."""
        spares, self._spares = self._spares, []
        self._lock = threading.Lock()  # a thread of the parent may have held it at the fork
        self._starting = 0
        for _spec, spare in spares:
            spare.abandon()


#: The spares of this process.
POOL = SparePool()
atexit.register(POOL.close)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=POOL.forget)

__all__ = ["POOL", "SparePool", "WorkerSpec"]
