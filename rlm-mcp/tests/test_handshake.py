"""The stdio front (:mod:`rlm_mcp.handshake`): ``initialize`` answered before the SDK is imported.

- what the front answers is what the SDK answers (compared in process, for every protocol version and a
  range of client capabilities; what the front is not sure about it leaves to the SDK);
- the official client works against it, and the front answered without pydantic / mcp imported
  (``RLM_MCP_TRACE_HANDSHAKE=1`` holds the imports until the answer and reports what was loaded);
- frames sent before the SDK is ready are all answered, in order; stdout carries JSON-RPC only;
- bad, oversized and out-of-order frames get JSON-RPC errors and the server stays usable.
No timings are asserted (``bench/mcp_startup.py`` measures them).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from rlm_mcp.handshake import handshake_versions, initialize_result

TRACE = {"RLM_MCP_TRACE_HANDSHAKE": "1"}
CLIENT_INFO = {"name": "raw-test", "version": "0"}


def init_frame(request_id=1, version="2025-06-18", capabilities=None, client_info=None, **extra):
    params = {"protocolVersion": version, "capabilities": {} if capabilities is None else capabilities,
              "clientInfo": CLIENT_INFO if client_info is None else client_info, **extra}
    return {"jsonrpc": "2.0", "id": request_id, "method": "initialize", "params": params}


async def sdk_answers(frames: list[dict]) -> list[dict]:
    """What the SDK's server (``build_server``) answers to ``frames``, on the wire."""
    import anyio
    import mcp_types as types
    from mcp.shared.message import SessionMessage

    from rlm_mcp.server import build_server

    server = build_server(None)  # the service is used by tools/call only
    send_in, recv_in = anyio.create_memory_object_stream(100)
    send_out, recv_out = anyio.create_memory_object_stream(100)
    expected = sum(1 for f in frames if "id" in f and "method" in f)
    answers = []
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.run, recv_in, send_out, server.create_initialization_options())
            for frame in frames:
                await send_in.send(SessionMessage(types.jsonrpc_message_adapter.validate_python(frame)))
            while len(answers) < expected:
                message = await recv_out.receive()
                answers.append(json.loads(message.message.model_dump_json(by_alias=True, exclude_unset=True)))
            await send_in.aclose()
    return answers


def test_the_front_reads_the_sdks_protocol_versions():
    from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION

    assert handshake_versions() == (tuple(HANDSHAKE_PROTOCOL_VERSIONS), LATEST_HANDSHAKE_VERSION)


CAPABILITIES = [
    {}, {"roots": {"listChanged": True}}, {"roots": {}}, {"sampling": {}}, {"sampling": {"context": {}, "tools": {}}},
    {"elicitation": {"form": {}, "url": {}}}, {"experimental": {"x": {"y": 1}}},
    {"roots": {"listChanged": True}, "sampling": {}, "elicitation": {}},
    # shapes the front leaves to the SDK
    {"roots": {"listChanged": "yes"}}, {"tasks": {"list": {}}}, {"extensions": {"a/b": {}}}, {"roots": []},
]
#: (initialize frame, whether the front answers it: else the SDK does, later)
FRAMES = (
    [(init_frame(version=v), True) for v in (*handshake_versions()[0], "2026-07-28", "1999-01-01", "")]
    + [(init_frame(capabilities=c), i < 8) for i, c in enumerate(CAPABILITIES)]
    + [(init_frame(request_id="init-str"), True),
       (init_frame(client_info={"name": "n", "version": "1", "title": "T", "websiteUrl": "https://x"}), True),
       (init_frame(_meta={}), True),
       (init_frame(client_info={"name": "n"}), False), (init_frame(client_info={"name": "n", "version": 1}), False),
       (init_frame(_meta={"progressToken": 1}), False), (init_frame(capabilities=[]), False),
       ({**init_frame(), "params": None}, False)]
)


@pytest.mark.parametrize(("frame", "front_answers"), FRAMES,
                         ids=[json.dumps(f["params"])[:70] for f, _ in FRAMES])
def test_what_the_front_answers_is_what_the_sdk_answers(frame, front_answers):
    from rlm_mcp.server import stdio_identity

    fast = initialize_result(frame, stdio_identity(), handshake_versions())
    sdk, ping = asyncio.run(sdk_answers([frame, {"jsonrpc": "2.0", "method": "notifications/initialized"},
                                         {"jsonrpc": "2.0", "id": 99, "method": "ping"}]))
    assert (fast is not None) == front_answers
    if fast is not None:
        assert sdk == {"jsonrpc": "2.0", "id": frame["id"], "result": fast}
    assert ping == {"jsonrpc": "2.0", "id": 99, "result": {}}  # what the front answers to a ping


def test_official_client_initializes_lists_and_calls_through_the_front(connect, project):
    async def main():
        async with connect(**TRACE) as s:
            tools = await s.list_tools()
            result = await s.call_tool("execute_python", {"code": "6 * 7"})
            pong = await s.send_ping()
            return tools, result, pong

    tools, result, pong = asyncio.run(main())
    assert "execute_python" in {t.name for t in tools.tools}
    assert result.structured_content["value"] == "42"
    assert pong is not None
    traces = [line for line in (project / "server-stderr.log").read_text().splitlines()
              if line.startswith("rlm-mcp-handshake ")]
    assert len(traces) == 1, traces
    record = json.loads(traces[0].split(" ", 1)[1])
    # the front answered initialize before pydantic, mcp or anyio were imported
    assert record["answered"] == "initialize" and record["heavy_modules"] == []


def _run_raw(project, make_env, payload: bytes, *, env=None, answers: int, timeout=60
             ) -> tuple[list[dict], str, int, bytes]:
    """Write ``payload`` at once to a fresh server, read until ``answers`` answers (responses to requests)
    arrived, close stdin; return (every stdout message, stderr, exit code, raw stdout)."""
    import threading

    proc = subprocess.Popen([sys.executable, "-m", "rlm", "mcp-serve"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=project,
                            env=make_env(**(env or {})))
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    raw = b""
    try:
        stderr_chunks = []
        threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True).start()
        proc.stdin.write(payload)
        proc.stdin.flush()
        seen = 0
        while seen < answers:
            line = proc.stdout.readline()
            assert line, f"the server closed stdout after {raw[-500:]!r}"
            raw += line
            if json.loads(line).get("id") is not None:
                seen += 1
        proc.stdin.close()  # the client is done: the server exits 0
        raw += proc.stdout.read()
        proc.wait(timeout=30)
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = b"".join(stderr_chunks).decode(errors="replace") if stderr_chunks else ""
    lines = raw.split(b"\n")
    assert lines[-1] == b"", raw[-200:]  # whole lines only
    messages = [json.loads(line) for line in lines[:-1]]  # every line on stdout is JSON...
    assert all(m.get("jsonrpc") == "2.0" for m in messages)  # ...and JSON-RPC
    return messages, stderr, proc.returncode, raw


def _lines(*frames) -> bytes:
    return b"".join((f if isinstance(f, bytes) else json.dumps(f).encode()) + b"\n" for f in frames)


def test_frames_sent_before_the_sdk_is_ready_are_all_answered_in_order(project, make_env):
    frames = [init_frame(1), {"jsonrpc": "2.0", "method": "notifications/initialized"},
              {"jsonrpc": "2.0", "id": 2, "method": "ping"}]
    for i in range(3, 13):
        frames.append({"jsonrpc": "2.0", "id": i, "method": "tools/list"} if i % 3 else
                      {"jsonrpc": "2.0", "id": i, "method": "ping"})
    frames.append({"jsonrpc": "2.0", "id": 13, "method": "tools/call",
                   "params": {"name": "execute_python", "arguments": {"code": "print('x' * 10)\n1 + 1"}}})
    messages, stderr, code, _ = _run_raw(project, make_env, _lines(*frames), env=TRACE, answers=13)
    assert "rlm-mcp-handshake " in stderr  # initialize was answered by the front
    assert [m["id"] for m in messages] == list(range(1, 14)), messages
    assert all("result" in m for m in messages), [m for m in messages if "error" in m]
    assert messages[0]["result"]["serverInfo"]["name"] == "rlm"
    assert len(messages[4]["result"]["tools"]) >= 10
    assert messages[-1]["result"]["structuredContent"]["value"] == "2"
    assert code == 0, stderr[-2000:]


def test_bad_and_oversized_frames_get_json_rpc_errors_and_the_server_stays_usable(project, make_env):
    big = b'{"jsonrpc": "2.0", "id": 50, "method": "ping", "params": {"pad": "' + b"x" * 10_000 + b'"}}'
    frames = [b"this is not json", b"[1, 2]", b'{"id": 7, "method": "ping"}', b"", big, init_frame(1),
              {"jsonrpc": "2.0", "method": "notifications/initialized"}, b"{broken", big,
              {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": "execute_python", "arguments": {"code": "21 * 2"}}}]
    messages, stderr, code, raw = _run_raw(project, make_env, _lines(*frames),
                                           env={**TRACE, "RLM_MCP_MAX_FRAME_BYTES": "4096"}, answers=3)
    assert b"Traceback" not in raw and "Traceback" not in stderr
    errors = [m for m in messages if "error" in m]
    assert [(e["id"], e["error"]["code"]) for e in errors] == [
        (None, -32700), (None, -32600), (7, -32600), (None, -32600), (None, -32700), (None, -32600)]
    assert errors[3]["error"]["data"] == {"limit_bytes": 4096} and "4096" in errors[3]["error"]["message"]
    results = {m["id"]: m["result"] for m in messages if "result" in m}
    assert results[1]["protocolVersion"] == "2025-06-18"  # a bad first frame does not stop the handshake
    assert "rlm-mcp-handshake " in stderr  # ... nor the front
    assert results[2]["structuredContent"]["value"] == "42"
    assert code == 0, stderr[-2000:]


def test_a_request_before_initialize_is_left_to_the_sdk(project, make_env):
    frames = [{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, {"jsonrpc": "2.0", "id": 2, "method": "nosuch"},
              init_frame(3), {"jsonrpc": "2.0", "method": "notifications/initialized"},
              {"jsonrpc": "2.0", "id": 4, "method": "tools/list"}]
    messages, stderr, code, _ = _run_raw(project, make_env, _lines(*frames), env=TRACE, answers=4)
    sdk = asyncio.run(sdk_answers(frames))
    assert "rlm-mcp-handshake " not in stderr  # the front stepped aside
    by_id = {m["id"]: m for m in messages}
    assert by_id[1] == sdk[0] and by_id[1]["error"]["code"] == -32602  # the SDK's own answers
    assert by_id[2] == sdk[1] and by_id[2]["error"]["code"] == -32601
    assert by_id[3] == next(m for m in sdk if m["id"] == 3) and "result" in by_id[3]
    assert len(by_id[4]["result"]["tools"]) >= 10
    assert code == 0, stderr[-2000:]
