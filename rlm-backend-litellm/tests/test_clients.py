"""litellm's HTTP clients: reused across the requests of a run, closed by ``aclose()``.

litellm caches its clients (one per event loop) under a key that includes the request's timeout.  The
backend used to send the run's remaining time as the timeout, a new value per request, so every request
opened a new client and a new connection; and ``aclose()`` released nothing, so every run left its
connections open (50 concurrent runs: 300 file descriptors).  Counted here: the client address of each
request the scripted server received, and ``/proc/self/fd``.
"""

from __future__ import annotations

import asyncio
import os

import pytest
from rlm.backend import BackendSettings, LLMRequest
from rlm.types import Message
from rlm_backend_litellm import backend as litellm_backend
from rlm_backend_litellm.backend import LiteLLMBackend
from rlm_backend_litellm.options import LiteLLMOptions
from rlm_testing.server import Reply

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning"),
    pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd (Linux)"),
]

FAST = LiteLLMOptions(retry_base_delay=0.01, retry_max_delay=0.02)
OWN_CLIENTS = LiteLLMOptions(retry_base_delay=0.01, retry_max_delay=0.02, shared_client=False)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def settled_fds(at_most: int, wait_s: float = 10.0) -> int:
    """Open descriptors once they are at most ``at_most``, or after ``wait_s``: the scripted server runs
    in this process and closes its side of a connection on its own thread, a moment after the client
    closed it."""
    import time

    deadline = time.monotonic() + wait_s
    count = open_fds()
    while count > at_most and time.monotonic() < deadline:
        time.sleep(0.05)
        count = open_fds()
    return count


def make(server, options: LiteLLMOptions = FAST) -> LiteLLMBackend:
    return LiteLLMBackend(settings=BackendSettings(api_key="k", base_url=server.openai_base_url, timeout=300.0,
                                                   options=options))


async def one_run(server, *, calls: int = 3, stream: bool = False) -> None:
    """What a run does with its backend: a few calls, each with less time left, then aclose()."""
    backend = make(server)
    try:
        for n in range(calls):
            request = LLMRequest(model="gpt-4o-mini", messages=[Message.user(f"turn {n}")], timeout=290.0 - 7.3 * n)
            if stream:
                [event async for event in backend.stream(request)]
            else:
                await backend.complete(request)
    finally:
        await backend.aclose()


def test_the_requests_of_a_run_share_one_connection(scripted_llm):
    scripted_llm.script([Reply.text("one"), Reply.text("two"), Reply.text("three"), Reply.text("four")])
    asyncio.run(one_run(scripted_llm, calls=4))
    clients = [r.client for r in scripted_llm.requests]
    assert len(clients) == 4 and len(set(clients)) == 1, f"connections used: {clients}"


def test_every_request_goes_out_with_the_same_timeout(scripted_llm):
    backend = make(scripted_llm)
    sent = [backend._params(LLMRequest(model="gpt-4o-mini", messages=[Message.user("x")], timeout=t))["timeout"]
            for t in (290.0, 123.4, 5.5)]
    assert sent == [120.0, 120.0, 120.0]


def test_runs_in_turn_leave_no_file_descriptor_open(scripted_llm):
    scripted_llm.default = Reply.text("ok")
    asyncio.run(one_run(scripted_llm))  # litellm imported, its module-level state settled
    before = open_fds()
    for n in range(20):
        asyncio.run(one_run(scripted_llm, stream=n % 2 == 1))
    after = open_fds()
    assert after - before <= 2, f"{after - before} file descriptors left open by 20 runs"


def test_concurrent_runs_on_one_loop_leave_no_file_descriptor_open(scripted_llm):
    scripted_llm.default = Reply.text("ok")
    asyncio.run(one_run(scripted_llm))
    before = open_fds()

    async def many() -> None:
        await asyncio.gather(*(one_run(scripted_llm) for _ in range(25)))

    for _ in range(2):
        asyncio.run(many())
    after = settled_fds(before + 2)
    assert after - before <= 2, f"{after - before} file descriptors left open by 50 concurrent runs"


def test_aclose_leaves_the_clients_of_a_backend_still_running_on_the_loop(scripted_llm):
    """Two backends on one loop share litellm's client: closing the first must not break the second."""
    scripted_llm.default = Reply.text("ok")

    async def scenario() -> str:
        first, second = make(scripted_llm), make(scripted_llm)
        request = LLMRequest(model="gpt-4o-mini", messages=[Message.user("x")])
        await first.complete(request)
        await second.complete(request)
        await first.aclose()
        answer = await second.complete(request)  # the shared client is still open
        await second.aclose()
        return answer.message.text

    assert asyncio.run(scenario()) == "ok"
    clients = [r.client for r in scripted_llm.requests]
    assert len(set(clients)) == 1, f"the second backend lost its connection: {clients}"


def test_the_last_aclose_on_a_loop_empties_litellm_s_cache_for_it(scripted_llm):
    scripted_llm.default = Reply.text("ok")

    async def scenario() -> tuple[int, int]:
        import litellm

        cache = litellm.in_memory_llm_clients_cache
        suffix = cache.update_cache_key_with_event_loop("")
        backend = make(scripted_llm, OWN_CLIENTS)  # litellm's own clients: the shared one is not in its cache
        await backend.complete(LLMRequest(model="gpt-4o-mini", messages=[Message.user("x")]))
        during = sum(1 for key in cache.cache_dict if key.endswith(suffix))
        await backend.aclose()
        await backend.aclose()  # idempotent
        return during, sum(1 for key in cache.cache_dict if key.endswith(suffix))

    during, after = asyncio.run(scenario())
    assert during >= 1 and after == 0
    assert asyncio.run(litellm_backend.close_loop_clients()) == 0


@pytest.mark.parametrize("options", [FAST, OWN_CLIENTS], ids=["shared-client", "litellm-clients"])
def test_both_client_paths_keep_one_connection_per_run(scripted_llm, options):
    scripted_llm.default = Reply.text("ok")

    async def scenario() -> None:
        backend = make(scripted_llm, options)
        for _ in range(3):
            await backend.complete(LLMRequest(model="gpt-4o-mini", messages=[Message.user("x")]))
        await backend.aclose()

    asyncio.run(scenario())
    assert len({r.client for r in scripted_llm.requests}) == 1
