"""RLM sessions of ``rlm_complete``: completions that share one REPL and one conversation.

Without a ``session_id`` a call answers one completion (a fresh RLM, closed after).  With one, the
call continues that id's :class:`rlm.session.SyncSession`, started on first use: its REPL (and its
variables) and its conversation persist between calls; in the repl protocol earlier inputs and
answers are the REPL variables ``context_N`` / ``answer_N``.

Each RLM session lives on one dedicated worker thread (a single-thread executor) that makes its
:class:`rlm.RLM`, owns its ``rlm.session_sync()`` and runs every completion of it, so the REPL's
pipes and the backend's connections stay on that thread's one event loop; the server's loop only
awaits the result (``run_in_executor``) and is never blocked.  One-shot calls run on a thread of
their own the same way.

RLM sessions have their own id namespace, apart from execute_python's REPL sessions (an RLM
session ``x`` and a REPL session ``x`` are different sandboxes); ``close_session(x)`` closes both.
At most ``[plugins.mcp] max_rlm_sessions`` are open at once; those unused for ``idle_timeout``
seconds are closed by :meth:`RLMSessionManager.reap`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rlm.errors import RLMError
from rlm.logging import get_logger

from rlm_mcp.sessions import IdleReaping, SessionError, check_session_id

log = get_logger(__name__)

#: rlm_complete's defaults, like rlm_agent_run's (max_turns at most 50, cost_limit at most 10 USD).
DEFAULT_MAX_TURNS = 10
DEFAULT_TOKEN_BUDGET = 50_000
DEFAULT_COST_LIMIT = 2.0
#: Seconds :meth:`RLMSessionManager.close_all` waits for each session (its completion in progress) to close.
STOP_TIMEOUT_S = 10.0


class CompletionError(RLMError):
    """A completion ended without an answer (its rlm error's message and fix)."""


def _limited(rlm: Any, base: Any, token_budget: int | None, cost_limit: float | None) -> Any:
    """``base`` with this call's budgets: the token budget (default 50000) and the cost limit (default:
    the configured one, else 2.0 USD when the model's price is known)."""
    import attrs

    if cost_limit is None:
        cost_limit = base.cost_limit
        if cost_limit is None and rlm.pricing is not None:
            cost_limit = DEFAULT_COST_LIMIT
    return attrs.evolve(base, token_budget=token_budget or DEFAULT_TOKEN_BUDGET, cost_limit=cost_limit)


class RLMSession:
    """One RLM session: its worker thread, its RLM and its SyncSession (made on that thread)."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rlm-session-{session_id}")
        self.lock = asyncio.Lock()
        self.created = time.monotonic()
        self.last_used = self.created
        self.rlm: Any = None
        self.base_config: Any = None
        self.sync: Any = None  # rlm.session.SyncSession, made and used on the worker thread only
        self.closed = False

    @property
    def completions(self) -> int:
        return self.sync.session.completions if self.sync is not None else 0

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def info(self) -> dict[str, Any]:
        now = time.monotonic()
        return {"session_id": self.session_id, "completions": self.completions,
                "idle_s": round(now - self.last_used, 3), "age_s": round(now - self.created, 3)}

    # --- on the worker thread --------------------------------------------------------------

    def start(self, make_rlm: Callable[[], Any]) -> None:
        self.rlm = make_rlm()
        self.base_config = self.rlm.config
        self.sync = self.rlm.session_sync()

    def complete(self, prompt: str, max_turns: int, token_budget: int | None, cost_limit: float | None) -> Any:
        self.rlm.config = _limited(self.rlm, self.base_config, token_budget, cost_limit)
        return self.sync.completion(prompt, max_turns=max_turns)

    def close_here(self) -> None:
        if self.sync is not None:
            self.sync.close()  # the REPL, then the backends' connections; then the runner's loop


def _one_shot(make_rlm: Callable[[], Any], prompt: str, max_turns: int, token_budget: int | None,
              cost_limit: float | None) -> Any:
    """A completion without a session (on a worker thread): a fresh RLM, closed after."""
    rlm = make_rlm()
    rlm.config = _limited(rlm, rlm.config, token_budget, cost_limit)
    return rlm.completion_sync(prompt, max_turns=max_turns)


def result_json(result: Any, *, session_id: str | None, completions: int | None) -> dict[str, Any]:
    """rlm_complete's answer, or a :class:`CompletionError` when the completion failed."""
    if result.error is not None:
        where = f" (RLM session {session_id!r} stays open)" if session_id else ""
        raise CompletionError(f"the completion failed ({result.error_type}): {result.error}",
                              fix=f"see trajectory {result.trajectory_id} in the server's log_dir; fix the cause "
                                  f"and call rlm_complete again{where}")
    data: dict[str, Any] = {"answer": result.response, "answer_source": result.answer_source,
                            "trajectory_id": result.trajectory_id, "total_tokens": result.total_tokens,
                            "total_cost_usd": result.total_cost_usd, "limit_hit": result.limit_hit,
                            "session_id": session_id}
    if completions is not None:
        data["completions"] = completions
    return data


class RLMSessionManager(IdleReaping):
    """The RLM sessions of one server process.

    :param make_rlm: ``make_rlm()`` -> :class:`rlm.RLM` with the server's configuration (called on a
        worker thread).
    """

    def __init__(self, make_rlm: Callable[[], Any], *, idle_timeout: float, max_sessions: int) -> None:
        self.make_rlm = make_rlm
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions
        self.closing = False
        self._sessions: dict[str, RLMSession] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._sessions

    def infos(self) -> list[dict[str, Any]]:
        return [s.info() for s in sorted(self._sessions.values(), key=lambda s: s.created)]

    async def complete(self, prompt: str, *, session_id: str | None, max_turns: int | None,
                       token_budget: int | None, cost_limit: float | None) -> dict[str, Any]:
        if self.closing:
            raise SessionError("the server is shutting down: no new completions",
                               fix="call rlm_complete again once the server has been restarted")
        turns = max_turns or DEFAULT_MAX_TURNS
        loop = asyncio.get_running_loop()
        if session_id is None:
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rlm-complete")
            try:
                result = await loop.run_in_executor(pool, _one_shot, self.make_rlm, prompt, turns, token_budget,
                                                    cost_limit)
            finally:
                pool.shutdown(wait=False)  # never block the server's loop
            return result_json(result, session_id=None, completions=None)
        sid = check_session_id(session_id)
        session = self._sessions.get(sid)
        if session is None:
            if len(self._sessions) >= self.max_sessions:
                have = ", ".join(sorted(self._sessions))
                raise SessionError(f"{self.max_sessions} RLM sessions are open already ({have}); "
                                   f"rlm_complete cannot start {sid!r}",
                                   fix="close one with close_session, reuse a session_id, leave session_id out "
                                       "for a one-shot completion, or raise [plugins.mcp] max_rlm_sessions")
            session = RLMSession(sid)
            self._sessions[sid] = session  # counts against the limit while it starts
            try:
                await loop.run_in_executor(session.executor, session.start, self.make_rlm)
            except BaseException:
                self._sessions.pop(sid, None)
                session.executor.shutdown(wait=False)
                raise
            log.info("rlm_session_started", session_id=sid)
        async with session.lock:
            if session.closed:
                raise SessionError(f"RLM session {sid!r} was closed while this call waited",
                                   fix="call rlm_complete again: it starts a fresh session with this id")
            session.touch()
            try:
                result = await loop.run_in_executor(session.executor, session.complete, prompt, turns,
                                                    token_budget, cost_limit)
            finally:
                session.touch()
            return result_json(result, session_id=sid, completions=session.completions)

    async def close(self, session_id: str) -> bool:
        """Close the RLM session ``session_id``; False when none is open under that id."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        await self._close(session, reason="closed")
        return True

    async def close_all(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Close every session (server shutdown); a completion in progress gets ``timeout`` seconds."""
        self.closing = True
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            try:
                await asyncio.wait_for(self._close(session, reason="shutdown"), timeout)
            except TimeoutError:
                log.warning("rlm_session_not_closed", session_id=session.session_id, waited_s=timeout,
                            note="a completion was still in progress")

    async def _close(self, session: RLMSession, *, reason: str) -> None:
        """Close on the session's own thread, after the completion in progress (if any) ended."""
        session.closed = True
        try:
            await asyncio.get_running_loop().run_in_executor(session.executor, session.close_here)
        except Exception as exc:  # noqa: BLE001 - closing one session must not stop the others
            log.warning("rlm_session_close_failed", session_id=session.session_id, error=str(exc))
        finally:
            session.executor.shutdown(wait=False)
        log.info("rlm_session_closed", session_id=session.session_id, reason=reason)
