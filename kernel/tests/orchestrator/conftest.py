"""In-process fakes for the orchestrator's tests: a scripted backend and an exec-based REPL.

The fake REPL is NOT a sandbox (it is plain ``exec`` in a thread); it only
lets these tests drive the orchestrator without any environment plugin.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
from collections.abc import Callable
from typing import Any

import pytest

from rlm import hookimpl
from rlm.backend import BackendCapabilities, LLMRequest, LLMResponse, StreamEnd, TextDelta, ToolCallDelta
from rlm.errors import BackendError
from rlm.plugins import create_plugin_manager
from rlm.types import FinalSignal, Message, REPLResult, ToolCall, Usage


def call(name: str, **arguments: Any) -> ToolCall:
    """A tool call for a script (ids are filled in by the backend)."""
    return ToolCall(id="", name=name, arguments=arguments)


class FakeBackend:
    """Answers from a script: a str (text), a list of ToolCalls, an exception, or a function of the request."""

    name = "fake"

    def __init__(self, script: list[Any] | Callable[[LLMRequest], Any], *, usage: tuple[int, int] | None = None,
                 native_tools: bool = True, delay: float = 0.0) -> None:
        self.script = script
        self.requests: list[LLMRequest] = []
        self.usage = usage
        self.native_tools = native_tools
        self.delay = delay
        self.closed = False
        self._ids = 0

    def capabilities(self, model: str) -> BackendCapabilities:
        return BackendCapabilities(native_tools=self.native_tools,
                                   preferred_protocol="tools" if self.native_tools else "repl")

    def _next(self, request: LLMRequest) -> Any:
        if callable(self.script):
            return self.script(request)
        if not self.script:
            raise AssertionError(f"fake backend: script exhausted after {len(self.requests)} requests")
        return self.script.pop(0)

    async def complete(self, request: LLMRequest) -> LLMResponse:
        self.requests.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        item = self._next(request)
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, LLMResponse):
            return item
        if isinstance(item, str):
            message = Message.assistant(item)
        else:
            calls = []
            for c in item:
                self._ids += 1
                calls.append(ToolCall(id=c.id or f"tc{self._ids}", name=c.name, arguments=c.arguments))
            message = Message.assistant("", tool_calls=tuple(calls))
        if self.usage is not None:
            usage = Usage(input_tokens=self.usage[0], output_tokens=self.usage[1], cost_usd=None)
        else:
            chars = sum(len(m.text) for m in request.messages)
            usage = Usage(input_tokens=chars // 4 + 1, output_tokens=len(message.text) // 4 + 1, cost_usd=None)
        return LLMResponse(message=message, usage=usage, finish_reason="stop", model=request.model)

    async def stream(self, request: LLMRequest):
        response = await self.complete(request)
        for word in response.message.text.split(" "):
            yield TextDelta(text=word + " ")
        for c in response.message.tool_calls:
            yield ToolCallDelta(call=c)
        yield StreamEnd(response=response)

    async def aclose(self) -> None:
        self.closed = True


class FakeEnvironment:
    """A stateful exec-based REPL with FINAL/FINAL_VAR and host callbacks (tests only)."""

    name = "fake"
    instances: list[FakeEnvironment] = []

    def __init__(self, *, settings: Any, callbacks: Any) -> None:
        self.settings = settings
        self.callbacks = callbacks
        self.namespace: dict[str, Any] = {}
        self.started = False
        self.closed = False
        self.executed: list[str] = []
        FakeEnvironment.instances.append(self)

    async def start(self) -> None:
        self.started = True

    async def execute(self, code: str, *, timeout: float | None = None) -> REPLResult:
        loop = asyncio.get_running_loop()
        self.executed.append(code)
        final: list[FinalSignal] = []

        def host(coro_fn: Callable[..., Any]) -> Callable[..., Any]:
            def call_host(*args: Any) -> Any:
                return asyncio.run_coroutine_threadsafe(coro_fn(*args), loop).result()
            return call_host

        ns = self.namespace
        ns["llm_query"] = host(self.callbacks.llm_query)
        ns["llm_query_batched"] = host(self.callbacks.llm_query_batched)
        ns["FINAL"] = lambda answer: final.append(FinalSignal(kind="final", value=str(answer)))
        ns["FINAL_VAR"] = lambda name: final.append(
            FinalSignal(kind="final_var", value=str(ns[name]), variable=name))

        def run() -> REPLResult:
            out = io.StringIO()
            try:
                with contextlib.redirect_stdout(out):
                    exec(compile(code, "<repl>", "exec"), ns)  # noqa: S102 - test fake
            except Exception as exc:  # noqa: BLE001
                return REPLResult(output=out.getvalue(), error=f"{type(exc).__name__}: {exc}")
            return REPLResult(output=out.getvalue(), final=final[0] if final else None)

        return await asyncio.to_thread(run)

    def _user(self) -> dict[str, Any]:
        return {k: v for k, v in self.namespace.items()
                if not k.startswith("_") and k not in ("llm_query", "llm_query_batched", "FINAL", "FINAL_VAR")}

    async def get_context(self) -> dict[str, str]:
        return {k: repr(v) for k, v in self._user().items()}

    async def get_variable(self, name: str) -> Any:
        value = self._user()[name]
        try:
            json.dumps(value)
            return value
        except TypeError:
            return repr(value)

    async def set_context(self, name: str, value: Any) -> None:
        self.namespace[name] = value

    async def clear_context(self) -> None:
        for key in list(self._user()):
            del self.namespace[key]

    async def reset(self) -> None:
        self.namespace.clear()

    async def close(self) -> None:
        self.closed = True


class FakePlugin:
    """A throw-away plugin registering the fake backend and environment."""

    def __init__(self, backend: FakeBackend, *, isolation: Any = None) -> None:
        self.backend = backend
        self.isolation = isolation  # the fake environment's isolation describer, if any

    @hookimpl
    def rlm_register_backends(self, register):
        register("fake", lambda settings: self.backend, description="scripted, in-process")

    @hookimpl
    def rlm_register_environments(self, register):
        register("fake", FakeEnvironment, description="exec-based, tests only", isolation=self.isolation)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith("RLM_") or key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    FakeEnvironment.instances.clear()


@pytest.fixture
def make_rlm(tmp_path):
    """``make_rlm(script, **settings) -> (rlm, backend)`` with the fakes installed.

    ``isolation=`` registers the fake environment with that isolation describer.
    """
    from rlm import RLM

    def make(script: Any, *, backend_kwargs: dict | None = None, tools=None, isolation: Any = None,
             **settings: Any):
        backend = FakeBackend(script, **(backend_kwargs or {}))
        pm = create_plugin_manager(entry_points=False)
        pm.register(FakePlugin(backend, isolation=isolation), name="fake-plugin")
        settings.setdefault("log_dir", str(tmp_path / "logs"))
        settings.setdefault("model", "fake-model")
        rlm = RLM(backend="fake", environment="fake", plugin_manager=pm, tools=tools,
                  **settings)
        return rlm, backend

    return make


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def cli_with_fake(monkeypatch):
    """``cli_with_fake(script) -> backend``: ``rlm.cli.main`` then sees only the kernel and the fakes."""
    from rlm import cli

    def make(script: Any) -> FakeBackend:
        backend = FakeBackend(script)

        def factory(**_: Any):
            pm = create_plugin_manager(entry_points=False)
            pm.register(FakePlugin(backend), name="fake-plugin")
            return pm

        monkeypatch.setattr(cli, "create_plugin_manager", factory)
        return backend

    return make


@pytest.fixture
def make_agent(tmp_path):
    """``make_agent(script, **kwargs) -> (runner, backend)`` with the fakes installed."""
    from rlm.agent import AgentRunner

    def make(script: Any, *, backend_kwargs: dict | None = None, **kwargs: Any):
        backend = FakeBackend(script, **(backend_kwargs or {}))
        pm = create_plugin_manager(entry_points=False)
        pm.register(FakePlugin(backend), name="fake-plugin")
        kwargs.setdefault("log_dir", str(tmp_path / "logs"))
        runner = AgentRunner(model="fake-model", backend="fake", environment="fake", plugin_manager=pm, **kwargs)
        return runner, backend

    return make
