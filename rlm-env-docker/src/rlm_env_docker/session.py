""":class:`DockerEnvironment`: the "docker" Environment, one hardened container per session.

The session starts its container lazily (or on :meth:`DockerEnvironment.start`):
the container runs ``python3 -I -B -u -c <rlm_repl.repl_server>`` and the
host drives it with :class:`rlm_repl.client.GuestClient` over the attached
stdin/stdout (:class:`rlm_env_docker.stream.AttachStream`), so variables,
functions and imports persist between executions.  ``llm_query`` calls from
the code are answered through the host's :class:`rlm.environment.HostCallbacks`.

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
import json
import keyword
import time
import uuid
from typing import Any

import attrs

from rlm.environment import EnvironmentSettings, HostCallbacks
from rlm.errors import SandboxError
from rlm_repl import server_source
from rlm_repl.client import (
    GuestClient,
    GuestClosed,
    GuestFault,
    GuestTimeout,
    timeout_message,
)
from rlm_repl.replies import SESSION_LOST, ProtocolError, context_reply, variable_reply
from rlm.logging import get_logger
from rlm.types import REPLResult

from rlm_env_docker.config import DockerEnvConfig, options_of
from rlm_env_docker.spec import ContainerSpec, build_spec

log = get_logger(__name__)

BUG_FIX = "report this as a bug of rlm-env-docker"


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


class DockerEnvironment:
    """A REPL session in a long-lived, hardened docker container."""

    name = "docker"

    def __init__(self, *, settings: EnvironmentSettings | None = None,
                 callbacks: HostCallbacks | None = None) -> None:
        self.settings = settings if settings is not None else EnvironmentSettings()
        self.options: DockerEnvConfig = options_of(self.settings)
        self.callbacks = callbacks
        self._box: _Box | None = None
        #: Said with the next result: the container ended between calls and a fresh one took its place.
        self._lost_notice: str | None = None
        self._closed = False
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def _get_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    @property
    def container_id(self) -> str | None:
        """The id of the session's container (None when none runs)."""
        return self._box.id if self._box is not None else None

    async def start(self) -> None:
        async with self._get_lock():
            await self._ensure_started()

    async def _ensure_started(self) -> _Box:
        if self._closed:
            raise SandboxError("this docker environment was closed", fix="create a new environment")
        if self._box is not None and self._box.alive:
            return self._box
        if self._box is not None:
            await self._discard(self._box, "dead")
            self._lost_notice = f"the sandbox container had stopped since the last call; {SESSION_LOST}"
        self._box = await self._launch()
        return self._box

    async def _launch(self) -> _Box:
        from rlm_env_docker import engine
        from rlm_env_docker.stream import AttachStream

        session = uuid.uuid4().hex[:12]
        command = (self.options.python, "-I", "-B", "-u", "-c", server_source())
        spec = build_spec(self.settings, session=session, command=command)
        started = time.perf_counter()

        def prepare() -> Any:
            engine.client()
            engine.prune_orphans_once()
            engine.ensure_image(spec.image, pull=self.options.pull)
            return engine.launch(spec)

        launched = await asyncio.to_thread(prepare)
        stream = AttachStream(launched.socket)
        client = GuestClient(stream, stream, callbacks=self.callbacks, name=f"docker sandbox {session}")
        box = _Box(spec, launched.id, stream, client)
        try:
            await client.start(timeout=self.options.start_timeout, output_limit=self.settings.output_limit,
                               memory_limit_mb=spec.memory_mb, workdir=spec.guest_workdir)
        except GuestClosed:
            detail = box.stderr_line() or "it exited without a message"
            await self._discard(box, "failed to start")
            raise SandboxError(f"the sandbox container ({spec.image}) stopped before its REPL answered: {detail}",
                               fix=f"check that {self.options.python} in the image is Python 3.8+ and that the "
                                   "memory limit leaves room for the interpreter (at least 64 MiB)") from None
        except GuestTimeout:
            await self._discard(box, "start timeout")
            raise SandboxError(f"the sandbox container ({spec.image}) did not answer within "
                               f"{self.options.start_timeout:g}s", fix="raise [plugins.env-docker] start_timeout "
                               "or check the engine's load (`docker info`)") from None
        except BaseException:
            self._discard_now(box)
            raise
        log.info("docker_session_started", container=box.id[:12], image=spec.image,
                 ms=round((time.perf_counter() - started) * 1000, 1))
        return box

    async def _discard(self, box: _Box, reason: str) -> None:
        from rlm_env_docker import engine

        log.info("docker_session_discarded", container=box.id[:12], reason=reason)
        box.stream.close()
        if self._box is box:
            self._box = None
        await asyncio.to_thread(engine.remove, box.id)

    def _discard_now(self, box: _Box) -> None:
        """Remove without awaiting (cancellation paths)."""
        from rlm_env_docker import engine

        box.stream.close()
        if self._box is box:
            self._box = None
        engine.remove(box.id)

    async def _restart(self, box: _Box, reason: str) -> None:
        """Replace the container (removal and the new start overlap)."""
        from rlm_env_docker import engine

        log.info("docker_session_restart", container=box.id[:12], reason=reason)
        box.stream.close()
        self._box = None
        removal = asyncio.ensure_future(asyncio.to_thread(engine.remove, box.id))
        try:
            self._box = await self._launch()
        except SandboxError as exc:  # the next call tries again and raises
            log.warning("docker_restart_failed", error=str(exc))
        finally:
            await removal

    async def reset(self) -> None:
        async with self._get_lock():
            if self._box is not None:
                await self._discard(self._box, "reset")
            self._lost_notice = None  # the caller asked for a fresh session
            await self._ensure_started()

    async def close(self) -> None:
        self._closed = True
        box, self._box = self._box, None
        if box is not None:
            await self._discard(box, "close")

    # --- requests ------------------------------------------------------------------------------

    def _death_reason(self, box: _Box) -> str:
        from rlm_env_docker import engine

        state = engine.state(box.id)
        detail = box.stderr_line()
        if state is not None and state.get("OOMKilled"):
            reason = f"it ran out of memory (limit {box.spec.container_memory_bytes // (1024 * 1024)} MiB)"
        elif state is not None and state.get("Status") in ("exited", "dead"):
            reason = f"it exited with status {state.get('ExitCode')}"
        else:
            reason = "it was killed (out of memory, or removed from outside)"
        return f"{reason}: {detail}" if detail else reason

    async def execute(self, code: str, *, timeout: float | None = None) -> REPLResult:
        result = await self._execute(code, timeout=timeout)
        notice, self._lost_notice = self._lost_notice, None  # set when the container ended between calls
        return attrs.evolve(result, notice=notice) if notice else result

    async def _execute(self, code: str, *, timeout: float | None = None) -> REPLResult:
        if not isinstance(code, str):
            raise TypeError("execute(code): code must be a str")
        timeout = self.settings.timeout if timeout is None else float(timeout)
        async with self._get_lock():
            box = await self._ensure_started()
            started = time.perf_counter()

            def elapsed() -> float:
                return round((time.perf_counter() - started) * 1000, 3)

            try:
                return await box.client.execute(code, timeout=timeout, interrupt=box.interrupt,
                                                grace=self.options.interrupt_grace,
                                                output_limit=self.settings.output_limit,
                                                cpu_limit_s=self.settings.cpu_limit_s)
            except GuestTimeout as exc:
                if exc.recovered and exc.result is not None:
                    log.info("docker_execution_interrupted", container=box.id[:12], timeout=timeout)
                    return exc.result
                log.info("docker_execution_timeout", container=box.id[:12], timeout=timeout)
                ms = elapsed()
                await self._restart(box, "timeout")
                return REPLResult(error=timeout_message(timeout, state_kept=False), execution_time_ms=ms)
            except GuestClosed:
                reason = await asyncio.to_thread(self._death_reason, box)
                log.info("docker_container_died", container=box.id[:12], reason=reason)
                ms = elapsed()
                await self._restart(box, "died")
                return REPLResult(error=f"SandboxError: the sandbox container stopped during the execution "
                                        f"({reason}); {SESSION_LOST}.", execution_time_ms=ms)
            except GuestFault as exc:
                raise SandboxError(f"the docker REPL failed internally: {exc}", fix=BUG_FIX) from None
            except ProtocolError as exc:
                log.warning("docker_protocol_error", container=box.id[:12], op="exec", error=str(exc))
                ms = elapsed()
                await self._restart(box, "protocol error")
                return REPLResult(error=f"SandboxError: the docker REPL broke the protocol ({exc}) and was "
                                        f"stopped; {SESSION_LOST}.", execution_time_ms=ms)
            except BaseException:
                self._discard_now(box)
                self._lost_notice = f"a call was cancelled while the container was busy; {SESSION_LOST}"
                raise

    async def _call(self, op: str, fields: dict[str, Any] | None = None, *, read: Any = None) -> Any:
        """One non-exec request, its reply checked by ``read(reply)``; timeouts, deaths and protocol
        violations become SandboxError (after a restart)."""
        timeout = self.settings.timeout
        async with self._get_lock():
            box = await self._ensure_started()
            try:
                reply = await box.client.request(op, fields, timeout=timeout)
                return read(reply) if read is not None else reply  # KeyError (no such variable) passes
            except ProtocolError as exc:
                log.warning("docker_protocol_error", container=box.id[:12], op=op, error=str(exc))
                await self._restart(box, "protocol error")
                raise SandboxError(f"the docker REPL broke the protocol during {op}: {exc}; {SESSION_LOST}",
                                   fix=BUG_FIX) from None
            except KeyError:
                raise
            except GuestTimeout:
                await self._restart(box, "timeout")
                raise SandboxError(f"the docker REPL did not answer {op} within {timeout:g}s (a __repr__ that "
                                   f"never returns?); {SESSION_LOST}", fix="avoid slow __repr__ methods") from None
            except GuestClosed:
                reason = await asyncio.to_thread(self._death_reason, box)
                await self._restart(box, "died")
                raise SandboxError(f"the sandbox container stopped during {op} ({reason}); {SESSION_LOST}",
                                   fix="check the memory limit and the code's resource use") from None
            except GuestFault as exc:
                raise SandboxError(f"the docker REPL failed internally: {exc}", fix=BUG_FIX) from None
            except BaseException:
                self._discard_now(box)
                self._lost_notice = f"a call was cancelled while the container was busy; {SESSION_LOST}"
                raise

    async def get_context(self) -> dict[str, str]:
        return await self._call("context", read=context_reply)

    async def get_variable(self, name: str) -> Any:
        return await self._call("get", {"name": name}, read=lambda reply: variable_reply(name, reply))

    async def set_context(self, name: str, value: Any) -> None:
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
            raise ValueError(f"set_context: {name!r} is not a valid variable name (identifiers not starting "
                             "with '_')")
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"set_context({name!r}): the value must be JSON-serialisable ({exc})") from None
        await self._call("set", {"name": name, "value": value})

    async def clear_context(self) -> None:
        await self._call("clear")
