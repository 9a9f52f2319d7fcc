"""``rlm mcp-serve --transport http``: streamable HTTP on 127.0.0.1 with the official client."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import pytest


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("the HTTP server did not start")


def other_address() -> str | None:
    """A non-loopback address of this machine, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_streamable_http_on_loopback(project, make_env, port):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    proc = subprocess.Popen([sys.executable, "-m", "rlm", "mcp-serve", "--transport", "http", "--port", str(port)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=project,
                            env=make_env())
    try:
        wait_for_port(port, proc)

        async def main():
            async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write), \
                    ClientSession(read, write) as s:
                await s.initialize()
                tools = await s.list_tools()
                first = await s.call_tool("execute_python", {"code": "n = 20\nprint('over http')"})
                second = await s.call_tool("execute_python", {"code": "n + 1"})
                return tools, first, second

        tools, first, second = asyncio.run(main())
        assert len(tools.tools) == 10
        assert first.structured_content["output"] == "over http\n"
        assert second.structured_content["value"] == "21"
        address = other_address()
        if address is not None:  # bound to 127.0.0.1 only
            with socket.socket() as s:
                s.settimeout(2)
                assert s.connect_ex((address, port)) != 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.stdout.read() == b""  # logs went to stderr


def test_http_refuses_foreign_host_header(project, make_env, port):
    """DNS-rebinding protection of the SDK is on for the loopback bind."""
    import http.client

    proc = subprocess.Popen([sys.executable, "-m", "rlm", "mcp-serve", "--transport", "http", "--port", str(port)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            cwd=project, env=make_env())
    try:
        wait_for_port(port, proc)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/mcp", body=b"{}", headers={"Host": "evil.example:80",
                                                           "Accept": "application/json, text/event-stream",
                                                           "Content-Type": "application/json"})
        status = conn.getresponse().status
        conn.close()
        assert status in (400, 403, 421)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
