"""Conformance tests every environment plugin runs: subclass :class:`EnvironmentConformance`.

::

    from rlm_testing.environment_suite import EnvironmentConformance

    class TestMyEnvironment(EnvironmentConformance):
        supports_memory_limit = True          # capabilities the suite may test

        def make_environment(self, settings, callbacks):
            return MyEnvironment(settings=settings, callbacks=callbacks)

Each test builds a fresh environment from ``make_environment`` (with
:meth:`EnvironmentConformance.make_settings`), starts it, runs code through the
public :class:`rlm.environment.Environment` API only, and closes it.  Tests are
plain synchronous pytest tests that drive coroutines with ``asyncio.run`` (no
pytest-asyncio needed).  :class:`FakeHostCallbacks` stands in for the
orchestrator behind ``llm_query``/``llm_query_batched``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from rlm.environment import Environment, EnvironmentSettings, HostCallbacks
from rlm.types import REPLResult

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    """Run a coroutine to completion in a fresh event loop."""
    async def wrapper() -> T:
        return await coro

    return asyncio.run(wrapper())


#: How user code forges a reply of the shared guest REPL server (it runs in the same interpreter).
GUEST_FORGE = ("import gc\n"
               "server = next(o for o in gc.get_objects() if type(o).__name__ == 'Server' and hasattr(o, 'request_id'))\n"
               "server.channel.send(dict(MESSAGE, id=server.request_id))\n")
#: How user code writes raw bytes (``RAW``, an expression that may use ``server``) onto the protocol stream.
GUEST_FORGE_RAW = ("import gc, json\n"
                   "server = next(o for o in gc.get_objects() if type(o).__name__ == 'Server' and hasattr(o, 'request_id'))\n"
                   "server.channel.wfile.write(RAW)\n"
                   "server.channel.wfile.flush()\n")


class FakeHostCallbacks:
    """HostCallbacks that answer ``answer:<prompt>`` and record every prompt they saw."""

    def __init__(self, answer: Callable[[str], str] | None = None) -> None:
        self.answer = answer or (lambda prompt: f"answer:{prompt}")
        self.prompts: list[str] = []
        self.batches: list[list[str]] = []

    async def llm_query(self, prompt: str) -> str:
        self.prompts.append(prompt)
        await asyncio.sleep(0)
        return self.answer(prompt)

    async def llm_query_batched(self, prompts: Sequence[str]) -> list[str]:
        self.batches.append(list(prompts))
        return [self.answer(p) for p in prompts]


class EnvironmentConformance:
    """What every :class:`rlm.environment.Environment` must do.  Subclass and override
    :meth:`make_environment`; set the capability flags to what the environment supports."""

    #: The environment enforces ``settings.memory_limit_mb`` (a memory bomb gives an error).
    supports_memory_limit: bool = True
    #: Wall-clock timeout used by the timeout tests (seconds); keep it short.
    timeout_s: float = 1.5
    #: Timeout of every other execution (slow engines may raise it).
    default_timeout_s: float = 20.0
    #: Memory limit used by the memory-bomb test (MiB).
    memory_limit_mb: int = 256

    # --- what subclasses provide ----------------------------------------------------------

    def make_environment(self, settings: EnvironmentSettings, callbacks: HostCallbacks | None) -> Environment:
        raise NotImplementedError("override make_environment(settings, callbacks) in your subclass")

    def make_settings(self, tmp_path: Path, **overrides: Any) -> EnvironmentSettings:
        """Settings of one test: the temporary directory is the workdir and the allowed path."""
        values: dict[str, Any] = {"timeout": self.default_timeout_s, "allowed_paths": (str(tmp_path),),
                                  "workdir": str(tmp_path)}
        values.update(overrides)
        return EnvironmentSettings(**values)

    #: Code that, run in the sandbox, sends ``MESSAGE`` (a dict expression) to the host as the REPL
    #: server's answer to the current request: how a guest lies.  None where user code cannot reach
    #: the protocol channel (the lying-guest test is then skipped; the plugin tests it its own way).
    forge_code: str | None = None
    #: Code that writes the bytes ``RAW`` (an expression) onto the protocol stream as the server would;
    #: None where user code cannot (the raw-frame test is then skipped).
    forge_raw_code: str | None = None

    def make_lying_environment(self, settings: EnvironmentSettings, callbacks: HostCallbacks | None) -> Environment:
        """The environment the lying-guest tests run ``forge_code`` in.  Override it where user code
        cannot reach the protocol channel by design, to build one whose guest-side policy is off
        (rlm-env-local: its RestrictedPython layer) so the host's own checks are tested alone."""
        return self.make_environment(settings, callbacks)

    def kill_session(self, env: Environment) -> None:
        """Kill ``env``'s sandbox (process, container, instance) from outside, as the OOM killer
        would between two calls.  Override it; without it the test that needs it is skipped."""
        pytest.skip("this environment's suite does not say how to kill its sandbox (override kill_session)")

    # --- helpers ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def session(self, tmp_path: Path, *, callbacks: HostCallbacks | None = None, lying: bool = False,
                      **overrides: Any) -> AsyncIterator[Environment]:
        make = self.make_lying_environment if lying else self.make_environment
        env = make(self.make_settings(tmp_path, **overrides), callbacks)
        try:
            await env.start()
            yield env
        finally:
            await env.close()

    @staticmethod
    async def ok(env: Environment, code: str, **kwargs: Any) -> REPLResult:
        """Execute ``code`` and fail the test if it errored."""
        result = await env.execute(code, **kwargs)
        assert result.error is None, f"unexpected error for {code!r}:\n{result.error}"
        return result

    async def assert_alive(self, env: Environment) -> None:
        result = await self.ok(env, "alive_check = 40 + 2\nalive_check")
        assert result.value == "42"

    # --- the protocol ----------------------------------------------------------------------

    def test_satisfies_protocol(self, tmp_path: Path) -> None:
        async def body() -> None:
            env = self.make_environment(self.make_settings(tmp_path), None)
            assert isinstance(env, Environment)
            assert isinstance(env.name, str) and env.name
            await env.start()
            await env.start()  # idempotent
            result = await env.execute("1")
            assert isinstance(result, REPLResult)
            assert result.execution_time_ms >= 0
            await env.close()
        run(body())

    # --- state -----------------------------------------------------------------------------

    def test_state_persists_across_executions(self, tmp_path: Path) -> None:
        async def body() -> None:
            async with self.session(tmp_path) as env:
                await self.ok(env, "count = 10")
                await self.ok(env, "def double(n):\n    return n * 2")
                await self.ok(env, "class Box:\n    def __init__(self, v):\n        self.v = v\n"
                                   "    def get(self):\n        return self.v")
                await self.ok(env, "import json")
                result = await self.ok(env, "json.dumps({'n': double(count), 'box': Box(5).get()})")
                assert result.value == repr('{"n": 20, "box": 5}')
        run(body())

    def test_code_is_rerun_every_time(self, tmp_path: Path) -> None:
        async def body() -> None:
            async with self.session(tmp_path) as env:
                await self.ok(env, "runs = 0")
                code = "runs = runs + 1\nprint('run', runs)"
                first = await self.ok(env, code)
                second = await self.ok(env, code)
                assert first.output == "run 1\n"
                assert second.output == "run 2\n"
                assert (await self.ok(env, "runs")).value == "2"
        run(body())

    def test_trailing_expression_value_is_shown(self, tmp_path: Path) -> None:
        async def body() -> None:
            async with self.session(tmp_path) as env:
                assert (await self.ok(env, "1 + 1")).value == "2"
                assert (await self.ok(env, "x = 3\nx * 2")).value == "6"
                assert (await self.ok(env, "'text'")).value == "'text'"
                assert (await self.ok(env, "y = 4")).value is None
                assert (await self.ok(env, "None")).value is None
                printed = await self.ok(env, "print('shown')")
                assert printed.output == "shown\n" and printed.value is None
        run(body())

    def test_augmented_assignment(self, tmp_path: Path) -> None:
        async def body() -> None:
            async with self.session(tmp_path) as env:
                await self.ok(env, "x = 1")
                assert (await self.ok(env, "x += 1\nx")).value == "2"
                assert (await self.ok(env, "items = [1]\nitems += [2]\nitems")).value == "[1, 2]"
                code = "def total(ns):\n    t = 0\n    for n in ns:\n        t += n\n    return t\ntotal([1, 2, 3])"
                assert (await self.ok(env, code)).value == "6"
                assert (await self.ok(env, "s = 'a'\ns *= 3\ns")).value == "'aaa'"
                # items, slices and attributes: everyday group-by code (a policy once refused it)
                code = "counts = {}\nfor k in 'abca':\n    counts.setdefault(k, 0)\n    counts[k] += 1\ncounts"
                assert (await self.ok(env, code)).value == "{'a': 2, 'b': 1, 'c': 1}"
                assert (await self.ok(env, "lst = [1, 2, 3]\nlst[1:2] += [9]\nlst")).value == "[1, 2, 9, 3]"
                code = "class C:\n    def __init__(self):\n        self.n = 1\nc = C()\nc.n += 4\nc.n"
                assert (await self.ok(env, code)).value == "5"
        run(body())

    def test_print_everywhere(self, tmp_path: Path) -> None:
        async def body() -> None:
            async with self.session(tmp_path) as env:
                code = (
                    "def f():\n    print('in function')\n"
                    "class C:\n    print('in class body')\n"
                    "    def m(self):\n        print('in method')\n"
                    "f()\nC().m()\n"
                    "[print('in comprehension', i) for i in range(2)]\n"
                    "def gen():\n    for i in range(2):\n        print('in generator', i)\n        yield i\n"
                    "list(gen())\n"
                    "show = lambda v: print('in lambda', v)\nshow(1)\n"
                    "print('a', 'b', sep='-', end='!\\n')\n"
                )
                result = await self.ok(env, code)
                assert result.output.splitlines() == [
                    "in class body", "in function", "in method", "in comprehension 0", "in comprehension 1",
                    "in generator 0", "in generator 1", "in lambda 1", "a-b!",
                ]
                again = await self.ok(env, "f()")  # a function from an earlier execution prints here
                assert again.output == "in function\n"
        run(body())

    def test_fstrings_with_and_generators(self, tmp_path: Path) -> None:
        async def body() -> None:
            async with self.session(tmp_path) as env:
                assert (await self.ok(env, "n = 7\nf'{n} {n * 2:03d} {n!r} {\"x\"}'")).value == "'7 014 7 x'"
                code = (
                    "class Tracker:\n"
                    "    def __init__(self):\n        self.events = []\n"
                    "    def __enter__(self):\n        self.events.append('enter')\n        return self\n"
                    "    def __exit__(self, exc_type, exc, tb):\n        self.events.append('exit')\n"
                    "        return False\n"
                    "t = Tracker()\n"
                    "with t as inside:\n    inside.events.append('body')\n"
                    "t.events"
                )
                assert (await self.ok(env, code)).value == "['enter', 'body', 'exit']"
                code = ("def squares(n):\n    for i in range(n):\n        yield i * i\n"
                        "sum(squares(4)), list(x for x in 'ab')")
                assert (await self.ok(env, code)).value == "(14, ['a', 'b'])"
        run(body())

    # --- errors ----------------------------------------------------------------------------

    def test_exception_gives_error_with_user_traceback(self, tmp_path: Path) -> None:
        async def body() -> None:
            async with self.session(tmp_path) as env:
                await self.ok(env, "kept = 'still here'")
                code = "def inner():\n    raise ValueError('boom')\ndef outer():\n    inner()\nouter()"
                result = await env.execute(code)
                assert result.error is not None
                assert "ValueError: boom" in result.error
                assert "inner" in result.error and "outer" in result.error
                assert '.py"' not in result.error, f"sandbox frames leaked into the traceback:\n{result.error}"
                assert (await self.ok(env, "kept")).value == "'still here'"
                caught = await self.ok(env, "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    msg = str(e)\nmsg")
                assert caught.value == "'division by zero'"
        run(body())

    def test_output_before_an_error_is_kept(self, tmp_path: Path) -> None:
        async def body() -> None:
            async with self.session(tmp_path) as env:
                result = await env.execute("print('before')\nraise KeyError('k')")
                assert result.output == "before\n"
                assert result.error is not None and "KeyError" in result.error
        run(body())

    def test_syntax_error_is_an_error_result(self, tmp_path: Path) -> None:
        async def body() -> None:
            async with self.session(tmp_path) as env:
                result = await env.execute("def broken(:\n    pass")
                assert result.error is not None and "SyntaxError" in result.error
                await self.assert_alive(env)
        run(body())

    # --- context ---------------------------------------------------------------------------

    def test_context_operations_use_the_real_variables(self, tmp_path: Path) -> None:
        async def body() -> None:
            async with self.session(tmp_path) as env:
                await self.ok(env, "import math\nanswer = 6 * 7\ndata = {'k': [1, 2]}\nclass Obj:\n    pass\n"
                                   "thing = Obj()")
                context = await env.get_context()
                assert context["answer"] == "42"
                assert "data" in context and "thing" in context
                assert "math" not in context, "modules are left out of the context"
                for host_name in ("llm_query", "llm_query_batched", "FINAL", "FINAL_VAR"):
                    assert host_name not in context
                assert await env.get_variable("answer") == 42
                assert await env.get_variable("data") == {"k": [1, 2]}
                assert isinstance(await env.get_variable("thing"), str)  # not JSON: its repr
                with pytest.raises(KeyError, match="missing_name"):
                    await env.get_variable("missing_name")

                await env.set_context("given", {"a": [1, "two", None]})
                assert (await self.ok(env, "given['a'][1]")).value == "'two'"
                await env.set_context("answer", 7)
                assert (await self.ok(env, "answer + 1")).value == "8"

                await env.clear_context()
                assert await env.get_context() == {}
                result = await env.execute("answer")
                assert result.error is not None and "NameError" in result.error
                await self.assert_alive(env)
        run(body())

    def test_reset_starts_a_fresh_session(self, tmp_path: Path) -> None:
        async def body() -> None:
            async with self.session(tmp_path) as env:
                await self.ok(env, "before_reset = 1")
                await env.reset()
                result = await env.execute("before_reset")
                assert result.error is not None and "NameError" in result.error
                await self.assert_alive(env)
        run(body())

    # --- FINAL -----------------------------------------------------------------------------

    def test_final_and_final_var(self, tmp_path: Path) -> None:
        async def body() -> None:
            async with self.session(tmp_path) as env:
                result = await self.ok(env, "FINAL('x')")
                assert result.final is not None
                assert (result.final.kind, result.final.value) == ("final", "x")

                result = await self.ok(env, "answer = 6 * 7\nFINAL_VAR('answer')")
                assert result.final is not None
                assert (result.final.kind, result.final.value, result.final.variable) == ("final_var", "42", "answer")

                plain = await self.ok(env, "no_final_here = 1")
                assert plain.final is None

                missing = await env.execute("FINAL_VAR('not_defined_anywhere')")
                assert missing.final is None
                assert missing.error is not None and "not_defined_anywhere" in missing.error
                await self.assert_alive(env)
        run(body())

    # --- host callbacks --------------------------------------------------------------------

    def test_llm_query_reaches_the_host(self, tmp_path: Path) -> None:
        async def body() -> None:
            callbacks = FakeHostCallbacks()
            async with self.session(tmp_path, callbacks=callbacks) as env:
                result = await self.ok(env, "reply = llm_query('p')\nprint(reply)\nreply.upper()")
                assert result.output == "answer:p\n"
                assert result.value == "'ANSWER:P'"
                assert callbacks.prompts == ["p"]
                batched = await self.ok(env, "llm_query_batched(['a', 'b', 'c'])")
                assert batched.value == "['answer:a', 'answer:b', 'answer:c']"
                assert callbacks.batches == [["a", "b", "c"]]
                code = "answers = [llm_query(f'q{i}') for i in range(3)]\nanswers"
                assert (await self.ok(env, code)).value == "['answer:q0', 'answer:q1', 'answer:q2']"
        run(body())

    def test_llm_query_failure_and_missing_callbacks_are_errors_in_the_code(self, tmp_path: Path) -> None:
        async def body() -> None:
            def failing(prompt: str) -> str:
                raise RuntimeError("budget exhausted")

            async with self.session(tmp_path, callbacks=FakeHostCallbacks(failing)) as env:
                result = await env.execute("llm_query('p')")
                assert result.error is not None and "budget exhausted" in result.error
                handled = await self.ok(env, "try:\n    llm_query('p')\nexcept Exception:\n    r = 'handled'\nr")
                assert handled.value == "'handled'"
            async with self.session(tmp_path, callbacks=None) as env:
                result = await env.execute("llm_query('p')")
                assert result.error is not None and "llm_query" in result.error
                await self.assert_alive(env)
        run(body())

    # --- limits ----------------------------------------------------------------------------

    def _check_timeout(self, tmp_path: Path, code: str) -> None:
        async def body() -> None:
            async with self.session(tmp_path) as env:
                await self.ok(env, "import time\nmarker = 'before the timeout'")
                result = await env.execute(code, timeout=self.timeout_s)
                assert result.error is not None
                assert "timeout" in result.error.lower() or "timed out" in result.error.lower()
                assert result.execution_time_ms < (self.timeout_s + 10) * 1000
                await self.assert_alive(env)
                # the result says which happened, and it is what happened: interrupted with the variables
                # kept, or stopped with the session (and its variables) gone
                kept = "variables defined before are kept" in result.error
                assert kept or "defined before are gone" in result.error, result.error
                try:
                    still = await env.get_variable("marker")
                except KeyError:
                    still = None
                assert still == ("before the timeout" if kept else None), (kept, still, result.error)
        run(body())

    def test_llm_query_time_counts_against_the_timeout(self, tmp_path: Path) -> None:
        """One deadline in every environment: a cell's wall time, its ``llm_query`` calls included,
        is bounded by the timeout -- a loop of slow sub-calls and a sub-call that never answers both
        end with a timeout error, and the host's pending call is cancelled."""

        class SlowCallbacks:
            def __init__(self, delay: float) -> None:
                self.delay, self.calls, self.cancelled = delay, 0, 0

            async def llm_query(self, prompt: str) -> str:
                self.calls += 1
                try:
                    await asyncio.sleep(self.delay)
                except asyncio.CancelledError:
                    self.cancelled += 1
                    raise
                return "ok"

            async def llm_query_batched(self, prompts: Sequence[str]) -> list[str]:
                return [await self.llm_query(p) for p in prompts]

        async def body() -> None:
            looping = SlowCallbacks(0.2)
            async with self.session(tmp_path, callbacks=looping) as env:
                result = await env.execute("while True:\n    llm_query('again')", timeout=self.timeout_s)
                assert result.error is not None and "timeout" in result.error.lower()
                assert result.execution_time_ms < (self.timeout_s + 10) * 1000
                assert looping.calls <= self.timeout_s / 0.2 + 5
                await self.assert_alive(env)
            hanging = SlowCallbacks(3600)
            async with self.session(tmp_path, callbacks=hanging) as env:
                result = await env.execute("llm_query('never answered')", timeout=self.timeout_s)
                assert result.error is not None and "timeout" in result.error.lower()
                assert result.execution_time_ms < (self.timeout_s + 10) * 1000
                assert hanging.cancelled == 1
                await self.assert_alive(env)
        run(body())

    def test_timeout_on_busy_loop(self, tmp_path: Path) -> None:
        self._check_timeout(tmp_path, "while True:\n    pass")

    def test_timeout_on_blocking_sleep(self, tmp_path: Path) -> None:
        self._check_timeout(tmp_path, "import time\ntime.sleep(3600)")

    def test_memory_bomb_is_an_error_and_the_session_survives(self, tmp_path: Path) -> None:
        if not self.supports_memory_limit:
            pytest.skip("this environment does not enforce memory_limit_mb")

        async def body() -> None:
            async with self.session(tmp_path, memory_limit_mb=self.memory_limit_mb) as env:
                result = await env.execute(f"blob = bytearray({self.memory_limit_mb * 8} * 1024 * 1024)")
                assert result.error is not None
                result = await env.execute("chunks = []\nwhile True:\n    chunks.append('x' * 10_000_000)")
                assert result.error is not None
                await env.execute("chunks = None")
                await self.assert_alive(env)
        run(body())

    def test_output_flood_is_truncated(self, tmp_path: Path) -> None:
        async def body() -> None:
            async with self.session(tmp_path, output_limit=1000) as env:
                result = await self.ok(env, "for i in range(20000):\n    print('flood line', i)")
                assert result.truncated is True
                assert len(result.output) <= 1100
                assert result.output.startswith("flood line 0\n")
                small = await self.ok(env, "print('small')")
                assert small.truncated is False and small.output == "small\n"
        run(body())

    def test_host_secrets_stay_outside(self, tmp_path: Path) -> None:
        """A secret file beside the allowed directory and a provider key in the host's environment
        never reach the code, whatever it tries (plain ``open``, ``..``, ``os``); nothing is written
        outside.  Asserts on the planted secrets, not on error messages."""
        secret, key = "HOST-SECRET-5ca1ab1e", "sk-conformance-canary-0d15ea5e"
        allowed = tmp_path / "allowed"
        allowed.mkdir()
        (tmp_path / "secret.txt").write_text(secret)
        pwned = tmp_path / "PWNED"
        attempts = [
            f"print(open({str(tmp_path / 'secret.txt')!r}).read())",
            "print(open('../secret.txt').read())",
            "import os\nprint(dict(os.environ))",
            "import os\nprint(open('/proc/self/environ').read())",
            f"open({str(pwned)!r}, 'w').write('x')",
            "open('../PWNED', 'w').write('x')",
        ]
        previous = os.environ.get("OPENAI_API_KEY")
        os.environ["OPENAI_API_KEY"] = key

        async def body() -> None:
            async with self.session(allowed) as env:
                for code in attempts:
                    result = await env.execute(code)
                    seen = " ".join(str(t) for t in (result.output, result.value, result.error))
                    assert secret not in seen, f"{code!r} read a file outside the allowed paths"
                    assert key not in seen, f"{code!r} saw a provider key of the host"
                    assert not pwned.exists(), f"{code!r} wrote outside the writable paths"
                await self.assert_alive(env)
        try:
            run(body())
        finally:
            if previous is None:
                os.environ.pop("OPENAI_API_KEY", None)
            else:
                os.environ["OPENAI_API_KEY"] = previous

    def test_a_session_lost_between_calls_is_announced_once(self, tmp_path: Path) -> None:
        """State loss is never silent: the next result after the sandbox died carries a notice that
        the variables are gone (and they are), the one after it does not."""
        async def body() -> None:
            async with self.session(tmp_path) as env:
                await self.ok(env, "kept = 41")
                await asyncio.to_thread(self.kill_session, env)
                await asyncio.sleep(0.5)
                result = await env.execute("kept + 1")
                # said either as a notice on a result from the fresh session, or as the error of a
                # call that found the sandbox dead (the code did not run: the caller runs it again)
                assert "gone" in (result.notice or "") + (result.error or ""), result
                assert result.error is not None and ("NameError" in result.error or result.notice is None)
                assert (await env.execute("kept")).error is not None  # really gone
                again = await self.ok(env, "kept = 1\nkept + 1")
                assert again.notice is None and again.value == "2"  # said once
        run(body())

    def test_a_lying_guest_is_capped_or_restarted_never_believed(self, tmp_path: Path) -> None:
        """Forged replies: huge fields are cut at the output limit on the host (``truncated``); a reply
        or callback of the wrong shape ends the call with a result that says the session was restarted
        (never an exception out of ``execute()``), and the next call works."""
        if self.forge_code is None:
            pytest.skip("user code cannot reach this environment's protocol channel (forge_code is None)")
        forge = self.forge_code

        async def body() -> None:
            async with self.session(tmp_path, output_limit=1000, lying=True) as env:
                huge = await env.execute(forge.replace("MESSAGE", (
                    "{'op': 'done', 'output': 'o' * 3_000_000, 'value': 'v' * 3_000_000, 'error': None, "
                    "'truncated': False, 'final': {'kind': 'final', 'value': 'f' * 3_000_000, 'variable': None}}")))
                assert huge.truncated is True and len(huge.output) <= 1000 and len(huge.value or "") <= 1000
                assert huge.final is not None and len(huge.final.value) <= 1000
                for message in ("{'op': 'done', 'output': 12, 'value': ['x']}",
                                "{'op': 'done', 'output': '', 'final': {'kind': 'nonsense', 'value': 1}}",
                                "{'op': 'llm_query_batched', 'seq': 1, 'prompts': 'not a list'}"):
                    result = await env.execute(forge.replace("MESSAGE", message))
                    assert result.error is not None and "restarted" in result.error, (message, result)
                    await self.assert_alive(env)
        run(body())

    def test_oversized_nested_and_misdirected_frames_never_escape(self, tmp_path: Path) -> None:
        """Raw lines on the protocol stream: JSON nested too deeply to parse is skipped (never a
        RecursionError out of ``execute()``); a line past the 16 MiB frame limit and a reply to another
        request are never believed: they are dropped unread (the cell ends normally) or they stop the
        sandbox at once with a result that says the session was restarted -- never a wait for the
        timeout, never more than a bounded amount of host memory -- and the next call works."""
        if self.forge_raw_code is None:
            pytest.skip("user code cannot write onto this environment's protocol stream (forge_raw_code is None)")
        raw = self.forge_raw_code

        async def body() -> None:
            async with self.session(tmp_path, lying=True) as env:
                nested = await env.execute(raw.replace("RAW", "b'[' * 200000 + b']' * 200000 + b'\\n'") + "'after'")
                assert nested.error is None and nested.value == "'after'", nested
                before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                for line in ("b'x' * (17 << 20) + b'\\n'",
                             "(json.dumps({'nonce': server.channel.nonce, 'id': 7, 'op': 'done', 'output': 'stale'})"
                             " + '\\n').encode()"):
                    result = await env.execute(raw.replace("RAW", line) + "import time\ntime.sleep(1)\n'real'")
                    if result.error is None:
                        assert result.value == "'real'", (line[:40], result)
                    else:
                        assert "restarted" in result.error and "TimeoutError" not in result.error, (line[:40], result)
                    assert "stale" not in result.output and result.value != "'stale'", result
                    await self.assert_alive(env)
                grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kib) / 1024
                assert grown_mib < 150, f"a 17 MiB line grew the host by {grown_mib:.0f} MiB"
        run(body())

    def test_a_process_started_by_a_cell_does_not_outlive_it(self, tmp_path: Path) -> None:
        """A cell starts background processes (``subprocess.Popen``, ``os.fork``) that would write a
        canary file a second later: when the cell has ended they are gone (or were never allowed),
        and the canary never appears."""
        out = tmp_path / "out"
        out.mkdir()
        out.chmod(0o777)  # sandboxes may run code as another user
        tmp_path.chmod(0o755)
        late_popen, late_fork = out / "late-popen.txt", out / "late-fork.txt"
        code = ("import os, sys, time\n"
                "try:\n"
                "    import subprocess\n"
                "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1); "
                f"open({str(late_popen)!r}, \"w\").write(\"late\")'])\n"
                "except BaseException as exc:\n"
                "    print('popen refused:', type(exc).__name__)\n"
                "try:\n"
                "    if os.fork() == 0:\n"
                "        time.sleep(1)\n"
                f"        open({str(late_fork)!r}, 'w').write('late')\n"
                "        os._exit(0)\n"
                "except BaseException as exc:\n"
                "    print('fork refused:', type(exc).__name__)\n")

        async def body() -> None:
            async with self.session(tmp_path, writable_paths=(str(out),)) as env:
                await env.execute(code)
                await asyncio.sleep(2.5)
                assert not late_popen.exists(), "a process started with subprocess outlived its cell"
                assert not late_fork.exists(), "a forked process outlived its cell"
                await self.assert_alive(env)

        run(body())

    def test_patching_library_modules_changes_no_later_reply(self, tmp_path: Path) -> None:
        """A cell that patches ``json`` (functions and ``JSONEncoder``) or rebinds ``sys.stdout``
        changes only what its own code sees: later values, variables and final answers are exact.
        (Where the sandbox refuses the patching itself, the first cell errors; the rest holds.)"""
        patch = ("import json\n"
                 "json.dumps = lambda *a, **k: '\"forged\"'\n"
                 "json.loads = lambda *a, **k: {'forged': True}\n"
                 "json.JSONEncoder.default = lambda self, o: 'forged'\n"
                 "json.JSONEncoder.encode = lambda self, o: '\"forged\"'\n"
                 "json.encoder.c_make_encoder = None\n"
                 "import sys\n"
                 "sys.stdout = sys.stderr = None\n")

        async def body() -> None:
            async with self.session(tmp_path) as env:
                await env.execute(patch)
                result = await self.ok(env, "data = {'k': [1, 2, 'x']}\nprint('printed')\ndata")
                assert result.output == "printed\n" and result.value == "{'k': [1, 2, 'x']}", result
                assert await env.get_variable("data") == {"k": [1, 2, "x"]}
                final = await env.execute("FINAL(data)")
                assert final.final is not None and final.final.value == '{"k": [1, 2, "x"]}', final
                assert final.notice is None

        asyncio.run(body())

    def test_a_timer_set_by_a_cell_never_fires_in_a_later_one(self, tmp_path: Path) -> None:
        """An interval timer (``signal.setitimer``/``alarm``) a cell leaves behind is cancelled when
        the cell ends: it cannot interrupt or rewrite the next cell."""
        arm = ("import signal\n"
               "def late(*_):\n"
               "    print('LATE')\n"
               "    raise RuntimeError('a timer of an earlier cell fired')\n"
               "signal.signal(signal.SIGALRM, late)\n"
               "signal.setitimer(signal.ITIMER_REAL, 0.3)\n")

        async def body() -> None:
            async with self.session(tmp_path) as env:
                await env.execute(arm)
                result = await self.ok(env, "import time\ntime.sleep(0.8)\nz = 5\nz")
                assert result.value == "5" and "LATE" not in result.output, result

        asyncio.run(body())

    def test_the_write_quota_holds(self, tmp_path: Path) -> None:
        """What a session adds under ``writable_paths`` stays within ``write_quota_mb`` and
        ``write_quota_files`` (measured on disk by the test itself), the cell that went over is told
        so, and files that were there before are never touched."""
        out = tmp_path / "out"
        out.mkdir()
        out.chmod(0o777)  # sandboxes may run code as another user (docker: nobody), who must reach it
        tmp_path.chmod(0o755)
        kept = out / "kept.txt"
        kept.write_text("from before the session")
        quota_bytes, quota_files = 256 * 1024, 3

        def added() -> tuple[int, int]:
            size = files = 0
            for root, dirs, names in os.walk(out):
                for name in names + dirs:
                    path = Path(root) / name
                    if path != kept:
                        files += 1
                        size += path.lstat().st_size if path.is_file() else 0
            return size, files

        write_big = f"with open({str(out / 'big.bin')!r}, 'wb') as f:\n    f.write(b'x' * (4 << 20))\n"
        write_many = (f"for i in range(12):\n"
                      f"    with open({str(out)!r} + '/small%d.txt' % i, 'w') as f:\n"
                      f"        f.write('y' * 1000)\n")

        async def body() -> None:
            async with self.session(tmp_path, writable_paths=(str(out),), write_quota_mb=quota_bytes / (1 << 20),
                                    write_quota_files=quota_files) as env:
                many = await env.execute(write_many)
                assert many.error is not None and "QuotaExceeded" in many.error, many
                size, files = added()
                assert size <= quota_bytes and files <= quota_files, (size, files, many.error)
                big = await env.execute(write_big)  # refused by the file size limit, or removed after the cell
                assert big.error is not None, "writing 4 MiB past a 256 KiB quota raised nothing"
                size, files = added()
                assert size <= quota_bytes and files <= quota_files, (size, files, big.error)
                assert kept.read_text() == "from before the session"
                await self.assert_alive(env)

        asyncio.run(body())

    def test_close_is_idempotent(self, tmp_path: Path) -> None:
        async def body() -> None:
            never_started = self.make_environment(self.make_settings(tmp_path), None)
            await never_started.close()
            await never_started.close()
            env = self.make_environment(self.make_settings(tmp_path), None)
            await env.start()
            await self.ok(env, "1")
            await env.close()
            await env.close()
        run(body())

    def test_a_thread_started_by_a_cell_does_not_outlive_it(self, tmp_path: Path) -> None:
        """A thread a cell leaves running cannot act in later cells or answer for them: either it is
        gone when the cell ends (the result then says the session was restarted) or it never runs
        again, and later cells compute exact values.  (Where the sandbox has no threads -- WASI, a
        policy that refuses them -- the first cell errors; the rest holds.)"""
        start = ("import threading, time\n"
                 "shared = 'cell'\n"
                 "def late():\n"
                 "    global shared\n"
                 "    time.sleep(0.3)\n"
                 "    shared = 'LATE'\n"
                 "    print('LATE')\n"
                 "threading.Thread(target=late, daemon=True).start()\n")

        async def body() -> None:
            async with self.session(tmp_path) as env:
                first = await env.execute(start)
                restarted = "session was restarted" in (first.notice or "")
                result = await self.ok(env, "import time\ntime.sleep(0.6)\nn = 6 * 7\nn")
                assert result.value == "42" and "LATE" not in result.output, result
                after = await self.ok(env, "m = n + 1\nm")
                assert after.value == "43" and "LATE" not in after.output, after
                if first.error is None and not restarted:  # the thread stayed: it must never have run
                    assert (await self.ok(env, "shared")).value == "'cell'"
        run(body())
