"""rlm-runtime 2.x names through the official MCP client: ``destroy_session``, ``profile``, ``run_completion``."""

from __future__ import annotations

import asyncio

import pytest
from rlm_mcp.service import ToolArgumentError, resolve_legacy
from rlm_mcp.tools import ALIASES, RETIRED, TOOLS_BY_NAME


def test_a_2x_client_calling_destroy_session_closes_the_session_which_tools_list_does_not_show(connect):
    async def main():
        out = {}
        async with connect() as s:
            out["listed"] = {t.name for t in (await s.list_tools()).tools}
            await s.call_tool("execute_python", {"code": "x = 1", "session_id": "work"})
            out["destroy"] = await s.call_tool("destroy_session", {"session_id": "work"})
            out["after"] = await s.call_tool("get_repl_context", {"session_id": "work"})
            out["sessions"] = await s.call_tool("list_sessions", {})
            out["unknown"] = await s.call_tool("destroy_session", {"session_id": "nope"})
            out["bad_args"] = await s.call_tool("destroy_session", {"session_id": "work", "force": True})
            out["quick"] = await s.call_tool("execute_python", {"code": "6 * 7", "profile": "quick"})
            out["bad_profile"] = await s.call_tool("execute_python", {"code": "1", "profile": "turbo"})
            out["run_completion"] = await s.call_tool("run_completion", {"prompt": "hi"})
        return out

    out = asyncio.run(main())
    assert "destroy_session" not in out["listed"] and "run_completion" not in out["listed"]
    assert "close_session" in out["listed"]
    destroyed = out["destroy"]
    assert destroyed.is_error is False
    assert destroyed.structured_content == {"session_id": "work", "closed": True, "repl_session_closed": True,
                                            "rlm_session_closed": False}
    assert out["after"].is_error is True and "'work'" in out["after"].structured_content["error"]
    assert [x["session_id"] for x in out["sessions"].structured_content["sessions"]] == []
    unknown = out["unknown"].structured_content
    assert out["unknown"].is_error is True and "'nope'" in unknown["error"] and "list_sessions" in unknown["fix"]
    assert out["bad_args"].is_error is True and "force" in out["bad_args"].structured_content["error"]
    assert out["quick"].is_error is False and out["quick"].structured_content["value"] == "42"
    bad = out["bad_profile"].structured_content
    assert out["bad_profile"].is_error is True and "'turbo'" in bad["error"] and "quick" in bad["error"]
    assert "timeout" in bad["fix"]
    retired = out["run_completion"].structured_content
    assert out["run_completion"].is_error is True and "rlm_complete" in retired["fix"]


def test_profile_maps_onto_timeout_and_an_explicit_timeout_wins():
    assert resolve_legacy("execute_python", {"code": "1", "profile": "quick"}) == (
        "execute_python", {"code": "1", "timeout": 5.0})
    assert resolve_legacy("execute_python", {"code": "1", "profile": "extended"})[1]["timeout"] == 300.0
    assert resolve_legacy("execute_python", {"code": "1", "profile": "default"}) == (
        "execute_python", {"code": "1"})  # the server's own default timeout
    assert resolve_legacy("execute_python", {"code": "1", "profile": "analysis", "timeout": 7})[1]["timeout"] == 7
    with pytest.raises(ToolArgumentError, match="profile"):
        resolve_legacy("execute_python", {"code": "1", "profile": ["quick"]})
    assert resolve_legacy("get_repl_context", {"session_id": "a"}) == ("get_repl_context", {"session_id": "a"})


def test_every_alias_names_a_listed_tool_and_says_how_it_differs():
    for alias in ALIASES.values():
        assert alias.target in TOOLS_BY_NAME and alias.name not in TOOLS_BY_NAME
        assert alias.difference
    assert not set(RETIRED) & set(TOOLS_BY_NAME)
