"""The pre-started spare worker (``[plugins.env-local] spare_workers``, :mod:`rlm_env_local.spares`).

A session on a spare behaves as one on a cold worker (the conformance suite runs on spares), a worker
serves one session only, a spare is fresh (it never got ``init``), a spare whose jail differs from the
session's is not used, the session's limits still apply, and spares neither outlive the process nor
pass to a forked child.  No test measures a time: waits are bounded polls for a state.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

from rlm_env_local.config import LocalEnvConfig
from rlm_env_local.session import LocalEnvironment
from rlm_env_local.spares import POOL

from .conftest import make_env
from .test_conformance import TestLocalConformance


def _wait_for(predicate: Any, what: str, limit: float = 30.0) -> None:
    """Poll until ``predicate()`` (a state, not a time: the limit only stops a broken test)."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what}")
        time.sleep(0.01)


def prime(env: LocalEnvironment) -> int:
    """Make sure a spare of ``env``'s settings is waiting; its pid."""
    spec = env._spec()
    worker = POOL.claim(spec, max(1, env.options.spare_workers))
    worker.kill("test: priming the spare")
    _wait_for(lambda: POOL.spare_of(spec) is not None, "a spare worker")
    pid = POOL.spare_of(spec)
    assert pid is not None
    return pid


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] in ("Z", "X")  # a zombie no one reaped yet is gone too
    except OSError:
        return True


class TestLocalConformanceOnSpares(TestLocalConformance):
    """The whole conformance suite, each session claiming a pre-started spare."""

    def make_environment(self, settings, callbacks):
        env = super().make_environment(settings, callbacks)
        prime(env)
        return env

    def make_lying_environment(self, settings, callbacks):
        env = super().make_lying_environment(settings, callbacks)
        prime(env)
        return env


def test_a_session_starts_on_the_spare_and_a_new_spare_follows(env_factory):
    async def body() -> None:
        env = env_factory()
        spare = prime(env)
        await env.start()
        assert env.pid == spare  # claimed: the session is ready without starting a process
        assert spare not in POOL.pids()  # ... and no longer a spare: nobody else gets it
        _wait_for(lambda: POOL.spare_of(env._spec()) is not None, "the next spare")
        assert POOL.spare_of(env._spec()) != spare
        result = await env.execute("x = 6 * 7\nx")
        assert result.value == "42" and result.error is None
        await env.close()
        assert _gone(spare)  # closing the session kills its worker: it never goes back to the pool
        assert spare not in POOL.pids()

    asyncio.run(body())


def test_two_sessions_never_share_a_worker(env_factory):
    async def body() -> None:
        envs = [env_factory() for _ in range(6)]
        prime(envs[0])
        await asyncio.gather(*(env.start() for env in envs[:3]))  # at once: one gets the spare
        for env in envs[3:]:  # one after the other, each on the spare the previous one left
            _wait_for(lambda: POOL.spare_of(env._spec()) is not None, "a spare")
            await env.start()
        pids = [env.pid for env in envs]
        assert None not in pids and len(set(pids)) == len(pids)
        assert not set(pids) & set(POOL.pids())
        await asyncio.gather(*(env.execute(f"mine = {i}") for i, env in enumerate(envs)))
        values = await asyncio.gather(*(env.get_variable("mine") for env in envs))
        assert values == list(range(len(envs)))
        for env in envs:
            await env.close()

    asyncio.run(body())


def test_a_spare_is_fresh_it_never_ran_code(env_factory):
    async def body() -> None:
        first = env_factory()
        prime(first)
        await first.start()
        await first.execute("leftover = 'from the first session'")
        await first.set_context("context", "first")
        await first.close()
        second = env_factory()
        _wait_for(lambda: POOL.spare_of(second._spec()) is not None, "a spare")
        spare = POOL.spare_of(second._spec())
        await second.start()
        assert second.pid == spare and second.pid != first.pid
        assert await second.get_context() == {}
        result = await second.execute("leftover")
        assert result.error and "NameError" in result.error
        await second.close()

    asyncio.run(body())


def test_a_spare_with_other_paths_is_not_used_and_the_jail_is_the_sessions(sandbox_tree):
    """The jail is entered before init: a spare made for other paths must never serve a session."""
    tree = sandbox_tree

    async def body() -> None:
        wide = make_env(tree, allowed_paths=(str(tree["root"]),))  # may read the secret
        spare = prime(wide)
        narrow = make_env(tree)  # may not
        await narrow.start()
        assert narrow.pid != spare
        assert _gone(spare) and spare not in POOL.pids()
        result = await narrow.execute("open('../secret.txt').read()")
        assert result.error and "PermissionError" in result.error
        assert tree["secret"] not in (result.output or "") + (result.value or "")
        await narrow.close()

    asyncio.run(body())


def test_a_spare_jailed_before_a_path_existed_is_not_used(sandbox_tree, tmp_path):
    """Landlock holds the directories there when the jail was entered: a path made since then needs a
    worker jailed since then."""
    tree = sandbox_tree
    late = tmp_path / "late"

    async def body() -> None:
        settings = {"allowed_paths": (str(tree["allowed"]), str(late))}
        spare = prime(make_env(tree, **settings))
        late.mkdir()
        (late / "data.txt").write_text("made later")
        env = make_env(tree, **settings)
        await env.start()
        assert env.pid != spare and _gone(spare)
        result = await env.execute(f"open({str(late / 'data.txt')!r}).read()")
        assert result.error is None and result.value == "'made later'"
        await env.close()

    asyncio.run(body())


def test_the_sessions_limits_apply_to_a_spare(env_factory):
    """Limits are set at init: a spare started for other limits serves, with the session's limits."""
    async def body() -> None:
        prime(env_factory(memory_limit_mb=256))
        env = env_factory(memory_limit_mb=300, max_open_files=40)
        spare = POOL.spare_of(env._spec())
        await env.start()
        assert env.pid == spare
        with open(f"/proc/{env.pid}/limits") as f:
            limits = f.read()
        assert str(300 * 1024 * 1024) in next(line for line in limits.splitlines() if "address space" in line)
        assert " 40 " in next(line for line in limits.splitlines() if "open files" in line)
        await env.close()

    asyncio.run(body())


def test_spare_workers_0_starts_none(env_factory):
    async def body() -> None:
        env = env_factory(options=LocalEnvConfig(spare_workers=0))
        await env.start()
        assert POOL.pids() == []  # and any spare there was is gone
        await env.execute("1")
        await env.close()

    asyncio.run(body())


def test_spare_workers_is_checked():
    with pytest.raises((ValueError, TypeError)):
        LocalEnvConfig(spare_workers=-1)
    with pytest.raises((ValueError, TypeError)):
        LocalEnvConfig(spare_workers=1.5)  # type: ignore[arg-type]


_HOST = textwrap.dedent("""
    import asyncio, os, sys, time
    from rlm.environment import EnvironmentSettings
    from rlm_env_local.session import LocalEnvironment
    from rlm_env_local.spares import POOL

    async def main():
        settings = EnvironmentSettings(workdir=sys.argv[1], allowed_paths=(sys.argv[1],))
        env = LocalEnvironment(settings=settings)
        await env.start()
        await env.close()
        while not POOL.pids():
            await asyncio.sleep(0.01)
        print(POOL.pids()[0], flush=True)

    asyncio.run(main())
    if sys.argv[2] == "kill":
        time.sleep(60)  # killed by the test
""")


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_spares_do_not_outlive_the_process(tmp_path, how):
    """At exit the pool kills its spares; a host killed outright leaves a spare that reads the end of
    its input and exits."""
    host = subprocess.Popen([sys.executable, "-c", _HOST, str(tmp_path), how], stdout=subprocess.PIPE, text=True)
    assert host.stdout is not None
    spare = int(host.stdout.readline())
    assert not _gone(spare)
    if how == "kill":
        host.send_signal(signal.SIGKILL)
    host.wait(timeout=60)
    _wait_for(lambda: _gone(spare), f"the spare {spare} to end")


def test_a_forked_child_gets_none_of_the_parents_spares(env_factory):
    env = env_factory()
    spare = prime(env)
    worker = POOL._spares[0][1]
    fds = (worker._wfd, worker._rfd)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            closed = 0
            for fd in fds:
                try:
                    os.fstat(fd)
                except OSError:
                    closed += 1
            os.write(write, f"{len(POOL.pids())} {closed}".encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read) as f:
        spares_in_child, closed_in_child = map(int, f.read().split())
    assert spares_in_child == 0 and closed_in_child == 2  # the child holds no way to the parent's spare
    assert not _gone(spare) and spare in POOL.pids()  # ... and did not kill it

