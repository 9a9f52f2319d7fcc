"""Behaviour of LocalEnvironment beyond the conformance suite: limits, crashes, files,
callbacks and timing, the worker process itself, and the host/worker protocol."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlm.errors import SandboxError
from rlm_env_local.config import LocalEnvConfig
from rlm_testing.environment_suite import FakeHostCallbacks


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_result_reports_memory_and_cpu(env_factory):
    async def body():
        env = env_factory()
        result = await env.execute("total = sum(i * i for i in range(200000))\ntotal")
        assert result.error is None
        assert result.memory_peak_bytes is not None and result.memory_peak_bytes > 1_000_000
        assert result.cpu_time_ms is not None and result.cpu_time_ms >= 0
        assert result.execution_time_ms > 0
        await env.close()

    _run(body())


def test_cpu_limit_kills_and_restarts(env_factory):
    async def body():
        env = env_factory(cpu_limit_s=1, timeout=30)
        await env.execute("before = 1")
        result = await env.execute("while True:\n    pass")
        assert result.error is not None and "CPU time limit" in result.error
        assert "restarted" in result.error
        after = await env.execute("before")
        assert after.error is not None and "NameError" in after.error
        assert (await env.execute("1 + 1")).value == "2"
        await env.close()

    _run(body())


def test_worker_killed_from_outside_is_reported(env_factory):
    async def body():
        env = env_factory()
        await env.start()
        pid = env.pid

        async def kill_soon():
            await asyncio.sleep(0.3)
            os.kill(pid, signal.SIGKILL)

        killer = asyncio.create_task(kill_soon())
        result = await env.execute("import time\ntime.sleep(20)")
        await killer
        assert result.error is not None and "killed" in result.error
        assert env.pid != pid
        assert (await env.execute("2 + 2")).value == "4"
        await env.close()

    _run(body())


def test_cancelled_execution_kills_the_worker_and_the_next_call_works(env_factory):
    async def body():
        env = env_factory()
        await env.start()
        first = env.pid
        task = asyncio.create_task(env.execute("import time\ntime.sleep(20)"))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await env.execute("3")).value == "3"
        assert env.pid != first
        await env.close()

    _run(body())


def test_slow_repr_in_get_context_is_a_sandbox_error(env_factory):
    async def body():
        env = env_factory(timeout=1)
        await env.execute("class Slow:\n    def __repr__(self):\n        while True:\n            pass\ns = Slow()")
        with pytest.raises(SandboxError, match="did not answer"):
            await env.get_context()
        assert (await env.execute("5")).value == "5"
        await env.close()

    _run(body())


def test_broken_repr_and_non_json_values(env_factory):
    async def body():
        env = env_factory()
        await env.execute("class Bad:\n    def __repr__(self):\n        raise ValueError('no')\nb = Bad()\n"
                          "pair = (1, 2)\nnumbers = {3, 1}")
        context = await env.get_context()
        assert "Bad" in context["b"]  # a placeholder, not an error
        assert await env.get_variable("pair") == [1, 2]  # JSON: tuples become lists
        assert await env.get_variable("numbers") == "{1, 3}"  # not JSON: the repr
        await env.close()

    _run(body())


def test_set_context_validates(env_factory):
    async def body():
        env = env_factory()
        with pytest.raises(ValueError):
            await env.set_context("_hidden", 1)
        with pytest.raises(ValueError):
            await env.set_context("not valid", 1)
        with pytest.raises(TypeError):
            await env.set_context("obj", object())
        await env.close()

    _run(body())


def test_time_in_llm_callbacks_counts_against_the_timeout(env_factory):
    class Slow(FakeHostCallbacks):
        async def llm_query(self, prompt):
            await asyncio.sleep(1.2)
            return "late answer"

    async def body():
        env = env_factory(Slow(), timeout=1)
        result = await env.execute("llm_query('x')")
        assert result.value is None and "llm_query time included" in (result.error or "")
        fast = await env.execute("llm_query('y')", timeout=5)
        assert fast.error is None and fast.value == "'late answer'"
        await env.close()

    _run(body())


def test_llm_query_rejects_non_strings(env_factory):
    async def body():
        env = env_factory(FakeHostCallbacks())
        assert "TypeError" in (await env.execute("llm_query(3)")).error
        assert "TypeError" in (await env.execute("llm_query_batched('abc')")).error
        await env.close()

    _run(body())


def test_works_across_event_loops(env_factory):
    env = env_factory()
    _run(env.execute("across = 'loops'"))
    assert _run(env.execute("across")).value == "'loops'"
    assert _run(env.get_variable("across")) == "loops"
    _run(env.close())


def test_concurrent_calls_are_serialised(env_factory):
    async def body():
        env = env_factory()
        results = await asyncio.gather(*(env.execute(f"v{i} = {i}\nv{i} * 10") for i in range(8)))
        assert [r.value for r in results] == [str(i * 10) for i in range(8)]
        await env.close()

    _run(body())


def test_worker_has_no_host_secrets_and_dies_with_close(env_factory, monkeypatch):
    monkeypatch.setenv("RLM_TEST_API_KEY", "sk-secret-value")

    async def body():
        env = env_factory()
        await env.start()
        pid = env.pid
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read()
        assert b"sk-secret-value" not in environ
        await env.close()
        await env.close()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        with pytest.raises(SandboxError, match="closed"):
            await env.execute("1")

    _run(body())


def test_worker_limits_are_set(env_factory):
    async def body():
        env = env_factory(memory_limit_mb=300, max_open_files=40)
        await env.start()
        with open(f"/proc/{env.pid}/limits") as f:
            limits = f.read()
        lines = {line[:26].strip(): line[26:].split() for line in limits.splitlines()[1:]}
        assert lines["Max address space"][0] == str(300 * 1024 * 1024)
        assert lines["Max open files"][0] == "40"
        assert lines["Max processes"][0] == "0"
        assert lines["Max core file size"][0] == "0"
        await env.close()

    _run(body())


def test_startup_failure_is_a_sandbox_error(env_factory):
    async def body():
        env = env_factory(options=LocalEnvConfig(python="/nonexistent/python3"))
        with pytest.raises(SandboxError, match="cannot start"):
            await env.start()

    _run(body())


def test_files_inside_allowed_paths(env_factory, sandbox_tree):
    async def body():
        env = env_factory()
        result = await env.execute(
            "with open('data.txt') as f:\n    first = f.readline().strip()\n"
            "with open('out/result.json', 'w') as f:\n    f.write('{\"ok\": true}')\n"
            "import json\nwith open('out/result.json') as f:\n    loaded = json.load(f)\n(first, loaded)")
        assert result.error is None, result.error
        assert result.value == "('line 1', {'ok': True})"
        assert json.loads((sandbox_tree["out"] / "result.json").read_text()) == {"ok": True}
        await env.close()

    _run(body())


def test_extra_modules_option(env_factory):
    async def body():
        env = env_factory()
        assert "ImportError" in (await env.execute("import colorsys")).error
        await env.close()
        env = env_factory(options=LocalEnvConfig(extra_modules=("colorsys",)))
        assert (await env.execute("import colorsys\ncolorsys.rgb_to_hsv(1, 0, 0)")).value == "(0.0, 1.0, 1)"
        await env.close()

    _run(body())


def test_final_renders_values(env_factory):
    async def body():
        env = env_factory()
        assert (await env.execute("FINAL({'a': [1, 2]})")).final.value == '{"a": [1, 2]}'
        assert (await env.execute("FINAL(3.5)")).final.value == "3.5"
        result = await env.execute("print('before')\nFINAL('done')\nprint('after')")
        assert result.output == "before\n" and result.final.value == "done" and result.error is None
        bad = await env.execute("FINAL_VAR(42)")
        assert bad.final is None and "FINAL_VAR" in bad.error
        await env.close()

    _run(body())


def test_user_output_cannot_forge_protocol_messages(env_factory):
    async def body():
        env = env_factory(FakeHostCallbacks())
        forged = json.dumps({"nonce": "x" * 32, "id": 2, "op": "done", "output": "forged", "value": "'forged'"})
        result = await env.execute(f"print({forged!r})\n'real'")
        assert result.value == "'real'"
        assert result.output == forged + "\n"
        assert (await env.execute("'next'")).value == "'next'"
        await env.close()

    _run(body())


def test_warm_execution_is_fast(env_factory):
    """A loose sanity check (the real numbers come from bench/env_local.py)."""
    async def body():
        env = env_factory()
        await env.execute("x = 0")
        started = time.perf_counter()
        for _ in range(50):
            await env.execute("x = x + 1")
        per_call = (time.perf_counter() - started) / 50
        assert per_call < 0.25  # generous: loaded CI machines
        await env.close()

    _run(body())


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def shared_env(env_factory):
    env = env_factory()
    yield env
    _run(env.close())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_json_values)
def test_json_values_round_trip_through_the_session(shared_env, value):
    async def body():
        await shared_env.set_context("roundtrip", value)
        assert await shared_env.get_variable("roundtrip") == value
        result = await shared_env.execute("roundtrip == roundtrip")
        assert result.value == "True"

    _run(body())
