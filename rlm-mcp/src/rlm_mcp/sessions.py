"""REPL sessions of the MCP tools: one environment per ``session_id``, closed when idle.

Only ``execute_python`` starts a session (on first use of its id, with the
configured environment plugin and no host callbacks: ``llm_query`` is not
available, the REPL tools need no API key).  Every other tool naming a
session that is not open gets a :class:`SessionError` naming the id and the
fix, instead of an empty sandbox started behind a typo.  Calls on one
session run one at a time; sessions unused for ``idle_timeout`` seconds are
closed by :meth:`SessionManager.reap`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

from attrs import define
from rlm.environment import Environment, EnvironmentSettings
from rlm.errors import RLMError
from rlm.logging import get_logger

log = get_logger(__name__)

DEFAULT_SESSION = "default"
_SESSION_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class SessionError(RLMError):
    """A session id is invalid, unknown, or no more sessions may be opened."""


@define(frozen=True, kw_only=True)
class SessionInfo:
    """What ``list_sessions`` shows of one session."""

    session_id: str
    environment: str
    executions: int
    idle_s: float
    age_s: float


class Session:
    """One live environment and its bookkeeping (mutable: owned by the manager)."""

    def __init__(self, session_id: str, env: Environment, environment: str) -> None:
        self.session_id = session_id
        self.env = env
        self.environment = environment
        self.lock = asyncio.Lock()
        self.created = time.monotonic()
        self.last_used = self.created
        self.executions = 0

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def info(self) -> SessionInfo:
        now = time.monotonic()
        return SessionInfo(session_id=self.session_id, environment=self.environment, executions=self.executions,
                           idle_s=round(now - self.last_used, 3), age_s=round(now - self.created, 3))


def check_session_id(session_id: str | None) -> str:
    sid = DEFAULT_SESSION if session_id in (None, "") else str(session_id)
    if not _SESSION_ID.match(sid):
        raise SessionError(f"session_id {sid!r} is not valid",
                           fix="use 1-64 letters, digits, '_', '-', '.' or ':' (or leave it out for 'default')")
    return sid


class IdleReaping:
    """The one idle rule of this server's session managers (REPL sessions here, RLM sessions in
    :mod:`rlm_mcp.completions`): a session unused for longer than ``idle_timeout`` and not busy is closed.

    A subclass has ``_sessions`` (id -> a session with ``session_id``, ``last_used`` and ``lock``),
    ``idle_timeout`` and ``async _close(session, *, reason)``.
    """

    _sessions: dict[str, Any]
    idle_timeout: float

    async def _close(self, session: Any, *, reason: str) -> None:
        raise NotImplementedError

    async def reap(self) -> list[str]:
        """Close the sessions idle for longer than ``idle_timeout``; returns their ids."""
        now = time.monotonic()
        expired = [s for s in self._sessions.values()
                   if now - s.last_used > self.idle_timeout and not s.lock.locked()]
        for session in expired:
            self._sessions.pop(session.session_id, None)
            await self._close(session, reason="idle")
        return [s.session_id for s in expired]


class SessionManager(IdleReaping):
    """The REPL sessions of one server process.

    :param factory: the environment plugin's factory (``factory(settings=, callbacks=)``).
    :param settings: the limits every session gets.
    :param environment: the environment's name (for messages and listings).
    """

    def __init__(self, factory: Callable[..., Environment], settings: EnvironmentSettings, *, environment: str,
                 idle_timeout: float, max_sessions: int) -> None:
        self.factory = factory
        self.settings = settings
        self.environment = environment
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}
        self._starting: dict[str, asyncio.Future[Session]] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    async def get(self, session_id: str | None, *, create: bool = False) -> Session:
        """The session named ``session_id`` (``"default"`` when None); started if ``create``, else
        a :class:`SessionError` when it is not open."""
        sid = check_session_id(session_id)
        session = self._sessions.get(sid)
        if session is not None:
            session.touch()
            return session
        pending = self._starting.get(sid)
        if pending is not None:
            return await asyncio.shield(pending)
        if not create:
            raise self.unknown(sid)
        if len(self._sessions) + len(self._starting) >= self.max_sessions:
            raise SessionError(f"{self.max_sessions} REPL sessions are open already",
                               fix="close one with close_session, reuse a session_id, or raise "
                                   "[plugins.mcp] max_sessions")
        future: asyncio.Future[Session] = asyncio.get_running_loop().create_future()
        self._starting[sid] = future
        try:
            env = self.factory(settings=self.settings, callbacks=None)
            await env.start()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise
        finally:
            self._starting.pop(sid, None)
        session = Session(sid, env, self.environment)
        self._sessions[sid] = session
        future.set_result(session)
        log.info("session_started", session_id=sid, environment=self.environment)
        return session

    def unknown(self, sid: str) -> SessionError:
        """The error for a session id that is not open."""
        have = ", ".join(sorted(self._sessions)) or "none"
        return SessionError(f"no REPL session named {sid!r} is open (open sessions: {have})",
                            fix="only execute_python starts a session: call it with this session_id first "
                                "(list_sessions shows the open ones; sessions unused for "
                                f"{self.idle_timeout:g}s are closed and their variables lost)")

    def infos(self) -> list[SessionInfo]:
        return [s.info() for s in sorted(self._sessions.values(), key=lambda s: s.created)]

    async def close(self, session_id: str | None) -> str:
        """Close one session; returns its id, or raises :class:`SessionError` when it is not open."""
        sid = check_session_id(session_id)
        pending = self._starting.get(sid)
        if pending is not None:
            await asyncio.shield(pending)
        session = self._sessions.pop(sid, None)
        if session is None:
            raise self.unknown(sid)
        await self._close(session, reason="closed")
        return sid

    async def close_all(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await self._close(session, reason="shutdown")

    async def _close(self, session: Session, *, reason: str) -> None:
        try:
            await session.env.close()
        except Exception as exc:  # noqa: BLE001 - closing one session must not stop the others
            log.warning("session_close_failed", session_id=session.session_id, error=str(exc))
        log.info("session_closed", session_id=session.session_id, reason=reason)


def environment_settings(config: Any, environment: str) -> EnvironmentSettings:
    """The limits of a REPL session, from ``[rlm]`` as the kernel gives them to runs
    (:func:`rlm.environment.settings_from_config`), for ``environment``."""
    from rlm.environment import settings_from_config

    return settings_from_config(config, options=config.plugin(f"env-{environment}"))
