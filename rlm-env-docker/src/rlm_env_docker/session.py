""":class:`DockerEnvironment`: the "docker" Environment, one hardened container per session.

A :class:`rlm_repl.session.GuestSession` whose sandbox is a container.  The
session starts its container lazily (or on :meth:`DockerEnvironment.start`):
its PID 1 is the guest supervisor (:mod:`rlm_repl.supervisor`), which runs the
shared REPL server (:mod:`rlm_repl.repl_server`) as its child and kills every
process and thread a cell leaves behind; the host drives it with
:class:`rlm_repl.client.GuestClient` over the attached stdin/stdout
(:class:`rlm_env_docker.stream.AttachStream`), so variables, functions and
imports persist between executions.  ``llm_query`` calls from the code are
answered through the host's :class:`rlm.environment.HostCallbacks`.

An execution past its timeout gets ``SIGINT`` (a ``KeyboardInterrupt`` in the
code; the session and its state survive); if it does not stop within
``interrupt_grace`` seconds the container is killed and a fresh one started
(the state is lost, the result says so).  A container that dies (out of
memory, killed) is replaced the same way.  User errors come back in
``REPLResult.error``; :class:`rlm.errors.SandboxError` is raised only when the
environment cannot work (no engine, no image, a broken guest).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from typing import Any

from rlm.environment import EnvironmentSettings, HostCallbacks
from rlm.errors import SandboxError
from rlm.logging import get_logger
from rlm_repl import supervised_command
from rlm_repl.client import GuestClient, GuestClosed, GuestTimeout, Interrupt
from rlm_repl.session import GuestSession

from rlm_env_docker.config import DockerEnvConfig, options_of
from rlm_env_docker.spec import ContainerSpec, build_spec

log = get_logger(__name__)


def _abandoned(launching: asyncio.Future[Any]) -> None:
    """The launch of a start that was cancelled (a run that ended before it used its sandbox): the
    container it created once it is there is removed, off the event loop."""
    from rlm_env_docker import engine

    if launching.cancelled() or launching.exception() is not None:
        return
    launched = launching.result()
    with contextlib.suppress(OSError):
        launched.socket.close()
    log.info("docker_session_discarded", container=launched.id[:12], reason="start cancelled")
    threading.Thread(target=engine.remove, args=(launched.id,), name="rlm-docker-remove", daemon=True).start()


class _Box:
    """One running container: its id, attach stream and guest client."""

    def __init__(self, spec: ContainerSpec, container_id: str, stream: Any, client: GuestClient) -> None:
        self.spec = spec
        self.id = container_id
        self.stream = stream
        self.client = client

    @property
    def alive(self) -> bool:
        return not self.stream.eof

    async def interrupt(self) -> None:
        from rlm_env_docker import engine

        await asyncio.to_thread(engine.signal_container, self.id, "SIGINT")

    def stderr_line(self) -> str:
        lines = [line for line in self.stream.stderr_tail.splitlines() if line.strip()]
        return lines[-1].strip()[:300] if lines else ""


class DockerEnvironment(GuestSession):
    """A REPL session in a long-lived, hardened docker container."""

    name = "docker"
    noun = "sandbox container"
    bug_fix = "report this as a bug of rlm-env-docker"

    def __init__(self, *, settings: EnvironmentSettings | None = None,
                 callbacks: HostCallbacks | None = None) -> None:
        super().__init__(settings=settings, callbacks=callbacks)
        self.options: DockerEnvConfig = options_of(self.settings)

    @property
    def _box(self) -> _Box | None:
        return self._sandbox

    @property
    def container_id(self) -> str | None:
        """The id of the session's container (None when none runs)."""
        return self._sandbox.id if self._sandbox is not None else None

    # --- the sandbox --------------------------------------------------------------------------

    def _alive(self, sandbox: _Box) -> bool:
        return sandbox.alive

    def _interrupt(self, sandbox: _Box) -> Interrupt | None:
        return sandbox.interrupt

    def _grace(self) -> float:
        return self.options.interrupt_grace

    async def _stop(self, sandbox: _Box, reason: str) -> None:
        from rlm_env_docker import engine

        log.info("docker_session_discarded", container=sandbox.id[:12], reason=reason)
        sandbox.stream.close()
        await asyncio.to_thread(engine.remove, sandbox.id)

    def _stop_now(self, sandbox: _Box, reason: str) -> None:
        from rlm_env_docker import engine

        sandbox.stream.close()
        engine.remove(sandbox.id)

    async def _restart(self, sandbox: _Box, reason: str) -> None:
        """Replace the container (its removal and the new start overlap)."""
        from rlm_env_docker import engine

        log.info("docker_session_restart", container=sandbox.id[:12], reason=reason)
        sandbox.stream.close()
        if self._sandbox is sandbox:
            self._sandbox = None
        removal = asyncio.ensure_future(asyncio.to_thread(engine.remove, sandbox.id))
        try:
            await self._ensure_started()
        except SandboxError as exc:  # the next call tries again and raises
            log.warning("docker_restart_failed", error=str(exc))
        finally:
            await removal

    async def _death_reason(self, sandbox: _Box) -> str:
        from rlm_env_docker import engine

        state = await asyncio.to_thread(engine.state, sandbox.id)
        detail = sandbox.stderr_line()
        if state is not None and state.get("OOMKilled"):
            reason = f"it ran out of memory (limit {sandbox.spec.container_memory_bytes // (1024 * 1024)} MiB)"
        elif state is not None and state.get("Status") in ("exited", "dead"):
            reason = f"it exited with status {state.get('ExitCode')}"
        else:
            reason = "it was killed (out of memory, or removed from outside)"
        return f"{reason}: {detail}" if detail else reason

    async def _launch(self) -> _Box:
        from rlm_env_docker import engine
        from rlm_env_docker.stream import AttachStream

        session = uuid.uuid4().hex[:12]
        command = supervised_command(self.options.python)
        spec = build_spec(self.settings, session=session, command=command)
        started = time.perf_counter()

        def prepare() -> Any:
            engine.client()
            engine.prune_orphans_once()
            engine.ensure_image(spec.image, pull=self.options.pull)
            return engine.launch(spec)

        launching = asyncio.ensure_future(asyncio.to_thread(prepare))
        try:
            launched = await asyncio.shield(launching)  # a thread cannot be stopped: see _abandoned
        except asyncio.CancelledError:
            launching.add_done_callback(_abandoned)
            raise
        stream = AttachStream(launched.socket)
        client = GuestClient(stream, stream, callbacks=self.callbacks, name=f"docker sandbox {session}")
        box = _Box(spec, launched.id, stream, client)
        try:
            await client.start(timeout=self.options.start_timeout, output_limit=self.settings.output_limit,
                               memory_limit_mb=spec.memory_mb, workdir=spec.guest_workdir)
        except GuestClosed:
            detail = box.stderr_line() or "it exited without a message"
            await self._stop(box, "failed to start")
            raise SandboxError(f"the sandbox container ({spec.image}) stopped before its REPL answered: {detail}",
                               fix=f"check that {self.options.python} in the image is Python 3.8+ and that the "
                                   "memory limit leaves room for the interpreter (at least 64 MiB)") from None
        except GuestTimeout:
            await self._stop(box, "start timeout")
            raise SandboxError(f"the sandbox container ({spec.image}) did not answer within "
                               f"{self.options.start_timeout:g}s", fix="raise [plugins.env-docker] start_timeout "
                               "or check the engine's load (`docker info`)") from None
        except BaseException:
            self._stop_now(box, "start cancelled")
            raise
        log.info("docker_session_started", container=box.id[:12], image=spec.image,
                 ms=round((time.perf_counter() - started) * 1000, 1))
        return box
