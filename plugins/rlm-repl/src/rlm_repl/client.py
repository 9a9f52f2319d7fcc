"""Host side of the guest REPL protocol: :class:`GuestClient`.

A :class:`GuestClient` drives one :mod:`rlm_repl.repl_server` over any pair of
async line streams -- an object with ``async readline() -> bytes`` (``b""`` at
end of stream) and one with ``write(bytes)`` + ``async drain()``;
:class:`asyncio.StreamReader`/:class:`asyncio.StreamWriter` fit (give the
reader a ``limit`` of a few MiB: one reply holds a whole execution's output).
Docker attaches it to the container's stdin/stdout, WebAssembly to its
instance's stdin FIFO and stdout callback.

The protocol (see :mod:`rlm_repl.repl_server` for every field):

1. :meth:`GuestClient.start` sends ``{"op": "init", "nonce", ...}`` and waits
   for ``{"op": "ready"}`` carrying that nonce.
2. Each request is ``{"id": n, "op": "exec"|"context"|"get"|"set"|"clear"|"ping",
   ...}`` with a fresh integer ``n``; the guest answers ``{"nonce", "id": n,
   "op": "done", ...}``.  Lines without this session's nonce (not JSON, another
   nonce: stray bytes where the guest could not move its output off the
   channel) are logged and skipped; a line *with* the nonce but another
   request's id or an unknown op is a forgery and raises
   :class:`~rlm_repl.replies.ProtocolError`.
3. Meanwhile the guest may send ``{"nonce", "id": n, "op": "llm_query", "seq",
   "prompt"}`` or ``{..., "op": "llm_query_batched", "seq", "prompts"}``; the
   client awaits the :class:`rlm.environment.HostCallbacks` and writes
   ``{"op": "reply", "seq", "ok": true, "value"}`` or ``{"op": "reply", "seq",
   "ok": false, "error"}``.  The request's timeout keeps counting while it
   waits for the host.

When a request outlives its timeout the client calls the ``interrupt``
coroutine it was given (Docker sends ``SIGINT``), waits ``grace`` seconds for
the ``done`` and raises :class:`GuestTimeout` -- with ``recovered=True`` and the
interrupted execution's :class:`~rlm.types.REPLResult` when the guest survived,
``recovered=False`` when the caller must kill and restart it.  The end of the
stream raises :class:`GuestClosed`; ``{"fault"}`` replies raise
:class:`GuestFault`; a reply or callback of the wrong shape raises
:class:`rlm_repl.replies.ProtocolError` (every text is capped on the host by
:mod:`rlm_repl.replies`).  These are internal signals for environments, which turn
them into results or :class:`rlm.errors.SandboxError`.

One request at a time; the client holds no loop-bound state, so it works from
whichever event loop calls it (as long as its streams do).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs
from rlm.environment import HostCallbacks
from rlm.logging import get_logger
from rlm.types import REPLResult

from rlm_repl.replies import (
    SESSION_LOST,
    ProtocolError,
    callback_request,
    context_reply,
    exec_result,
    variable_reply,
)

log = get_logger(__name__)

CALLBACK_OPS = ("llm_query", "llm_query_batched")
Interrupt = Callable[[], Awaitable[None]]


class LineReader(Protocol):
    async def readline(self) -> bytes: ...


class LineWriter(Protocol):
    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...


class GuestError(Exception):
    """Base of the client's internal signals."""


class GuestClosed(GuestError):
    """The guest's stream ended or broke (the process or sandbox is gone)."""


class GuestFault(GuestError):
    """The guest could not serve a request (``{"fault"}`` reply): a bug or a bad request."""


class GuestTimeout(GuestError):
    """A request outlived its timeout.

    ``recovered`` is True when the guest answered after the interrupt (its
    state is intact; ``result`` is the interrupted execution's result with a
    timeout error); False when the caller must kill and restart the guest.
    """

    def __init__(self, timeout: float, *, recovered: bool = False, result: REPLResult | None = None) -> None:
        super().__init__(f"no answer within {timeout:g}s")
        self.timeout = timeout
        self.recovered = recovered
        self.result = result


def timeout_message(timeout: float, *, state_kept: bool) -> str:
    """The error text of an execution stopped at its wall-clock limit."""
    if state_kept:
        after = "was interrupted; the variables defined before are kept"
    else:
        after = f"was stopped; {SESSION_LOST}"
    return (f"TimeoutError: the execution exceeded the {timeout:g}s wall-clock limit (llm_query time included) "
            f"and {after}. Make the code faster or split the work into smaller steps (or raise env_timeout).")


class GuestClient:
    """Drives one guest REPL server over a line reader/writer pair."""

    def __init__(self, reader: LineReader, writer: LineWriter, *, callbacks: HostCallbacks | None = None,
                 nonce: str | None = None, name: str = "guest") -> None:
        self.reader = reader
        self.writer = writer
        self.callbacks = callbacks
        self.nonce = nonce or secrets.token_hex(16)
        self.name = name
        self.ready: dict[str, Any] | None = None
        #: The guest's output limit (from :meth:`start`); the host caps every reply at it too.
        self.output_limit: int | None = None
        self._busy = False
        #: Lines skipped since the start (not JSON, wrong nonce, stale id...).
        self.ignored_lines = 0

    # --- streams ------------------------------------------------------------------------------

    async def _send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message) + "\n").encode("ascii")
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (OSError, RuntimeError) as exc:  # broken pipe, reset, closed transport
            raise GuestClosed(f"cannot write to the {self.name}: {exc}") from exc

    def _ignore(self, reason: str, line: bytes | str) -> None:
        self.ignored_lines += 1
        log.warning("guest_line_ignored", guest=self.name, reason=reason, line=str(line[:200]))

    async def _next_message(self) -> dict[str, Any]:
        """The next line of this session (right nonce), parsed; GuestClosed at end of stream."""
        while True:
            try:
                line = await self.reader.readline()
            except (asyncio.LimitOverrunError, ValueError) as exc:
                raise GuestClosed(f"the {self.name} sent a line longer than the reader accepts: {exc}") from exc
            except (OSError, EOFError) as exc:
                raise GuestClosed(f"cannot read from the {self.name}: {exc}") from exc
            if not line:
                raise GuestClosed(f"the {self.name} closed its output (it exited or was killed)")
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except (ValueError, RecursionError):  # RecursionError: nested too deeply to parse
                self._ignore("not_json", line[:200])
                continue
            if not isinstance(message, dict):
                self._ignore("not_an_object", line)
                continue
            if message.get("nonce") != self.nonce:
                self._ignore("wrong_nonce", line)
                continue
            return message

    # --- handshake ----------------------------------------------------------------------------

    async def start(self, *, timeout: float = 30.0, output_limit: int = 100_000, memory_limit_mb: int | None = None,
                    workdir: str | None = None, **extra: Any) -> dict[str, Any]:
        """Send ``init`` and wait for ``ready``; returns the ready message."""
        self.output_limit = int(output_limit)
        init = {"op": "init", "nonce": self.nonce, "output_limit": int(output_limit),
                "has_callbacks": self.callbacks is not None, "memory_limit_mb": memory_limit_mb,
                "workdir": workdir, **extra}

        async def handshake() -> dict[str, Any]:
            await self._send(init)
            while True:
                message = await self._next_message()
                if message.get("op") == "ready":
                    return message
                self._ignore("not_ready", json.dumps(message))

        try:
            self.ready = await asyncio.wait_for(handshake(), timeout)
        except TimeoutError:
            raise GuestTimeout(timeout) from None
        return self.ready

    # --- requests -----------------------------------------------------------------------------

    async def _service(self, message: dict[str, Any]) -> dict[str, Any]:
        op, seq = message.get("op"), message.get("seq")
        request = callback_request(str(op), message)  # a malformed callback breaks the protocol
        callbacks = self.callbacks
        if callbacks is None:
            return {"op": "reply", "seq": seq, "ok": False,
                    "error": f"{op} is not available: this session has no host callbacks"}
        try:
            if isinstance(request, str):
                value: Any = str(await callbacks.llm_query(request))
            else:
                value = [str(v) for v in await callbacks.llm_query_batched(request)]
                if len(value) != len(request):
                    raise RuntimeError(f"the host returned {len(value)} answers for {len(request)} prompts")
        except Exception as exc:
            log.info("guest_callback_failed", guest=self.name, op=op, error=str(exc))
            return {"op": "reply", "seq": seq, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"op": "reply", "seq": seq, "ok": True, "value": value}

    async def _await_done(self, request_id: int, *, answer_callbacks: bool) -> dict[str, Any]:
        while True:
            message = await self._next_message()
            if message.get("id") != request_id:
                raise ProtocolError(f"the {self.name} answered request {str(message.get('id'))[:40]!r} "
                                    "while another one was outstanding")
            op = message.get("op")
            if op == "done":
                return message
            if op in CALLBACK_OPS:
                if answer_callbacks:
                    reply = await self._service(message)
                else:
                    reply = {"op": "reply", "seq": message.get("seq"), "ok": False,
                             "error": "the execution timed out"}
                reply["id"] = request_id
                await self._send(reply)
                continue
            raise ProtocolError(f"the {self.name} sent a message of unknown kind {str(op)[:40]!r}")

    async def request(self, op: str, fields: dict[str, Any] | None = None, *, timeout: float,
                      interrupt: Interrupt | None = None, grace: float = 2.0) -> dict[str, Any]:
        """Send one request and return its ``done`` reply (callbacks serviced meanwhile).

        Raises :class:`GuestTimeout` (after ``interrupt`` and ``grace`` when given),
        :class:`GuestClosed` or :class:`GuestFault`.
        """
        if self._busy:
            raise RuntimeError("GuestClient serves one request at a time")
        self._busy = True
        try:
            # random ids: guest code that learns the nonce still cannot pre-answer later requests
            request_id = secrets.randbits(62)
            await self._send({**(fields or {}), "id": request_id, "op": op})
            try:
                reply = await asyncio.wait_for(self._await_done(request_id, answer_callbacks=True), timeout)
            except TimeoutError:
                reply = await self._after_timeout(request_id, timeout, interrupt, grace)
                raise GuestTimeout(timeout, recovered=reply is not None,
                                   result=None if reply is None else _interrupted(
                                       reply, timeout, self.output_limit or 0)) from None
        finally:
            self._busy = False
        if reply.get("fault"):
            raise GuestFault(str(reply["fault"]))
        return reply

    async def _after_timeout(self, request_id: int, timeout: float, interrupt: Interrupt | None,
                             grace: float) -> dict[str, Any] | None:
        log.info("guest_request_timeout", guest=self.name, timeout=timeout, interrupt=interrupt is not None)
        if interrupt is None:
            return None
        try:
            await interrupt()
            return await asyncio.wait_for(self._await_done(request_id, answer_callbacks=False), grace)
        except (TimeoutError, GuestError) as exc:
            log.info("guest_interrupt_failed", guest=self.name, error=type(exc).__name__)
            return None
        except Exception as exc:
            log.warning("guest_interrupt_error", guest=self.name, error=str(exc))
            return None

    async def execute(self, code: str, *, timeout: float, interrupt: Interrupt | None = None, grace: float = 2.0,
                      output_limit: int | None = None, cpu_limit_s: float | None = None,
                      file_size_limit: int | None = None) -> REPLResult:
        """Run ``code`` in the guest; its :class:`REPLResult` (user errors in ``error``)."""
        fields: dict[str, Any] = {"code": code}
        if output_limit:
            fields["output_limit"] = int(output_limit)
        if cpu_limit_s:
            fields["cpu_limit_s"] = float(cpu_limit_s)
        if file_size_limit is not None:
            fields["file_size_limit"] = int(file_size_limit)
        started = time.perf_counter()
        try:
            reply = await self.request("exec", fields, timeout=timeout, interrupt=interrupt, grace=grace)
        except GuestTimeout as exc:
            if exc.result is not None:
                exc.result = attrs.evolve(exc.result,
                                          execution_time_ms=round((time.perf_counter() - started) * 1000, 3))
            raise
        return exec_result(reply, execution_time_ms=(time.perf_counter() - started) * 1000,
                           output_limit=int(output_limit or self.output_limit or 0))

    async def context(self, *, timeout: float) -> dict[str, str]:
        """The user's variables: name -> short repr."""
        return context_reply(await self.request("context", timeout=timeout))

    async def get(self, name: str, *, timeout: float) -> Any:
        """A variable's value (JSON) or repr; ``KeyError`` naming it when absent."""
        return variable_reply(name, await self.request("get", {"name": name}, timeout=timeout))

    async def set(self, name: str, value: Any, *, timeout: float) -> None:
        """Bind ``name`` to a JSON value."""
        await self.request("set", {"name": name, "value": value}, timeout=timeout)

    async def clear(self, *, timeout: float) -> None:
        """Delete every user variable."""
        await self.request("clear", timeout=timeout)

    async def ping(self, *, timeout: float) -> dict[str, Any]:
        return await self.request("ping", timeout=timeout)


def _interrupted(reply: dict[str, Any], timeout: float, output_limit: int) -> REPLResult:
    result = exec_result(reply, execution_time_ms=0.0, output_limit=output_limit)
    return REPLResult(output=result.output, truncated=result.truncated,
                      error=timeout_message(timeout, state_kept=result.notice is None),
                      cpu_time_ms=result.cpu_time_ms, memory_peak_bytes=result.memory_peak_bytes,
                      notice=result.notice)
