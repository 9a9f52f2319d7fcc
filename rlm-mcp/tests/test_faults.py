"""Fault semantics of ``rlm mcp-serve`` (issue 18), with the official client against the real server.

- a slow backend import in an agent run does not hold up the other tools;
- SIGTERM / SIGINT cancel the agent runs in flight, every trajectory ends with
  ``run_end``, and the process exits promptly with 128 + the signal's number
  (stdio and HTTP);
- a session id that is not open is an error for every tool but
  ``execute_python`` (the only one that starts sessions), and nothing is started;
- an HTTP request body over ``[plugins.mcp] max_body_mb`` gets a JSON-RPC
  error carrying the limit, and the server goes on serving;
- ``truncated`` is true whenever a field was cut.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from rlm_testing.server import Reply

pytest.importorskip("rlm_backend_openai")

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

#: Seconds the fake backend's import takes (an SDK import: openai 1.6 s, litellm 8.9 s).
SLOW_IMPORT_S = 6.0

SLOW_PLUGIN = '''
from rlm import hookimpl


@hookimpl
def rlm_register_backends(register):
    register("slow", "rlm_slow_backend_impl:make", description="the openai backend behind a slow import")
'''

SLOW_IMPL = '''
import os
import time

time.sleep(float(os.environ["RLM_TEST_SLOW_IMPORT_S"]))  # what importing a big SDK does to its caller

from rlm_backend_openai.backend import OpenAIBackend


def make(*, settings=None):
    return OpenAIBackend(settings=settings)
'''


def slow_backend_plugin(root: Path) -> Path:
    """A backend plugin named ``slow``, installed by an entry point in ``root`` (put it on PYTHONPATH)."""
    root.mkdir()
    (root / "rlm_slow_backend.py").write_text(SLOW_PLUGIN)
    (root / "rlm_slow_backend_impl.py").write_text(SLOW_IMPL)
    dist = root / "rlm_slow_backend-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rlm-slow-backend\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[rlm]\nslow = rlm_slow_backend\n")
    return root


async def timed(coro):
    started = time.monotonic()
    result = await coro
    return result, time.monotonic() - started


async def wait_state(session, run_id, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        status = (await session.call_tool("rlm_agent_status", {"run_id": run_id})).structured_content
        if status["state"] != "running" or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.1)


# --- 1. no blocking import on the event loop -----------------------------------------------------

def test_a_slow_backend_import_does_not_hold_up_other_tools(connect, llm, tmp_path):
    plugin = slow_backend_plugin(tmp_path / "plugin")
    pythonpath = os.pathsep.join(filter(None, [str(plugin), os.environ.get("PYTHONPATH")]))
    llm.script([Reply.text("done")])

    async def main():
        async with connect(RLM_BACKEND="slow", PYTHONPATH=pythonpath,
                           RLM_TEST_SLOW_IMPORT_S=str(SLOW_IMPORT_S)) as s:
            await s.call_tool("execute_python", {"code": "warm = 1"})  # the sandbox is up
            started = time.monotonic()
            run, run_s = await timed(s.call_tool("rlm_agent_run", {"task": "say done"}))
            run = run.structured_content
            await asyncio.sleep(0.5)  # the run's thread is importing its backend now
            listed, list_s = await timed(s.call_tool("list_sessions", {}))
            executed, exec_s = await timed(s.call_tool("execute_python", {"code": "warm + 41"}))
            during = (await s.call_tool("rlm_agent_status", {"run_id": run["run_id"]})).structured_content
            requests_during = len(llm.requests)
            return started, run_s, listed, list_s, executed, exec_s, during, requests_during, \
                await wait_state(s, run["run_id"])

    started, run_s, listed, list_s, executed, exec_s, during, requests_during, final = asyncio.run(main())
    # the other tools answered while the backend was still being imported...
    assert during["state"] == "running" and requests_during == 0, during
    assert [x["session_id"] for x in listed.structured_content["sessions"]] == ["default"]
    assert executed.structured_content["value"] == "42"
    assert list_s < 2.0 and exec_s < 3.0, (list_s, exec_s)
    assert run_s < 3.0, run_s  # rlm_agent_run itself returns before the import is done
    # ...and the run did go through the slow import, then completed
    assert final["state"] == "completed" and final["answer"] == "done", final
    assert len(llm.requests) == 1
    assert llm.requests[0].time - started >= SLOW_IMPORT_S - 0.5


# --- 2. graceful shutdown on SIGTERM / SIGINT ----------------------------------------------------

STDIO_WRAPPER = '''
import os, sys
with open(sys.argv[1], "w") as fh:
    fh.write(str(os.getpid()))
from rlm.cli import main
code = main(["mcp-serve"])
with open(sys.argv[2], "w") as fh:
    fh.write(str(code))
sys.exit(code)
'''


def assert_cancelled_trajectory(found: list[list[dict]], trajectory_id: str) -> None:
    assert len(found) == 1, [t[:1] for t in found]
    events = found[0]
    assert events[0]["type"] == "run_start" and events[0]["trajectory_id"] == trajectory_id
    last = events[-1]
    assert last["type"] == "run_end", [e["type"] for e in events]
    assert last["answer_source"] == "cancelled" and last["error"], last


async def wait_for(predicate, timeout: float) -> float:
    """Seconds until ``predicate()`` held (fails past ``timeout``)."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "timed out"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, None], ids=["SIGTERM", "SIGINT", "stdin-closed"])
def test_a_signal_over_stdio_cancels_runs_and_finishes_their_trajectories(connect, llm, project, read_trajectories,
                                                                         signum):
    """The same cleanup when the client just closes stdin (what Claude Desktop does first): exit 0."""
    llm.script([Reply.slow(60)])
    script = project / "wrapper.py"
    script.write_text(STDIO_WRAPPER)
    pid_file, code_file = project / "server.pid", project / "server.code"

    def code_written() -> bool:
        return code_file.exists() and code_file.read_text().strip() != ""

    async def main():
        async with connect(command=[sys.executable, str(script), str(pid_file), str(code_file)]) as s:
            run = (await s.call_tool("rlm_agent_run", {"task": "take your time"})).structured_content
            await asyncio.to_thread(llm.wait_for_requests, 1, 20.0)
            status = (await s.call_tool("rlm_agent_status", {"run_id": run["run_id"]})).structured_content
            assert status["state"] == "running" and status["trajectory_id"]
            started = time.time()
            if signum is not None:
                os.kill(int(pid_file.read_text()), signum)
                await wait_for(code_written, timeout=20)
        # leaving the block closed stdin (the official client gives the server 2 s before SIGTERM)
        await wait_for(code_written, timeout=20)
        return status, code_file.stat().st_mtime - started  # seconds until the exit code was written

    status, exited_in = asyncio.run(main())
    assert int(code_file.read_text()) == (128 + signum if signum is not None else 0)
    assert exited_in < (12 if signum is not None else 2.0), exited_in
    assert_cancelled_trajectory(read_trajectories(), status["trajectory_id"])
    assert "Traceback" not in (project / "server-stderr.log").read_text()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_over_http_cancels_runs_and_finishes_their_trajectories(http_server, llm, project, read_trajectories, signum):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    llm.script([Reply.slow(60)])
    with http_server() as (proc, url):
        async def main():
            async with streamable_http_client(url) as (read, write), ClientSession(read, write) as s:
                await s.initialize()
                run = (await s.call_tool("rlm_agent_run", {"task": "take your time"})).structured_content
                await asyncio.to_thread(llm.wait_for_requests, 1, 20.0)
                status = (await s.call_tool("rlm_agent_status", {"run_id": run["run_id"]})).structured_content
                assert status["state"] == "running" and status["trajectory_id"]
                proc.send_signal(signum)  # while the client is still connected
                exited_in = await wait_for(lambda: proc.poll() is not None, timeout=20)
                return status, exited_in

        status, exited_in = asyncio.run(main())
    stderr = (project / "server-stderr.log").read_text()
    assert proc.returncode == 128 + signum, stderr[-2000:]
    assert exited_in < 12, exited_in
    assert_cancelled_trajectory(read_trajectories(), status["trajectory_id"])
    assert "Traceback" not in stderr and "ERROR" not in stderr, stderr[-2000:]


# --- 3. unknown session ids are errors -----------------------------------------------------------

def test_only_execute_python_starts_sessions(connect):
    async def main():
        out = {}
        async with connect() as s:
            for name, args in [("get_repl_context", {"session_id": "typo"}),
                               ("set_repl_context", {"session_id": "typo", "key": "k", "value": 1}),
                               ("clear_repl_context", {"session_id": "typo"}),
                               ("close_session", {"session_id": "typo"}),
                               ("get_repl_context", {})]:  # not even 'default' is started behind the back
                out[name, args.get("session_id")] = await s.call_tool(name, args)
            out["listed"] = await s.call_tool("list_sessions", {})
            out["started"] = await s.call_tool("execute_python", {"code": "n = 1", "session_id": "typo"})
            out["set"] = await s.call_tool("set_repl_context", {"session_id": "typo", "key": "k", "value": 2})
            out["get"] = await s.call_tool("get_repl_context", {"session_id": "typo"})
            out["close"] = await s.call_tool("close_session", {"session_id": "typo"})
            out["closed_again"] = await s.call_tool("close_session", {"session_id": "typo"})
            out["listed_after"] = await s.call_tool("list_sessions", {})
        return out

    out = asyncio.run(main())
    refused = [out[key] for key in out if isinstance(key, tuple)]
    assert len(refused) == 5
    for result in refused:
        assert result.is_error, result
        error = result.structured_content
        assert "execute_python" in error["fix"] and "list_sessions" in error["fix"]
    assert all("'typo'" in r.structured_content["error"] for r in refused[:4])
    assert "'default'" in refused[4].structured_content["error"]
    assert out["listed"].structured_content["sessions"] == []  # nothing was started
    assert out["started"].structured_content["success"] and out["started"].structured_content["session_id"] == "typo"
    assert not out["set"].is_error and not out["get"].is_error
    assert set(out["get"].structured_content["variables"]) == {"n", "k"}
    assert out["close"].structured_content == {"session_id": "typo", "closed": True, "repl_session_closed": True,
                                               "rlm_session_closed": False}
    assert out["closed_again"].is_error
    assert out["listed_after"].structured_content["sessions"] == []


# --- 4. the HTTP body limit ----------------------------------------------------------------------

def test_a_body_over_the_limit_gets_a_json_rpc_error_naming_it(http_server):
    import httpx
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.exceptions import MCPError
    from mcp.types import INVALID_REQUEST

    limit = 256 * 1024
    with http_server(RLM_PLUGINS__MCP__MAX_BODY_MB="0.25") as (proc, url):
        async def main():
            async with streamable_http_client(url) as (read, write), ClientSession(read, write) as s:
                await s.initialize()
                under = await s.call_tool("execute_python", {"code": f"len('{'u' * (limit - 2048)}')"})
                with pytest.raises(MCPError) as refused:
                    await s.call_tool("execute_python", {"code": f"len('{'o' * limit}')"})
                after = await s.call_tool("execute_python", {"code": "'still serving'"})
                return under, refused.value, after

        under, refused, after = asyncio.run(main())
        assert under.structured_content["value"] == str(limit - 2048)
        assert refused.code == INVALID_REQUEST
        assert refused.data["limit_bytes"] == limit and refused.data["body_bytes"] > limit
        assert "max_body_mb" in refused.message and str(limit) in refused.message
        assert after.structured_content["value"] == "'still serving'"

        # a raw client sees a 413 whose body is a JSON-RPC error
        raw = httpx.post(url, content=b"x" * (limit + 1), timeout=30,
                         headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
        assert raw.status_code == 413 and raw.headers["content-type"] == "application/json"
        body = raw.json()
        assert body["jsonrpc"] == "2.0" and body["error"]["code"] == INVALID_REQUEST
        assert body["error"]["data"] == {"limit_bytes": limit, "body_bytes": limit + 1,
                                         "option": "[plugins.mcp] max_body_mb"}
        assert proc.poll() is None


def test_the_default_body_limit_is_4_mib(http_server):
    import httpx

    with http_server() as (_, url):
        raw = httpx.post(url, content=b"x" * (4 * 1024 * 1024 + 1), timeout=30,
                         headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
    assert raw.status_code == 413 and raw.json()["error"]["data"]["limit_bytes"] == 4 * 1024 * 1024


# --- 5. honest truncated flags -------------------------------------------------------------------

def test_truncated_is_true_whenever_a_field_was_cut(connect):
    async def main():
        async with connect() as s:
            cells = {"small": "print('a'); 'b'",
                     "value": "'v' * 300_000",
                     "output": "print('o' * 300_000)",
                     "error": "raise ValueError('e' * 300_000)"}
            return {name: (await s.call_tool("execute_python", {"code": code})).structured_content
                    for name, code in cells.items()}

    out = asyncio.run(main())
    small = out["small"]
    assert small["truncated"] is False and "truncated_fields" not in small
    value = out["value"]
    assert len(value["value"]) < 300_000 and value["truncated"] is True and value["truncated_fields"] == ["value"]
    output = out["output"]
    assert len(output["output"]) < 300_000 and output["truncated"] is True
    assert output["truncated_fields"] == ["output"]
    error = out["error"]
    assert error["success"] is False and len(error["error"]) < 300_000
    assert error["truncated"] is True and error["truncated_fields"] == ["error"]
