"""The guest REPL server driven through :class:`rlm_repl.client.GuestClient`.

The server runs under the host's own Python in a subprocess (as it runs inside
a container: ``python -I -u -c <source>``), its stdin/stdout are the protocol
streams.  Each test drives one session with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from rlm_repl import server_source
from rlm_repl.client import GuestClient, GuestClosed, GuestTimeout
from rlm_repl.replies import ProtocolError

T = 10.0  # timeout of ordinary requests


class Callbacks:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.prompts: list[str] = []
        self.batches: list[list[str]] = []

    async def llm_query(self, prompt: str) -> str:
        if self.fail:
            raise RuntimeError("budget exhausted")
        self.prompts.append(prompt)
        await asyncio.sleep(0)
        return f"answer:{prompt}"

    async def llm_query_batched(self, prompts: Sequence[str]) -> list[str]:
        self.batches.append(list(prompts))
        return [f"answer:{p}" for p in prompts]


class Guest:
    """One server subprocess and its client."""

    def __init__(self, proc: asyncio.subprocess.Process, client: GuestClient) -> None:
        self.proc = proc
        self.client = client

    async def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    async def run(self, code: str, **kwargs: Any):
        return await self.client.execute(code, timeout=kwargs.pop("timeout", T), **kwargs)

    async def ok(self, code: str, **kwargs: Any):
        result = await self.run(code, **kwargs)
        assert result.error is None, result.error
        return result


async def start_guest(*, callbacks: Any = None, env: dict[str, str] | None = None, **init: Any) -> Guest:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-u", "-c", server_source(),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        limit=64 * 1024 * 1024, env={**os.environ, **(env or {})},
    )
    assert proc.stdin is not None and proc.stdout is not None
    client = GuestClient(proc.stdout, proc.stdin, callbacks=callbacks, name="test guest")
    await client.start(timeout=T, **init)
    return Guest(proc, client)


def session(body: Callable[[Guest], Awaitable[None]], **kwargs: Any) -> None:
    async def main() -> None:
        guest = await start_guest(**kwargs)
        try:
            await body(guest)
        finally:
            if guest.proc.returncode is None:
                guest.proc.kill()
            await guest.proc.wait()
            transport = getattr(guest.proc, "_transport", None)
            if transport is not None:
                transport.close()

    asyncio.run(main())


def test_ready_message_describes_the_guest() -> None:
    async def body(g: Guest) -> None:
        ready = g.client.ready
        assert ready is not None and ready["op"] == "ready" and ready["version"] == 1
        assert ready["pid"] == g.proc.pid
        assert ready["features"]["dup"] is True
        assert (await g.client.ping(timeout=T))["pid"] == g.proc.pid
    session(body)


def test_state_persists_and_trailing_value_is_shown() -> None:
    async def body(g: Guest) -> None:
        await g.ok("count = 10\ndef double(n):\n    return n * 2\nimport json")
        result = await g.ok("json.dumps({'n': double(count)})")
        assert result.value == repr('{"n": 20}')
        assert (await g.ok("x = 3\nx * 2")).value == "6"
        assert (await g.ok("y = 4")).value is None
        assert (await g.ok("None")).value is None
        assert (await g.ok("runs = 0")).value is None
        first = await g.ok("runs += 1\nprint('run', runs)")
        second = await g.ok("runs += 1\nprint('run', runs)")
        assert (first.output, second.output) == ("run 1\n", "run 2\n")
        assert result.cpu_time_ms is not None and result.memory_peak_bytes
    session(body)


def test_prints_anywhere_are_captured_in_order() -> None:
    async def body(g: Guest) -> None:
        code = ("import sys\n"
                "def f():\n    print('in function')\n"
                "class C:\n    print('in class body')\n"
                "f()\n[print('in comprehension', i) for i in range(2)]\n"
                "sys.stderr.write('to stderr\\n')\n"
                "sys.stdout.buffer.write(b'bytes\\n')\n"
                "print('a', 'b', sep='-', end='!\\n')")
        result = await g.ok(code)
        assert result.output.splitlines() == ["in class body", "in function", "in comprehension 0",
                                              "in comprehension 1", "to stderr", "bytes", "a-b!"]
        assert (await g.ok("f()")).output == "in function\n"
        # fd 1 points to /dev/null: C-level writes never reach the protocol
        assert (await g.ok("import os\nos.write(1, b'raw bytes on fd 1\\n')\n'after'")).value == "'after'"
        assert (await g.ok("input_error = None\ntry:\n    input()\nexcept EOFError:\n    input_error = 'eof'\n"
                           "input_error")).value == "'eof'"
    session(body)


def test_errors_show_only_user_frames_and_keep_state() -> None:
    async def body(g: Guest) -> None:
        await g.ok("kept = 'still here'")
        result = await g.run("def inner():\n    raise ValueError('boom')\ndef outer():\n    inner()\n"
                             "print('before')\nouter()")
        assert result.error is not None and "ValueError: boom" in result.error
        assert "inner" in result.error and "outer" in result.error
        assert '.py"' not in result.error
        assert result.output == "before\n"
        syntax = await g.run("def broken(:\n    pass")
        assert syntax.error is not None and "SyntaxError" in syntax.error and '.py"' not in syntax.error
        assert (await g.ok("kept")).value == "'still here'"
    session(body)


def test_final_and_final_var() -> None:
    async def body(g: Guest) -> None:
        result = await g.ok("FINAL('x')\nprint('not reached')")
        assert result.final is not None and (result.final.kind, result.final.value) == ("final", "x")
        assert result.output == ""
        result = await g.ok("answer = 6 * 7\nFINAL_VAR('answer')")
        assert result.final is not None
        assert (result.final.kind, result.final.value, result.final.variable) == ("final_var", "42", "answer")
        assert (await g.ok("FINAL([1, 'a'])")).final.value == '[1, "a"]'
        assert (await g.ok("plain = 1")).final is None
        missing = await g.run("FINAL_VAR('not_defined_anywhere')")
        assert missing.final is None
        assert missing.error is not None and "not_defined_anywhere" in missing.error
    session(body)


def test_context_get_set_clear() -> None:
    async def body(g: Guest) -> None:
        await g.ok("import math\nanswer = 42\ndata = {'k': [1, 2]}\nclass Obj:\n    pass\nthing = Obj()\n"
                   "_private = 1")
        context = await g.client.context(timeout=T)
        assert context["answer"] == "42" and "data" in context and "thing" in context
        for hidden in ("math", "_private", "llm_query", "llm_query_batched", "FINAL", "FINAL_VAR", "__name__"):
            assert hidden not in context
        assert await g.client.get("answer", timeout=T) == 42
        assert await g.client.get("data", timeout=T) == {"k": [1, 2]}
        assert "Obj object" in await g.client.get("thing", timeout=T)
        with pytest.raises(KeyError, match="missing_name"):
            await g.client.get("missing_name", timeout=T)
        with pytest.raises(KeyError):
            await g.client.get("math", timeout=T)
        await g.client.set("given", {"a": [1, "two", None]}, timeout=T)
        assert (await g.ok("given['a'][1]")).value == "'two'"
        await g.client.clear(timeout=T)
        assert await g.client.context(timeout=T) == {}
        result = await g.run("answer")
        assert result.error is not None and "NameError" in result.error
        assert (await g.ok("40 + 2")).value == "42"
    session(body)


def test_llm_query_round_trip() -> None:
    callbacks = Callbacks()

    async def body(g: Guest) -> None:
        result = await g.ok("reply = llm_query('p')\nprint(reply)\nreply.upper()")
        assert (result.output, result.value) == ("answer:p\n", "'ANSWER:P'")
        assert (await g.ok("llm_query_batched(['a', 'b'])")).value == "['answer:a', 'answer:b']"
        assert (await g.ok("[llm_query(f'q{i}') for i in range(3)]")).value == \
            "['answer:q0', 'answer:q1', 'answer:q2']"
        assert callbacks.prompts == ["p", "q0", "q1", "q2"] and callbacks.batches == [["a", "b"]]
        bad = await g.run("llm_query(3)")
        assert bad.error is not None and "TypeError" in bad.error
    session(body, callbacks=callbacks)


def test_llm_query_failures_are_errors_in_the_code() -> None:
    async def failing(g: Guest) -> None:
        result = await g.run("llm_query('p')")
        assert result.error is not None and "budget exhausted" in result.error
        handled = await g.ok("try:\n    llm_query('p')\nexcept RuntimeError:\n    r = 'handled'\nr")
        assert handled.value == "'handled'"
    session(failing, callbacks=Callbacks(fail=True))

    async def without(g: Guest) -> None:
        result = await g.run("llm_query('p')")
        assert result.error is not None and "llm_query" in result.error
    session(without, callbacks=None)


def test_forged_lines_on_the_protocol_stream_are_ignored_or_refused() -> None:
    """Without os.dup (as under WASI) fd 1 is the protocol: stray lines (no nonce) are skipped; a
    line with the session's nonce that answers another request is a forgery the client refuses."""
    async def body(g: Guest) -> None:
        assert g.client.ready is not None and g.client.ready["features"]["dup"] is False
        forged = [
            b"not json at all\n",
            b'["a list"]\n',
            json.dumps({"nonce": "guessed", "id": 2, "op": "done", "output": "forged"}).encode() + b"\n",
        ]
        code = "import os\n" + "".join(f"os.write(1, {line!r})\n" for line in forged) + "print('real')"
        result = await g.ok(code)
        assert result.output == "real\n"
        assert g.client.ignored_lines == len(forged)
        assert (await g.ok("1 + 1")).value == "2"
        stale = json.dumps({"nonce": g.client.nonce, "id": 999, "op": "done", "output": "stale"}).encode() + b"\n"
        with pytest.raises(ProtocolError, match="answered request '999'"):
            await g.client.execute(f"import os\nos.write(1, {stale!r})\nimport time\ntime.sleep(5)", timeout=T)
    session(body, env={"RLM_GUEST_NO_DUP": "1"})


def test_client_skips_other_sessions_lines_and_refuses_forged_replies() -> None:
    """The client alone, against a scripted guest."""
    class Script:
        def __init__(self) -> None:
            self.lines: asyncio.Queue[bytes] = asyncio.Queue()
            self.sent: list[dict[str, Any]] = []

        async def readline(self) -> bytes:
            return await self.lines.get()

        def write(self, data: bytes) -> None:
            message = json.loads(data)
            self.sent.append(message)
            nonce = client.nonce
            if message["op"] == "init":
                self.lines.put_nowait(json.dumps({"nonce": nonce, "id": None, "op": "ready"}).encode() + b"\n")
            elif message["op"] == "exec" and message["code"] == "forge":
                wrong = {"nonce": nonce, "id": message["id"] + 1, "op": "done", "output": "wrong id"}
                self.lines.put_nowait(json.dumps(wrong).encode() + b"\n")
            elif message["op"] == "exec":
                for m in ({"nonce": "other", "id": message["id"], "op": "done", "output": "forged"},
                          {"nonce": nonce, "id": message["id"], "op": "llm_query", "seq": 1, "prompt": "hi"}):
                    self.lines.put_nowait(json.dumps(m).encode() + b"\n")
            elif message["op"] == "reply":
                done = {"nonce": nonce, "id": message["id"], "op": "done", "output": message["value"]}
                self.lines.put_nowait(json.dumps(done).encode() + b"\n")

        async def drain(self) -> None:
            return None

    script = Script()
    client = GuestClient(script, script, callbacks=Callbacks())

    async def main() -> None:
        await client.start(timeout=T)
        result = await client.execute("anything", timeout=T)
        assert result.output == "answer:hi"
        assert client.ignored_lines == 1
        with pytest.raises(ProtocolError, match="while another one was outstanding"):
            await client.execute("forge", timeout=T)
        script.lines.put_nowait(b"")
        with pytest.raises(GuestClosed):
            await client.execute("more", timeout=T)

    asyncio.run(main())


def test_output_is_capped() -> None:
    async def body(g: Guest) -> None:
        result = await g.ok("for i in range(20000):\n    print('flood line', i)")
        assert result.truncated is True and len(result.output) == 1000
        assert result.output.startswith("flood line 0\n")
        big = await g.ok("'y' * 5000")
        assert big.value is not None and len(big.value) <= 1000 and big.truncated is True
        long_error = await g.client.execute("raise ValueError('e' * 50000)", timeout=T)
        assert long_error.error is not None and len(long_error.error) <= 20_000 and long_error.truncated is True
        small = await g.ok("print('small')")
        assert (small.truncated, small.output) == (False, "small\n")
        wider = await g.ok("print('z' * 3000)", output_limit=5000)
        assert (wider.truncated, len(wider.output)) == (False, 3001)
    session(body, output_limit=1000)


def test_timeout_interrupts_and_keeps_state() -> None:
    async def body(g: Guest) -> None:
        await g.ok("kept = 1")
        for code in ("print('started')\nwhile True:\n    pass", "import time\ntime.sleep(3600)"):
            with pytest.raises(GuestTimeout) as info:
                await g.run(code, timeout=0.5, interrupt=g.interrupt)
            assert info.value.recovered is True and info.value.result is not None
            assert "timeout" in (info.value.result.error or "").lower()
        assert info.value.result is not None
        assert (await g.ok("kept")).value == "1"
    session(body)


def test_timeout_waiting_for_the_host_keeps_counting() -> None:
    class Slow(Callbacks):
        async def llm_query(self, prompt: str) -> str:
            await asyncio.sleep(3600)
            return ""

    async def body(g: Guest) -> None:
        with pytest.raises(GuestTimeout) as info:
            await g.run("llm_query('slow')", timeout=0.5, interrupt=g.interrupt)
        assert info.value.recovered is True
        assert (await g.ok("'alive'")).value == "'alive'"
    session(body, callbacks=Slow())


def test_unrecoverable_timeout_and_death_are_signalled() -> None:
    async def body(g: Guest) -> None:
        # the code ignores the interrupt: the caller must kill the guest
        code = "import time\nwhile True:\n    try:\n        time.sleep(10)\n    except KeyboardInterrupt:\n        pass"
        with pytest.raises(GuestTimeout) as info:
            await g.run(code, timeout=0.3, interrupt=g.interrupt, grace=0.5)
        assert info.value.recovered is False
        g.proc.kill()
        with pytest.raises(GuestClosed):
            await g.run("1")
    session(body)


def test_memory_limit_gives_memory_error() -> None:
    async def body(g: Guest) -> None:
        result = await g.run("blob = bytearray(2048 * 1024 * 1024)")
        assert result.error is not None and "MemoryError" in result.error
        assert (await g.ok("'alive'")).value == "'alive'"
    session(body, memory_limit_mb=256)


def test_forked_children_cannot_answer() -> None:
    async def body(g: Guest) -> None:
        result = await g.ok("import os\npid = os.fork()\nprint('parent' if pid else 'child')\n"
                            "if pid:\n    os.waitpid(pid, 0)")
        assert result.output == "parent\n"
        assert (await g.ok("pid > 0")).value == "True"
    session(body)


def test_cpu_limit_stops_a_busy_cell() -> None:
    async def body(g: Guest) -> None:
        result = await g.run("while True:\n    pass", cpu_limit_s=1)
        assert result.error is not None and "CPU time limit" in result.error
        assert (await g.ok("'alive'")).value == "'alive'"
    session(body)


def test_client_caps_and_survives_a_lying_guest() -> None:
    """A scripted guest that claims huge fields, sends deeply nested JSON and a variable whose
    JSON cannot be parsed: the host caps every text itself and never lets an exception escape
    but its own ProtocolError."""

    huge = "h" * 3_000_000

    class Liar:
        def __init__(self) -> None:
            self.lines: asyncio.Queue[bytes] = asyncio.Queue()

        async def readline(self) -> bytes:
            return await self.lines.get()

        def put(self, message: dict[str, Any]) -> None:
            self.lines.put_nowait(json.dumps({"nonce": client.nonce, **message}).encode() + b"\n")

        def write(self, data: bytes) -> None:
            message = json.loads(data)
            if message["op"] == "init":
                self.put({"id": None, "op": "ready"})
            elif message["op"] == "exec":
                self.lines.put_nowait(b"[" * 100_000 + b"]" * 100_000 + b"\n")  # skipped, not a crash
                self.put({"id": message["id"], "op": "done", "output": huge, "value": huge, "error": huge,
                          "truncated": False, "final": {"kind": "final", "value": huge}})
            elif message["op"] == "context":
                self.put({"id": message["id"], "op": "done",
                          "context": {f"v{i}": huge[:5000] for i in range(3000)}})
            elif message["op"] == "get":
                self.put({"id": message["id"], "op": "done", "found": True, "json": "[" * 100_000})

        async def drain(self) -> None:
            return None

    liar = Liar()
    client = GuestClient(liar, liar)

    async def main() -> None:
        await client.start(timeout=T, output_limit=1000)
        result = await client.execute("x", timeout=T)
        assert result.truncated is True
        assert len(result.output) == 1000 and len(result.value or "") == 1000
        assert len(result.error or "") == 20_000
        assert result.final is not None and len(result.final.value) == 1000
        assert client.ignored_lines == 1
        context = await client.context(timeout=T)
        assert len(context) == 1000 and all(len(v) == 200 for v in context.values())
        with pytest.raises(ProtocolError, match="nested too deeply"):
            await client.get("v", timeout=T)

    asyncio.run(main())


def test_a_restart_said_by_the_guest_becomes_the_notice() -> None:
    """``session_lost`` (the docker supervisor restarted the REPL after a cell) is the result's
    notice: capped, after a notice the host already had, and only ever a string."""
    from rlm_repl.replies import SESSION_LOST, exec_result

    said = exec_result({"output": "", "session_lost": "the cell left 2 threads running"}, output_limit=100,
                       execution_time_ms=1.0)
    assert said.notice == f"the cell left 2 threads running; {SESSION_LOST}"
    long = exec_result({"output": "", "session_lost": "x" * 100_000}, output_limit=100, execution_time_ms=1.0,
                       notice="the worker ended since the last call")
    assert long.notice is not None and long.notice.startswith("the worker ended since the last call; xxx")
    assert len(long.notice) < 1_000
    with pytest.raises(ProtocolError):
        exec_result({"output": "", "session_lost": ["not", "text"]}, output_limit=100, execution_time_ms=1.0)
