"""What the tools do, independent of MCP: :class:`RLMService` maps tool calls to sessions and runs.

Each tool returns a JSON-ready dict.  Problems the caller can fix (bad
arguments, unknown session or run, limits) raise :class:`rlm.errors.RLMError`
naming cause and fix; the server turns them into tool results with
``isError``.  An error in the user's code is not a tool error: it comes back
in ``execute_python``'s result (``success: false``, ``error``).

Only ``execute_python`` starts a REPL session; the other session tools refuse
an id that is not open (see :mod:`rlm_mcp.sessions`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any, Self

import jsonschema
from rlm.errors import RLMError
from rlm.logging import get_logger

from rlm_mcp.completions import RLMSessionManager
from rlm_mcp.config import MCPConfig
from rlm_mcp.runs import RunManager
from rlm_mcp.sessions import SessionError, SessionManager, check_session_id
from rlm_mcp.tools import ALIASES, EXECUTION_PROFILES, RETIRED, TOOLS_BY_NAME

log = get_logger(__name__)

#: The REPL server (rlm-repl) cuts a traceback at this many characters (the host at max(output_limit, this)).
TRACEBACK_CAP = 20_000


class ToolArgumentError(RLMError):
    """A tool was called with arguments its schema refuses."""


def resolve_legacy(name: str, arguments: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The tool and arguments a call by an rlm-runtime 2.x name or with a 2.x argument means.

    ``destroy_session`` -> ``close_session`` (see :data:`rlm_mcp.tools.ALIASES`);
    ``execute_python(profile=...)`` -> its ``timeout`` (quick 5 s, default: the server's, analysis 120 s,
    extended 300 s; a ``timeout`` given too wins).  Anything else is returned as it is.
    """
    args = dict(arguments)
    alias = ALIASES.get(name)
    if alias is not None:
        log.info("mcp_tool_alias", called=name, tool=alias.target)
        name = alias.target
    if name == "execute_python" and "profile" in args:
        profile = args.pop("profile")
        if not isinstance(profile, str) or profile not in EXECUTION_PROFILES:
            raise ToolArgumentError(f"execute_python: profile {profile!r} is not one of "
                                    f"{', '.join(EXECUTION_PROFILES)} (rlm-runtime 2.x presets)",
                                    fix="leave profile out and give timeout (seconds) instead")
        seconds = EXECUTION_PROFILES[profile]
        if args.get("timeout") is None and seconds is not None:
            args["timeout"] = seconds
        log.info("mcp_legacy_argument", tool=name, argument="profile", value=profile, timeout=args.get("timeout"))
    return name, args


def check_arguments(name: str, arguments: Mapping[str, Any]) -> None:
    """Validate ``arguments`` against the tool's JSON Schema (the SDK's lowlevel server does not)."""
    tool = TOOLS_BY_NAME.get(name)
    if tool is None:
        if name in RETIRED:
            raise ToolArgumentError(f"no tool named {name!r}", fix=RETIRED[name])
        raise ToolArgumentError(f"no tool named {name!r}", fix=f"use one of: {', '.join(TOOLS_BY_NAME)}")
    validator = jsonschema.Draft202012Validator(dict(tool.input_schema))
    error = next(iter(sorted(validator.iter_errors(dict(arguments)), key=lambda e: list(e.path))), None)
    if error is not None:
        where = ".".join(str(p) for p in error.path) or "arguments"
        raise ToolArgumentError(f"{name}: {where}: {error.message}",
                                fix="call the tool with arguments matching its input schema")


class RLMService:
    """The state behind the tools: REPL sessions, RLM sessions, agent runs and the idle-session reaper."""

    def __init__(self, *, sessions: SessionManager, runs: RunManager, options: MCPConfig,
                 default_timeout: float, model: str, rlm_sessions: RLMSessionManager | None = None) -> None:
        self.sessions = sessions
        self.runs = runs
        #: rlm_complete's sessions (None: rlm_complete refuses, e.g. a service built without a model)
        self.rlm_sessions = rlm_sessions
        self.options = options
        self.default_timeout = default_timeout
        self.model = model
        self._reaper: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._reaper = asyncio.get_running_loop().create_task(self._reap_forever(), name="rlm-mcp-reaper")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await self.runs.cancel_all()  # every run ends with run_end in its trajectory
        if self.rlm_sessions is not None:
            await self.rlm_sessions.close_all()
        await self.sessions.close_all()

    def begin_shutdown(self) -> int:
        """A signal arrived: refuse new agent runs and cancel the running ones now (returns how many)."""
        return self.runs.cancel_everything()

    async def _reap_forever(self) -> None:
        period = max(0.5, min(self.options.idle_timeout / 4, 30.0))
        while True:
            await asyncio.sleep(period)
            try:
                await self.sessions.reap()
                if self.rlm_sessions is not None:
                    await self.rlm_sessions.reap()
            except Exception:
                log.exception("session_reap_failed")

    async def call(self, name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Run tool ``name`` (or the tool an rlm-runtime 2.x name means); raises RLMError for problems the
        caller can fix."""
        name, arguments = resolve_legacy(name, arguments)
        check_arguments(name, arguments)
        log.debug("tool_called", tool=name)
        return await getattr(self, f"tool_{name}")(**arguments)

    # --- REPL tools -------------------------------------------------------------------------

    async def tool_execute_python(self, code: str, session_id: str | None = None,
                                  timeout: float | None = None) -> dict[str, Any]:
        cap = self.options.max_execute_timeout
        effective = self.default_timeout if timeout is None else float(timeout)
        if effective > cap:
            log.warning("execute_timeout_clamped", requested=effective, cap=cap)
            effective = cap
        session = await self.sessions.get(session_id, create=True)
        async with session.lock:
            result = await session.env.execute(code, timeout=effective)
            session.executions += 1
            session.touch()
        cut = self.cut_fields(result)
        data: dict[str, Any] = {"success": result.error is None, "output": result.output, "value": result.value,
                                "error": result.error, "truncated": bool(result.truncated or cut),
                                "execution_time_ms": round(result.execution_time_ms, 3),
                                "session_id": session.session_id}
        if cut:
            data["truncated_fields"] = cut
        if result.notice is not None:
            data["notice"] = result.notice
        return data

    def cut_fields(self, result: Any) -> list[str]:
        """The fields of ``result`` that reached a cap, so were (or may have been) cut.

        The environment cuts output and value at ``output_limit`` and the REPL
        server cuts a traceback at :data:`TRACEBACK_CAP`; not every cut sets
        ``REPLResult.truncated`` (a value or traceback cut inside the sandbox
        arrives exactly at its cap), so a field at its cap counts as cut.
        """
        limit = self.sessions.settings.output_limit
        caps = {"output": limit, "value": limit, "error": TRACEBACK_CAP}
        return [name for name, cap in caps.items()
                if (text := getattr(result, name)) is not None and len(text) >= cap]

    async def tool_get_repl_context(self, session_id: str | None = None) -> dict[str, Any]:
        session = await self.sessions.get(session_id)
        async with session.lock:
            variables = await session.env.get_context()
        return {"session_id": session.session_id, "variables": dict(variables)}

    async def tool_set_repl_context(self, key: str, value: Any, session_id: str | None = None) -> dict[str, Any]:
        session = await self.sessions.get(session_id)
        async with session.lock:
            await session.env.set_context(key, value)
            session.touch()
        return {"session_id": session.session_id, "set": key}

    async def tool_clear_repl_context(self, session_id: str | None = None) -> dict[str, Any]:
        session = await self.sessions.get(session_id)
        async with session.lock:
            await session.env.clear_context()
        return {"session_id": session.session_id, "cleared": True}

    async def tool_list_sessions(self) -> dict[str, Any]:
        return {"environment": self.sessions.environment, "idle_timeout_s": self.sessions.idle_timeout,
                "sessions": [{"session_id": i.session_id, "executions": i.executions, "idle_s": i.idle_s,
                              "age_s": i.age_s} for i in self.sessions.infos()],
                "rlm_sessions": self.rlm_sessions.infos() if self.rlm_sessions is not None else []}

    async def tool_close_session(self, session_id: str | None = None) -> dict[str, Any]:
        """Close the REPL session and the RLM session of this id (either or both may be open)."""
        sid = check_session_id(session_id)
        rlm_closed = self.rlm_sessions is not None and await self.rlm_sessions.close(sid)
        repl_closed = True
        try:
            await self.sessions.close(sid)
        except SessionError as exc:  # no REPL session of this id: an error only when no RLM session was either
            if not rlm_closed:
                raise SessionError(f"no REPL session and no RLM session named {sid!r} is open",
                                   fix="list_sessions shows the open ones (execute_python and rlm_complete "
                                       "start them; idle ones are closed)") from exc
            repl_closed = False
        return {"session_id": sid, "closed": True, "repl_session_closed": repl_closed,
                "rlm_session_closed": bool(rlm_closed)}

    # --- RLM completions --------------------------------------------------------------------

    async def tool_rlm_complete(self, prompt: str, session_id: str | None = None, max_turns: int | None = None,
                                token_budget: int | None = None, cost_limit: float | None = None) -> dict[str, Any]:
        if self.rlm_sessions is None:
            raise RLMError("rlm_complete is not available in this server",
                           fix="start the server with rlm mcp-serve")
        return await self.rlm_sessions.complete(prompt, session_id=session_id, max_turns=max_turns,
                                                token_budget=token_budget, cost_limit=cost_limit)

    # --- agent tools ------------------------------------------------------------------------

    async def tool_rlm_agent_run(self, task: str, max_iterations: int | None = None, cost_limit: float | None = None,
                                 token_budget: int | None = None) -> dict[str, Any]:
        run = await self.runs.start(task, max_iterations=max_iterations, cost_limit=cost_limit,
                                    token_budget=token_budget)
        return {"run_id": run.run_id, "state": "running", "model": run.model,
                "next": "poll rlm_agent_status with this run_id until state is completed, failed or cancelled"}

    async def tool_rlm_agent_status(self, run_id: str) -> dict[str, Any]:
        return self.runs.get(run_id).to_json()

    async def tool_rlm_agent_cancel(self, run_id: str) -> dict[str, Any]:
        run = self.runs.cancel(run_id)
        await self.runs.wait(run, timeout=5.0)  # usually ends at once: report the real state
        return run.to_json()
