"""``rlm mcp-serve`` over stdio with the official MCP client: tools, REPL state, sessions, timeouts."""

from __future__ import annotations

import asyncio

EXPECTED = {"execute_python", "get_repl_context", "set_repl_context", "clear_repl_context", "rlm_agent_run",
            "rlm_agent_status", "rlm_agent_cancel", "list_sessions", "close_session", "rlm_complete"}


PROBE = "try:\n    {name}\n    r = 'present'\nexcept NameError:\n    r = 'missing'\nr"


def call(session, name, **arguments):
    return session.call_tool(name, arguments)


def test_tools_are_listed_with_schemas_and_hints(connect):
    async def main():
        async with connect() as s:
            return {t.name: t for t in (await s.list_tools()).tools}

    tools = asyncio.run(main())
    assert set(tools) == EXPECTED
    for tool in tools.values():
        assert tool.description and len(tool.description) > 40
        assert tool.input_schema["type"] == "object"
        assert tool.input_schema["additionalProperties"] is False
        assert tool.annotations is not None
    ex = tools["execute_python"].input_schema
    assert ex["required"] == ["code"] and set(ex["properties"]) == {"code", "session_id", "timeout"}
    assert tools["set_repl_context"].input_schema["required"] == ["key", "value"]
    assert tools["rlm_agent_run"].input_schema["required"] == ["task"]
    assert set(tools["rlm_agent_run"].input_schema["properties"]) == {"task", "max_iterations", "cost_limit",
                                                                       "token_budget"}
    assert tools["rlm_agent_status"].input_schema["required"] == ["run_id"]
    assert tools["get_repl_context"].annotations.read_only_hint is True
    assert tools["clear_repl_context"].annotations.destructive_hint is True
    assert tools["rlm_agent_run"].annotations.open_world_hint is True


def test_repl_state_sessions_context_and_timeout(connect):
    async def main():
        out = {}
        async with connect() as s:
            out["first"] = await call(s, "execute_python", code="x = 41\nprint('hello')\nx + 1")
            out["again"] = await call(s, "execute_python", code="x * 2")
            out["other"] = await call(s, "execute_python", code=PROBE.format(name="x"), session_id="other")
            out["set"] = await call(s, "set_repl_context", key="data", value={"a": [1, 2, 3]}, session_id="other")
            out["use"] = await call(s, "execute_python", code="sum(data['a'])", session_id="other")
            out["ctx"] = await call(s, "get_repl_context", session_id="other")
            out["clear"] = await call(s, "clear_repl_context", session_id="other")
            out["ctx2"] = await call(s, "get_repl_context", session_id="other")
            out["default_ctx"] = await call(s, "get_repl_context")
            out["user_error"] = await call(s, "execute_python", code="1/0")
            out["timeout"] = await call(s, "execute_python", code="import time\ntime.sleep(10)", timeout=1)
            out["after_timeout"] = await call(s, "execute_python", code="print('alive')")
            out["sessions"] = await call(s, "list_sessions")
            out["close"] = await call(s, "close_session", session_id="other")
            out["bad_args"] = await call(s, "execute_python", code=42)
            out["bad_session"] = await call(s, "execute_python", code="1", session_id="no spaces!")
        return out

    out = asyncio.run(main())
    first = out["first"].structured_content
    assert first["success"] and first["output"] == "hello\n" and first["value"] == "42"
    assert out["first"].is_error is False and '"hello\\n"' in out["first"].content[0].text
    assert out["again"].structured_content["value"] == "82"
    assert out["other"].structured_content["value"] == "'missing'"  # sessions are separate namespaces
    assert out["use"].structured_content["value"] == "6"
    assert set(out["ctx"].structured_content["variables"]) == {"data", "r"}
    assert out["ctx2"].structured_content["variables"] == {}
    assert "x" in out["default_ctx"].structured_content["variables"]
    err = out["user_error"].structured_content
    assert err["success"] is False and "ZeroDivisionError" in err["error"] and not out["user_error"].is_error
    timed = out["timeout"].structured_content
    assert timed["success"] is False and "1s" in timed["error"] and timed["execution_time_ms"] < 8000
    assert out["after_timeout"].structured_content["output"] == "alive\n"
    assert {x["session_id"] for x in out["sessions"].structured_content["sessions"]} == {"default", "other"}
    assert out["close"].structured_content["closed"] is True
    assert out["bad_args"].is_error and "not of type 'string'" in out["bad_args"].structured_content["error"]
    assert out["bad_session"].is_error and "session_id" in out["bad_session"].structured_content["error"]


def test_idle_sessions_expire(connect):
    async def main():
        async with connect("--idle-timeout", "1") as s:
            await call(s, "execute_python", code="y = 1", session_id="short")
            await asyncio.sleep(2.5)
            listed = await call(s, "list_sessions")
            ctx = await call(s, "execute_python", code=PROBE.format(name="y"), session_id="short")
            return listed, ctx

    listed, ctx = asyncio.run(main())
    assert listed.structured_content["sessions"] == []
    assert ctx.structured_content["value"] == "'missing'"  # a fresh session


def _descendant_workers() -> list[int]:
    """Process ids of the rlm-env-local workers started below this test process."""
    import os

    parents: dict[int, int] = {}
    commands: dict[int, bytes] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                parents[int(entry)] = int(fh.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                commands[int(entry)] = fh.read()
        except (OSError, ValueError, IndexError):
            continue

    def below_us(pid: int) -> bool:
        for _ in range(64):
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
            if pid <= 1:
                return False
        return False

    # the MCP server's workers are our grandchildren; a direct child is a spare of this test process's own
    # pool (left by an earlier test in the same pytest run), not the server's
    return [pid for pid, cmd in commands.items()
            if b"rlm_env_local.worker" in cmd and parents.get(pid) != os.getpid() and below_us(pid)]


def test_a_session_killed_between_calls_is_announced_through_mcp(connect):
    """The sandbox of an MCP session dies between two calls (as the OOM killer would): the next
    execute_python says the session was restarted and its variables are gone -- once."""
    import os
    import signal

    async def main():
        out = {}
        async with connect() as s:
            out["set"] = await call(s, "execute_python", code="kept = 41")
            workers = _descendant_workers()
            out["workers"] = workers
            for pid in workers:
                os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.3)
            out["after"] = await call(s, "execute_python", code=PROBE.format(name="kept"))
            out["again"] = await call(s, "execute_python", code="1 + 1")
        return out

    out = asyncio.run(main())
    assert out["set"].structured_content["success"] is True
    # the session's worker and the local environment's one spare (spare_workers = 1): both die, so the
    # restart must also see that the spare is dead and start a fresh worker
    assert len(out["workers"]) in (1, 2), out["workers"]
    after = out["after"].structured_content
    assert after["value"] == "'missing'"
    assert "session was restarted" in after["notice"] and "gone" in after["notice"]
    assert "notice" not in out["again"].structured_content
