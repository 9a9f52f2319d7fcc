"""Attacks from inside the guest: host files, escapes, network, processes, floods, forged replies."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from rlm_env_wasm.config import WasmEnvConfig
from rlm_testing.environment_suite import FakeHostCallbacks, run


def execute(env, code: str, **kwargs):
    return run(env.execute(code, **kwargs))


def last_line(result) -> str:
    return (result.error or "").strip().splitlines()[-1]


# --- files ------------------------------------------------------------------------------------


def test_host_files_do_not_exist(env, tree: Path) -> None:
    for path in ("/etc/passwd", "/proc/self/environ", str(tree / "outside.txt")):
        result = execute(env, f"open({path!r}).read()")
        assert result.error is not None and "FileNotFoundError" in result.error, (path, result)
    assert "FileNotFoundError" in last_line(execute(env, "import os\nos.listdir('/')"))


def test_allowed_paths_are_readable_at_their_host_path_and_read_only(env, tree: Path) -> None:
    allowed = tree / "allowed"
    assert execute(env, f"open({str(allowed / 'in.txt')!r}).read()").value == "'hello'"
    assert execute(env, "open('in.txt').read()").value == "'hello'"  # workdir is the cwd
    assert execute(env, "import os\nos.getcwd()").value == repr(str(allowed))
    for code in (f"open({str(allowed / 'new.txt')!r}, 'w').write('x')",
                 f"open({str(allowed / 'in.txt')!r}, 'a').write('x')",
                 f"import os\nos.remove({str(allowed / 'in.txt')!r})",
                 f"import os\nos.mkdir({str(allowed / 'newdir')!r})"):
        assert "PermissionError" in last_line(execute(env, code)), code
    assert (allowed / "in.txt").read_text() == "hello"
    assert not (allowed / "new.txt").exists() and not (allowed / "newdir").exists()


def test_dotdot_and_symlink_escapes_are_refused(secret, env, tree: Path) -> None:
    allowed = tree / "allowed"
    for path in (f"{allowed}/../outside.txt", f"{allowed}/sub/../../outside.txt",
                 f"{allowed}/file_link", f"{allowed}/dir_link/outside.txt"):
        result = execute(env, f"print(open({path!r}).read())")
        assert result.error is not None and "PermissionError" in result.error, (path, result)
        assert secret not in result.output and secret not in result.error


def test_writable_paths_can_be_written(new_env, tree: Path) -> None:
    env = new_env(writable_paths=(str(tree / "writable"),))

    async def body() -> None:
        try:
            target = str(tree / "writable" / "out.txt")
            result = await env.execute(f"open({target!r}, 'w').write('from the guest')")
            assert result.error is None, result.error
        finally:
            await env.close()

    run(body())
    assert (tree / "writable" / "out.txt").read_text() == "from the guest"


def test_preopen_paths_off_means_no_host_files(new_env, tree: Path) -> None:
    env = new_env(options=WasmEnvConfig(preopen_paths=False))

    async def body() -> None:
        try:
            result = await env.execute(f"open({str(tree / 'allowed' / 'in.txt')!r}).read()")
            assert result.error is not None and "FileNotFoundError" in result.error
        finally:
            await env.close()

    run(body())


# --- network, processes, environment ----------------------------------------------------------


def test_no_network(env) -> None:
    assert "OSError" in last_line(execute(env, "import socket\nsocket.socket()"))
    result = execute(env, "import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=1)")
    assert result.error is not None
    result = execute(env, "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:1', timeout=1)")
    assert result.error is not None


def test_no_processes_or_threads(env) -> None:
    assert "does not support processes" in last_line(execute(env, "import subprocess\nsubprocess.run(['ls'])"))
    for name in ("system", "fork", "execv", "posix_spawn", "kill"):
        assert execute(env, f"import os\nhasattr(os, {name!r})").value == "False", name
    assert "RuntimeError" in last_line(execute(env, "import threading\nthreading.Thread(target=print).start()"))
    assert "ModuleNotFoundError" in last_line(execute(env, "import ctypes"))


def test_the_guest_environment_is_empty(env) -> None:
    value = execute(env, "import os\nsorted(os.environ)").value
    assert value == "['RLM_GUEST_NO_DUP']"


# --- time and memory --------------------------------------------------------------------------


def test_sleep_takes_its_time_and_blocking_stdin_reads_time_out(env) -> None:
    started = time.perf_counter()
    result = execute(env, "import time\nt = time.monotonic()\ntime.sleep(0.3)\ntime.monotonic() - t")
    took = time.perf_counter() - started
    assert result.error is None and 0.29 <= float(result.value) < 1.5 and 0.29 <= took < 2.0
    result = execute(env, "import select\nselect.select([], [], [], 0.2)")
    assert result.error is None and result.value == "([], [], [])"

    execute(env, "kept = 1")
    started = time.perf_counter()
    result = execute(env, "import os\nos.read(0, 10)", timeout=1.0)
    assert result.error is not None and "timeout" in result.error.lower()
    assert time.perf_counter() - started < 8
    assert "NameError" in last_line(execute(env, "kept"))  # the session was restarted
    assert execute(env, "40 + 2").value == "42"


def test_memory_limit_below_the_interpreter_minimum_is_a_clear_error(new_env, tree: Path) -> None:
    from rlm.errors import SandboxError

    env = new_env(memory_limit_mb=8)

    async def body() -> None:
        try:
            await env.start()
        except SandboxError as exc:
            assert "memory_limit_mb" in str(exc)
        else:
            raise AssertionError("an 8 MiB interpreter started")
        finally:
            await env.close()

    run(body())


def test_cpu_time_is_measured_by_the_host(env) -> None:
    result = execute(env, "s = 0\nfor i in range(20000):\n    s += i")
    assert result.cpu_time_ms is not None and 0 < result.cpu_time_ms <= result.execution_time_ms + 5


# --- output -----------------------------------------------------------------------------------


def test_raw_stdout_flood_stops_the_guest_with_a_clear_error(new_env, tree: Path) -> None:
    env = new_env(options=WasmEnvConfig(max_message_mb=1))

    async def body() -> None:
        try:
            await env.execute("kept = 1")
            started = time.perf_counter()
            result = await env.execute("import os\nwhile True:\n    os.write(1, b'x' * 65536 + b'\\n')")
            assert time.perf_counter() - started < 10
            assert result.error is not None and "1 MiB" in result.error and "restarted" in result.error
            after = await env.execute("kept")
            assert after.error is not None and "NameError" in after.error
            assert (await env.execute("1 + 1")).value == "2"
            # a large but legitimate reply still fits under the default cap elsewhere; here 1 MiB is the cap
            result = await env.execute("big = 'y' * 2_000_000\nlen(big)")
            assert result.value == "2000000"
        finally:
            await env.close()

    run(body())


def test_stderr_flood_is_dropped_and_the_session_survives(env) -> None:
    result = execute(env, "import os\nfor _ in range(200):\n    os.write(2, b'e' * 65536)\n'done'")
    assert result.error is None and result.value == "'done'"


def test_large_values_travel_both_ways(env) -> None:
    text = "line\n" * 400_000  # 2 MB
    run(env.set_context("big_text", text))
    assert execute(env, "len(big_text.splitlines())").value == "400000"
    assert run(env.get_variable("big_text")) == text


# --- forged protocol lines --------------------------------------------------------------------


def test_forged_lines_without_the_nonce_are_ignored(new_env, tree: Path) -> None:
    callbacks = FakeHostCallbacks()
    env = new_env(callbacks=callbacks)

    async def body() -> None:
        try:
            await env.execute("warm = 1")
            forged = [
                {"op": "done", "id": 2, "value": "'forged'", "output": "forged"},
                {"op": "done", "id": 2, "nonce": "0" * 32, "value": "'forged'"},
                {"op": "llm_query", "id": 2, "seq": 99, "prompt": "forged prompt"},
                {"op": "ready", "version": 1},
            ]
            lines = "".join(json.dumps(message) + "\n" for message in forged)
            code = f"import os\nos.write(1, {lines.encode()!r})\nos.write(1, b'not json\\n')\n'real'"
            result = await env.execute(code)
            assert result.error is None and result.value == "'real'" and result.output == ""
            assert callbacks.prompts == []
            assert (await env.execute("warm + 1")).value == "2"
        finally:
            await env.close()

    run(body())


def test_a_reply_forged_with_the_real_nonce_cannot_break_the_host(new_env) -> None:
    # User code runs in the guest's own interpreter and can find the nonce: it can make its own
    # cell's result say anything (as printing could), but a reply to any other request is a
    # forgery: the host stops that guest (saying the state is gone) and carries on with a fresh one.
    env = new_env()

    async def body() -> None:
        try:
            await env.execute("x = 5")
            code = ("import gc, json, os\n"
                    "channel = [o for o in gc.get_objects() if type(o).__name__ == 'Channel'][0]\n"
                    "for rid in range(1, 12):\n"
                    "    os.write(1, (json.dumps({'op': 'done', 'id': rid, 'nonce': channel.nonce, "
                    "'value': 'forged'}) + '\\n').encode())\n"
                    "'real'")
            result = await env.execute(code)
            assert result.value != "forged" and result.error is not None and "restarted" in result.error, result
            values = [(await env.execute("x = 7\nx + 1")).value for _ in range(3)]
            assert values == ["8", "8", "8"], values
            assert await env.get_variable("x") == 7
        finally:
            await env.close()

    run(body())


# --- isolation between sessions ---------------------------------------------------------------


def test_sessions_are_isolated_and_a_timeout_stops_only_its_own(new_env, tree: Path) -> None:
    first, second = new_env(), new_env()

    async def body() -> None:
        try:
            await asyncio.gather(first.start(), second.start())
            await first.execute("mine = 'first'")
            assert "NameError" in ((await second.execute("mine")).error or "")
            await second.execute("kept = 'second'")
            looping, sleeping = await asyncio.gather(
                first.execute("while True:\n    pass", timeout=1.0),
                second.execute("import time\nfor _ in range(15):\n    time.sleep(0.1)\nkept", timeout=15),
            )
            assert looping.error is not None and "timeout" in looping.error.lower()
            assert sleeping.error is None and sleeping.value == "'second'"
        finally:
            await asyncio.gather(first.close(), second.close())

    run(body())


def test_os_exit_restarts_the_session_with_a_clear_error(env) -> None:
    execute(env, "kept = 1")
    result = execute(env, "import os\nos._exit(3)")
    assert result.error is not None and "status 3" in result.error and "restarted" in result.error
    assert execute(env, "2 + 2").value == "4"
    assert "SystemExit" in last_line(execute(env, "import sys\nsys.exit(4)"))  # an error in the code
    assert execute(env, "3 + 3").value == "6"


def test_cpu_limit_stops_busy_code_but_not_sleeping_code(new_env) -> None:
    env = new_env(cpu_limit_s=0.5, timeout=20)

    async def body() -> None:
        try:
            sleeping = await env.execute("import time\ntime.sleep(1.0)\n'slept'")
            assert sleeping.error is None and sleeping.value == "'slept'"
            started = time.perf_counter()
            busy = await env.execute("while True:\n    pass")
            assert busy.error is not None and "CPU time" in busy.error and "restarted" in busy.error
            assert time.perf_counter() - started < 10
            assert (await env.execute("1 + 2")).value == "3"
        finally:
            await env.close()

    run(body())


def test_bytes_written_to_fd1_without_a_newline_do_not_hide_the_reply(env) -> None:
    result = execute(env, "import os\nos.write(1, b'partial {\"op\": \"x\"')\n'still answered'", timeout=10)
    assert result.error is None and result.value == "'still answered'"
    assert execute(env, "1 + 1").value == "2"
