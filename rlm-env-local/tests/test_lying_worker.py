"""The host trusts nothing the worker says.

Raw Python in the jail (the RestrictedPython layer switched off) finds the
protocol channel and forges replies: huge fields, lines past the frame limit,
deeply nested JSON, fields of the wrong type, malformed callbacks.  The host
caps every text itself (``truncated`` says so), turns every violation into a
result that says the worker was restarted -- never an exception out of
``execute()`` -- and the next cell runs in a fresh worker.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

import pytest

from rlm.errors import SandboxError
from rlm_env_local import jail
from rlm_repl.replies import MAX_FRAME_BYTES

pytestmark = pytest.mark.skipif(any(jail.probe(()).values()), reason="this machine lacks an OS layer of the jail")

FORGE = (
    "import gc, json, os\n"
    "server = next(o for o in gc.get_objects() if type(o).__name__ == 'Server')\n"
    "channel = server.channel\n"
    "def forge(message):\n"
    "    message['nonce'] = channel.nonce\n"
    "    data = (json.dumps(message) + '\\n').encode()\n"
    "    while data:\n"
    "        data = data[os.write(channel.wfile.fileno(), data):]\n"
    "def forge_raw(data):\n"
    "    while data:\n"
    "        data = data[os.write(channel.wfile.fileno(), data):]\n"
)
LIMIT = 5_000


@pytest.fixture
def liar(env_factory: Any) -> Any:
    env = env_factory(output_limit=LIMIT, timeout=20.0, memory_limit_mb=1024, disable_layers={"python-guards"})
    yield env
    asyncio.run(env.close())


async def _forge(env: Any, body: str) -> Any:
    await env.start()
    return await env.execute(FORGE + body)


async def _alive(env: Any) -> None:
    result = await env.execute("x = 6*7\nx")
    assert result.error is None and result.value == "42", result


def test_huge_fields_are_capped_by_the_host(liar):
    async def body() -> None:
        result = await _forge(liar, (
            "forge({'id': server.request_id, 'op': 'done', 'output': 'o' * 4_000_000, 'truncated': False, 'value': 'v' * 4_000_000,\n"
            "       'error': 'e' * 4_000_000, 'final': {'kind': 'final', 'value': 'f' * 4_000_000, 'variable': None}})\n"
            "os._exit(0)"))
        assert result.truncated is True
        assert len(result.output) <= LIMIT and len(result.value or "") <= LIMIT
        assert len(result.error or "") <= max(LIMIT, 20_000)
        assert result.final is not None and len(result.final.value) <= LIMIT
        await _alive(liar)
    asyncio.run(body())


@pytest.mark.parametrize(("name", "forgery"), [
    ("frame_past_the_limit", f"forge_raw(b'x' * ({MAX_FRAME_BYTES} + (4 << 20)) + b'\\n')\nimport time\ntime.sleep(60)"),
    ("deeply_nested_json", "forge_raw(b'[' * 200000 + b']' * 200000 + b'\\n')\nimport time\ntime.sleep(60)"),
    ("wrong_field_types", "forge({'id': server.request_id, 'op': 'done', 'output': 12, 'value': ['x'], 'error': None})\nos._exit(0)"),
    ("forged_final_kind", "forge({'id': server.request_id, 'op': 'done', 'output': '', 'final': {'kind': 'x', 'value': 1}})\nos._exit(0)"),
    ("malformed_batched_callback",
     "forge({'id': server.request_id, 'op': 'llm_query_batched', 'seq': 1, 'prompts': 'not a list'})\nimport time\ntime.sleep(60)"),
    ("reply_to_another_request", "forge({'id': server.request_id + 7, 'op': 'done', 'output': 'forged'})\nimport time\ntime.sleep(60)"),
    ("unknown_message", "forge({'id': server.request_id, 'op': 'hello'})\nimport time\ntime.sleep(60)"),
])
def test_protocol_violations_become_a_result_and_a_fresh_worker(liar, name, forgery):
    async def body() -> None:
        before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        old_pid = (await liar.start(), liar.pid)[1]
        result = await _forge(liar, forgery)  # never raises
        grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kib) / 1024
        assert result.error is not None and "restarted" in result.error, result
        assert "forged" not in result.output
        assert liar.pid is not None and liar.pid != old_pid
        assert grown_mib < 150, f"{name}: the host grew by {grown_mib:.0f} MiB"
        await _alive(liar)
    asyncio.run(body())


def test_a_lying_get_reply_is_a_sandbox_error_and_a_restart(liar):
    async def body() -> None:
        await _forge(liar, (
            "class Evil:\n"
            "    def __repr__(self):\n"
            "        forge({'id': server.request_id, 'op': 'done', 'found': True, 'json': '[' * 100000 + ']' * 100000})\n"
            "        os._exit(0)\n"
            "evil = Evil()"))
        with pytest.raises(SandboxError, match="restarted"):
            await liar.get_variable("evil")
        await _alive(liar)
    asyncio.run(body())


def test_a_worker_lost_between_calls_is_announced_by_the_next_result(env_factory):
    import os
    import signal

    env = env_factory()

    async def body() -> None:
        await env.execute("kept = 1")
        os.kill(env.pid, signal.SIGKILL)  # e.g. the kernel's OOM killer, between two calls
        await asyncio.sleep(0.2)
        result = await env.execute("'kept' in dir()")
        assert result.notice is not None and "variables" in result.notice and "gone" in result.notice
        assert "SIGKILL" in result.notice or "killed" in result.notice
        again = await env.execute("1")
        assert again.notice is None  # said once
        await env.close()

    asyncio.run(body())


def test_a_cancelled_call_is_announced_by_the_next_result(env_factory):
    env = env_factory()

    async def body() -> None:
        task = asyncio.ensure_future(env.execute("import time\ntime.sleep(30)"))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        result = await env.execute("1")
        assert result.value == "1" and "cancelled" in (result.notice or "")
        await env.close()

    asyncio.run(body())
