"""Client + framework CPU per model turn, by route, and what N consecutive ``completion_sync`` calls build.

Prints (asserts nothing) process CPU time (``time.process_time``: this process only, so the scripted
server's threads count too -- they are the same for every route, see the "server only" line) per turn for:

1. the in-process zero backend (the orchestrator alone);
2. the OpenAI route: rlm-backend-openai through the official ``openai`` SDK against the scripted server;
3. the litellm route (rlm-backend-litellm, OpenAI protocol) against the same server, with its fast OpenAI route
   (the default) and with ``fast_openai_route`` off (every call through ``litellm.acompletion``);
4. N consecutive ``RLM.completion_sync`` calls on the OpenAI route: CPU per call, SSL contexts and SDK
   clients built (counted by patching ``ssl.SSLContext.__new__`` and ``openai.AsyncOpenAI.__init__``).

Ratios are within one run (wall time on a shared machine is noisy; CPU time is less so).

``--gc-freeze`` imports the SDKs first and then calls ``gc.freeze()``, as an ``rlm run``/``agent``/``batch``/
``mcp-serve`` process does once its backend has imported its SDK (``rlm.cli.freeze_gc``).

Usage: python bench/client_turn.py [--turns 50] [--repeat 3] [--calls 5] [--gc-freeze]
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
warnings.filterwarnings("ignore")

from overhead import ZeroBackend, make_rlm  # noqa: E402
from rlm import RLM, tool  # noqa: E402


def _cpu() -> float:
    return time.process_time()


def _thread_cpu() -> float:
    return time.thread_time()


@tool
async def noop() -> str:
    """Does nothing."""
    return "ok"


def zero_route(turns: int, repeat: int) -> list[float]:
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            backend = ZeroBackend(turns)
            rlm = make_rlm(backend, tmp)
            c0 = _cpu()
            result = rlm.completion_sync("go")
            samples.append((_cpu() - c0) / (turns + 1) * 1000)
            assert result.success, result.error
    return samples


def http_route(server, model: str, turns: int, repeat: int, **kwargs) -> tuple[list[float], list[float]]:
    """CPU per turn of the whole process, and of the client thread alone (the server runs in other threads)."""
    from rlm_testing.server import Reply

    total, client = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(repeat + 1):  # the first run warms up (imports, first connection)
            server.script([Reply.tool_calls(("noop", {})) for _ in range(turns)] + [Reply.text("done")])
            rlm = RLM(model=model, api_base=server.openai_base_url, tools=[noop], log_dir=tmp,
                      token_budget=10**12, max_turns=100_000, environment="local", **kwargs)
            c0, t0 = _cpu(), _thread_cpu()
            result = rlm.completion_sync("go")
            c1, t1 = _cpu(), _thread_cpu()
            assert result.success, result.error
            if index:
                total.append((c1 - c0) / (turns + 1) * 1000)
                client.append((t1 - t0) / (turns + 1) * 1000)
    return total, client


def backend_only(server, make_backend, turns: int, repeat: int, thread_only: bool = False) -> list[float]:
    """CPU per ``backend.complete`` of a short tool-call answer, in one event loop (client cost alone)."""
    import asyncio

    from rlm.backend import LLMRequest
    from rlm.types import Message
    from rlm_testing.server import Reply

    async def run() -> list[float]:
        backend = make_backend()
        request = LLMRequest(model="gpt-4o-mini", messages=[Message.system("s"), Message.user("go")])
        samples = []
        try:
            for index in range(repeat + 1):
                server.script([Reply.tool_calls(("noop", {})) for _ in range(turns)])
                c0 = _thread_cpu() if thread_only else _cpu()
                for _ in range(turns):
                    await backend.complete(request)
                if index:
                    samples.append(((_thread_cpu() if thread_only else _cpu()) - c0) / turns * 1000)
        finally:
            await backend.aclose()
        return samples

    return asyncio.run(run())


class Counter:
    def __init__(self) -> None:
        self.ssl = 0
        self.clients = 0


def consecutive_calls(server, calls: int) -> tuple[Counter, list[float]]:
    import openai
    from rlm_testing.server import Reply

    counter = Counter()
    orig_new = ssl.SSLContext.__new__
    orig_init = openai.AsyncOpenAI.__init__

    def counting_new(cls, *args, **kwargs):
        counter.ssl += 1
        return orig_new(cls, *args, **kwargs)

    def counting_init(self, *args, **kwargs):
        counter.clients += 1
        return orig_init(self, *args, **kwargs)

    ssl.SSLContext.__new__ = counting_new
    openai.AsyncOpenAI.__init__ = counting_init
    per_call = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(calls):
                server.script([Reply.text("done")])
                rlm = RLM(model="openai/bench", api_base=server.openai_base_url, log_dir=tmp,
                          token_budget=None, environment="local")
                c0 = _cpu()
                result = rlm.completion_sync("go")
                per_call.append((_cpu() - c0) * 1000)
                assert result.success, result.error
    finally:
        ssl.SSLContext.__new__ = orig_new
        openai.AsyncOpenAI.__init__ = orig_init
    return counter, per_call


#: turns the litellm backend's fast OpenAI route off (rlm-backend-litellm's ``[plugins.backend-litellm]``)
FAST_OFF = "RLM_PLUGINS__BACKEND_LITELLM__FAST_OPENAI_ROUTE"


def _has_fast_route() -> bool:
    """Whether the installed rlm-backend-litellm has ``fast_openai_route`` (older ones: no "off" lines)."""
    try:
        from rlm_backend_litellm.options import LiteLLMOptions
    except ImportError:
        return False
    return hasattr(LiteLLMOptions(), "fast_openai_route")


def fmt(samples: list[float]) -> str:
    return f"median {statistics.median(samples):.3f} ms, min {min(samples):.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--gc-freeze", action="store_true",
                        help="import the SDKs, then gc.freeze(), as the rlm CLI does (rlm.cli.freeze_gc)")
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
    if args.gc_freeze:
        import gc

        import openai  # noqa: F401
        try:
            from rlm_backend_litellm.loader import load_litellm
        except ImportError:
            pass
        else:
            load_litellm()
        gc.freeze()
    from rlm_testing.server import Reply, ScriptedLLMServer

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; CPU ms per turn, {args.turns} tool turns"
          + (", gc.freeze() after the SDK imports" if args.gc_freeze else ""))
    zero = zero_route(args.turns, args.repeat)
    print(f"zero backend (in-process):          {fmt(zero)}")
    with ScriptedLLMServer() as server:
        total, client = http_route(server, "openai/bench", args.turns, args.repeat)
        print(f"openai route, whole process:        {fmt(total)}  ({statistics.median(total) / statistics.median(zero):.1f}x zero)")
        print(f"openai route, client thread only:   {fmt(client)}  "
              f"(client+framework minus zero: {statistics.median(client) - statistics.median(zero):.3f} ms)")
        try:
            import rlm_backend_litellm  # noqa: F401
        except ImportError:
            print("litellm route: skipped (rlm-backend-litellm not installed)")
        else:
            total, client = http_route(server, "gpt-4o-mini", args.turns, args.repeat, backend="litellm")
            print(f"litellm route, whole process:       {fmt(total)}  ({statistics.median(total) / statistics.median(zero):.1f}x zero)")
            print(f"litellm route, client thread only:  {fmt(client)}  "
                  f"(client+framework minus zero: {statistics.median(client) - statistics.median(zero):.3f} ms)")
            if _has_fast_route():
                os.environ[FAST_OFF] = "false"
                try:
                    total, client = http_route(server, "gpt-4o-mini", args.turns, args.repeat, backend="litellm")
                finally:
                    del os.environ[FAST_OFF]
                print(f"  same, fast_openai_route=false:    {fmt(client)}  (client thread only; "
                      f"client+framework minus zero: {statistics.median(client) - statistics.median(zero):.3f} ms)")
        from rlm.backend import BackendSettings
        from rlm_backend_openai.backend import OpenAIBackend

        settings = BackendSettings(base_url=server.openai_base_url, api_key="sk-bench")
        only = backend_only(server, lambda: OpenAIBackend(settings=settings), args.turns * 2, args.repeat)
        print(f"openai backend.complete alone:      {fmt(only)}  (whole process, server threads included)")
        only = backend_only(server, lambda: OpenAIBackend(settings=settings), args.turns * 2, args.repeat, True)
        print(f"openai backend.complete alone:      {fmt(only)}  (client thread only)")
        os.environ["RLM_HTTP_TRANSPORT"] = "httpx"
        try:
            only = backend_only(server, lambda: OpenAIBackend(settings=settings), args.turns * 2, args.repeat, True)
        finally:
            del os.environ["RLM_HTTP_TRANSPORT"]
        print(f"  same, RLM_HTTP_TRANSPORT=httpx:   {fmt(only)}  (client thread only; httpx's own transport)")
        try:
            from rlm_backend_litellm.backend import LiteLLMBackend
        except ImportError:
            pass
        else:
            only = backend_only(server, lambda: LiteLLMBackend(settings=settings), args.turns * 2, args.repeat)
            print(f"litellm backend.complete alone:     {fmt(only)}  (whole process, server threads included)")
            only = backend_only(server, lambda: LiteLLMBackend(settings=settings), args.turns * 2, args.repeat, True)
            print(f"litellm backend.complete alone:     {fmt(only)}  (client thread only)")
            if _has_fast_route():
                from rlm_backend_litellm.options import LiteLLMOptions

                off = BackendSettings(base_url=server.openai_base_url, api_key="sk-bench",
                                      options=LiteLLMOptions(fast_openai_route=False))
                only = backend_only(server, lambda: LiteLLMBackend(settings=off), args.turns * 2, args.repeat, True)
                print(f"  same, fast_openai_route=false:    {fmt(only)}  (client thread only)")
        server.script([Reply.text("x")] * 0)
        c0 = _cpu()
        import urllib.request
        for _ in range(args.turns):
            server.script([Reply.tool_calls(("noop", {}))])
            req = urllib.request.Request(server.openai_base_url + "/chat/completions", method="POST",
                                         data=b'{"model":"m","messages":[]}', headers={"content-type": "application/json"})
            urllib.request.urlopen(req).read()
        print(f"urllib (new connection each) + server, per request: {(_cpu() - c0) / args.turns * 1000:.3f} ms "
              "(the floor of the lines above)")
        counter, per_call = consecutive_calls(server, args.calls)
        print(f"{args.calls} x completion_sync (openai route, 1 turn each): CPU per call {fmt(per_call)}; "
              f"SSL contexts built {counter.ssl}, AsyncOpenAI clients built {counter.clients}")


if __name__ == "__main__":
    main()
