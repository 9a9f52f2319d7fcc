"""``rlm mcp-serve`` takes stdio and answers ``initialize`` before the configuration is loaded.

- the transport is read on its own first (:func:`rlm.config.peek_plugin_setting`): stdio is taken
  only when it is certain; ``[plugins.mcp] transport = "http"`` (or its environment variable) leaves
  stdin and stdout alone;
- an error found after the handshake was answered (a wrong ``[rlm]`` value, a missing environment
  plugin) reaches the client as a JSON-RPC error on its next request, and stderr as before, with the
  same exit code; a configuration that cannot be read at all is reported before stdio is taken.
stdout carries JSON-RPC only in every case.  No timings are asserted.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

TRACE = {"RLM_MCP_TRACE_HANDSHAKE": "1"}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
LIST_TOOLS = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}


def init_frame(request_id: int) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "0"}}}


def _serve(project, make_env, frames, *args, env=None) -> tuple[list[dict], str, int]:
    """Run ``rlm mcp-serve ARGS`` with ``frames`` on stdin (then closed); (stdout messages, stderr, exit code)."""
    payload = b"".join(json.dumps(f).encode() + b"\n" for f in frames)
    proc = subprocess.run([sys.executable, "-m", "rlm", "mcp-serve", *args], input=payload, capture_output=True,
                          cwd=project, env=make_env(**(env or {})), timeout=120)
    lines = proc.stdout.split(b"\n")
    assert lines[-1] == b"", proc.stdout[-200:]  # whole lines only
    messages = [json.loads(line) for line in lines[:-1]]
    assert all(m.get("jsonrpc") == "2.0" for m in messages)  # JSON-RPC only
    return messages, proc.stderr.decode(errors="replace"), proc.returncode


def test_a_wrong_setting_found_after_the_handshake_reaches_the_client_and_stderr(project, make_env):
    toml = project / "rlm.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace("[rlm]\n", "[rlm]\nmax_turns = \"many\"\n"),
                    encoding="utf-8")
    messages, stderr, code = _serve(project, make_env, [init_frame(1), INITIALIZED, LIST_TOOLS], env=TRACE)
    by_id = {m["id"]: m for m in messages}
    assert "rlm-mcp-handshake " in stderr  # answered by the front, before the configuration was read
    assert by_id[1]["result"]["serverInfo"]["name"] == "rlm"
    error = by_id[2]["error"]
    assert error["code"] == -32603 and error["message"].startswith("rlm mcp-serve could not start: ")
    assert "max_turns" in error["message"]
    assert "rlm: error: " in stderr and "max_turns" in stderr and "Traceback" not in stderr
    assert code == 2


def test_a_missing_environment_plugin_reaches_the_client_with_its_fix(project, make_env):
    messages, stderr, code = _serve(project, make_env, [init_frame(1), INITIALIZED, LIST_TOOLS], "--env", "nosuch")
    by_id = {m["id"]: m for m in messages}
    assert "result" in by_id[1]
    assert "environment 'nosuch' is not installed" in by_id[2]["error"]["message"]
    assert "environment 'nosuch' is not installed" in stderr
    assert code == 3


def test_a_configuration_that_cannot_be_read_is_reported_before_stdio_is_taken(project, make_env):
    (project / "rlm.toml").write_text("[rlm\n", encoding="utf-8")
    messages, stderr, code = _serve(project, make_env, [init_frame(1), INITIALIZED, LIST_TOOLS])
    assert messages == []  # nobody answered the handshake: the client sees the server exit
    assert "rlm: error: " in stderr and "invalid TOML" in stderr
    assert code == 2


def _wait_for_port(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode(errors="replace")[-2000:]
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("the HTTP server did not start")


def test_a_configured_http_transport_leaves_stdio_alone(project, make_env, port):
    toml = project / "rlm.toml"
    toml.write_text(toml.read_text(encoding="utf-8") + f'transport = "http"\nport = {port}\n', encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "rlm", "mcp-serve"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=project, env=make_env())
    try:
        proc.stdin.write(json.dumps(init_frame(1)).encode() + b"\n")  # a stdio client by mistake
        proc.stdin.flush()
        _wait_for_port(proc, port)
    finally:
        proc.kill()
        out, _ = proc.communicate(timeout=30)
    assert out == b""  # not answered: stdio was never the transport
