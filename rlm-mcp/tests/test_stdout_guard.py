"""Nothing but JSON-RPC reaches stdout: user prints, server prints, warnings, logs and fd-1 writes.

A wrapper starts the real server and, once the stdio guard is installed,
makes noise from inside the server process (print, ``os.write(1, ...)``,
warnings, stdlib logging) while the client talks to it.  Every line on the
wire must be a JSON-RPC message; the noise must show up on stderr.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

NOISY_SERVER = '''
import logging, os, sys, threading, time, warnings

def noise():
    import rlm_mcp.stdio_guard as guard
    while not guard.installed:
        time.sleep(0.005)
    for i in range(40):
        print("print noise", i)
        sys.stdout.flush()
        os.write(1, b"fd1 noise\\n")
        warnings.warn("warning noise %d" % i)
        logging.getLogger("noise").error("log noise %d", i)
        time.sleep(0.01)

threading.Thread(target=noise, daemon=True).start()
from rlm.cli import main
sys.exit(main(["mcp-serve"]))
'''

PRINT_HEAVY = "for i in range(1000):\n    print('line', i, 'x' * 60)\nprint('done')"


def test_official_client_survives_a_noisy_server_and_print_heavy_code(connect, project):
    script = project / "noisy_server.py"
    script.write_text(NOISY_SERVER)

    async def main():
        async with connect(command=[sys.executable, str(script)], RLM_LOG_LEVEL="debug") as s:
            results = []
            for _ in range(3):
                results.append(await s.call_tool("execute_python", {"code": PRINT_HEAVY}))
                await asyncio.sleep(0.2)
            return results

    for result in asyncio.run(main()):
        data = result.structured_content
        assert data["success"] and data["output"].endswith("done\n")
    stderr = (project / "server-stderr.log").read_text()
    assert "print noise" in stderr and "fd1 noise" in stderr and "warning noise" in stderr


def test_every_stdout_line_is_json_rpc(project, make_env):
    script = project / "noisy_server.py"
    script.write_text(NOISY_SERVER)
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": {"name": "raw-test", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "execute_python", "arguments": {"code": PRINT_HEAVY}}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
         "params": {"name": "execute_python", "arguments": {"code": "import nosuchmodule"}}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
         "params": {"name": "execute_python", "arguments": {"code": "x", "timeout": 10000}}},
    ]
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=project, env=make_env(RLM_LOG_LEVEL="debug"))
    answers = {}
    lines = []
    try:
        for message in messages:
            proc.stdin.write((json.dumps(message) + "\n").encode())
            proc.stdin.flush()
            if "id" not in message:
                continue
            while message["id"] not in answers:
                line = proc.stdout.readline()
                assert line, "the server closed stdout"
                lines.append(line)
                data = json.loads(line)  # every line on the wire is JSON...
                assert data["jsonrpc"] == "2.0"  # ...and JSON-RPC
                if "id" in data:
                    answers[data["id"]] = data
        proc.stdin.close()
        rest = proc.stdout.read()
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read().decode()
    for line in rest.splitlines():
        assert json.loads(line)["jsonrpc"] == "2.0"
    assert answers[2]["result"]["structuredContent"]["output"].endswith("done\n")
    assert "ModuleNotFoundError" in answers[3]["result"]["structuredContent"]["error"] or \
        "nosuchmodule" in answers[3]["result"]["structuredContent"]["error"]
    assert "execute_timeout_clamped" in stderr  # a server-side log line, on stderr
    assert "print noise" in stderr and "fd1 noise" in stderr and "log noise" in stderr
    assert proc.returncode == 0, stderr[-2000:]
