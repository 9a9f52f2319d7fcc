"""Fixtures of the rlm-snipara tests: a docs tree, configs, a Snipara stand-in server and a fake LLM.

The stand-in server records every request (path, headers, JSON body) and
answers from a per-test script; the fake backend answers completions from
a list or a function, so whole runs go through the kernel offline.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from rlm import hookimpl
from rlm.backend import (
    BackendCapabilities,
    LLMRequest,
    LLMResponse,
    StreamEnd,
    TextDelta,
    ToolCallDelta,
)
from rlm.config import RLMConfig, load_config
from rlm.plugins import create_plugin_manager
from rlm.types import Message, ToolCall, Usage
from rlm_snipara import plugin
from rlm_snipara.config import SECTION, SniparaConfig

KEY = "rlm_test_SECRETKEY_0123456789abcdef"

AUTH_MD = """# Authentication

Intro to the auth system.

## Tokens

Authentication uses JWT tokens. Authentication tokens expire after one hour.
Refresh authentication with the refresh endpoint.

## Passwords

Passwords are hashed with argon2.

```python
# not a heading inside a fence
def login(): ...  # TODO: rate limit
```
"""

DB_MD = """# Database

We use PostgreSQL. Migrations live in migrations/.

## Caching

Query results are cached in Redis. Authentication is mentioned once here.
"""

CONVENTIONS_MD = """# Conventions

## Error handling

Raise typed errors; never swallow exceptions. Log with event names.
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith(("RLM_", "SNIPARA_")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """tmp/project with docs/auth.md, docs/db.md, docs/team/conventions.md and README.md."""
    root = tmp_path / "project"
    (root / "docs" / "team").mkdir(parents=True)
    (root / "docs" / "auth.md").write_text(AUTH_MD)
    (root / "docs" / "db.md").write_text(DB_MD)
    (root / "docs" / "team" / "conventions.md").write_text(CONVENTIONS_MD)
    (root / "README.md").write_text("# Project\n\nA demo project. TODO: write more.\n")
    return root


def make_config(*, toml: str | None = None, where: Path | None = None, **overrides: Any) -> RLMConfig:
    """A config with the snipara section declared; ``toml`` is written to ``where``/rlm.toml first."""
    path = None
    if toml is not None:
        assert where is not None
        path = where / "rlm.toml"
        path.write_text(toml)
    return load_config(path=path, use_file=path is not None, sections={SECTION: SniparaConfig}, **overrides)


@pytest.fixture
def local_config(docs: Path) -> Callable[..., RLMConfig]:
    """``local_config(extra_toml="", **overrides)``: the local provider over the docs tree."""
    def make(extra: str = "", **overrides: Any) -> RLMConfig:
        toml = f'[rlm]\nlog_dir = "logs"\n[plugins.snipara]\ndocs = ["docs/", "README.md"]\n{extra}'
        return make_config(toml=toml, where=docs, **overrides)
    return make


def tools_for(config: RLMConfig) -> dict[str, Any]:
    """The snipara tools registered for ``config`` (name -> ToolSpec)."""
    found: dict[str, Any] = {}
    plugin.rlm_register_tools(register=lambda spec: found.__setitem__(spec.name, spec), config=config)
    return found


# --- the Snipara stand-in server ---------------------------------------------------------------


class StandIn:
    """Records requests; answers with ``responder(request) -> (status, headers, body bytes)``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.responder: Callable[[dict[str, Any]], tuple[int, dict[str, str], bytes]] = self.ok({"answer": 42})
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                raw = self.rfile.read(length)
                request = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                           "body": json.loads(raw or b"null")}
                stand_in.requests.append(request)
                status, headers, body = stand_in.responder(request)
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @staticmethod
    def ok(value: Any, *, sse: bool = False) -> Callable[[dict[str, Any]], tuple[int, dict[str, str], bytes]]:
        def respond(request: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
            envelope = {"jsonrpc": "2.0", "id": request["body"]["id"],
                        "result": {"content": [{"type": "text", "text": json.dumps(value)}], "isError": False}}
            if sse:
                return 200, {"content-type": "text/event-stream"}, f"event: message\ndata: {json.dumps(envelope)}\n\n".encode()
            return 200, {"content-type": "application/json"}, json.dumps(envelope).encode()
        return respond

    @staticmethod
    def status(code: int, body: Any = None, *, delay: float = 0.0) -> Callable[..., tuple[int, dict[str, str], bytes]]:
        def respond(request: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
            if delay:
                time.sleep(delay)
            return code, {"content-type": "application/json"}, json.dumps(body or {"detail": "nope"}).encode()
        return respond

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def standin() -> Iterator[StandIn]:
    server = StandIn()
    yield server
    server.stop()


@pytest.fixture
def hosted_config(standin: StandIn, tmp_path: Path) -> Callable[..., RLMConfig]:
    """``hosted_config(key=KEY, slug="my-app", extra="", **overrides)`` pointing at the stand-in."""
    def make(key: str = KEY, slug: str = "my-app", extra: str = "", **overrides: Any) -> RLMConfig:
        toml = f'[rlm]\nlog_dir = "logs"\n[plugins.snipara]\nbase_url = "{standin.base_url}"\ntimeout = 2.0\n{extra}'
        return make_config(toml=toml, where=tmp_path, snipara_api_key=key, snipara_project_slug=slug, **overrides)
    return make


# --- a fake LLM backend --------------------------------------------------------------------------


def call(name: str, **arguments: Any) -> ToolCall:
    return ToolCall(id="", name=name, arguments=arguments)


class FakeBackend:
    """Answers from a script: str (text), list of ToolCalls, or a function of the request."""

    name = "fake"

    def __init__(self, script: list[Any] | Callable[[LLMRequest], Any]) -> None:
        self.script = script
        self.requests: list[LLMRequest] = []
        self._ids = 0

    def capabilities(self, model: str) -> BackendCapabilities:
        return BackendCapabilities(native_tools=True, preferred_protocol="tools")

    async def complete(self, request: LLMRequest) -> LLMResponse:
        self.requests.append(request)
        item = self.script(request) if callable(self.script) else self.script.pop(0)
        if isinstance(item, str):
            message = Message.assistant(item)
        else:
            calls = []
            for c in item:
                self._ids += 1
                calls.append(ToolCall(id=c.id or f"tc{self._ids}", name=c.name, arguments=c.arguments))
            message = Message.assistant("", tool_calls=tuple(calls))
        chars = sum(len(m.text) for m in request.messages)
        return LLMResponse(message=message, usage=Usage(input_tokens=chars // 4 + 1,
                                                        output_tokens=len(message.text) // 4 + 1),
                           finish_reason="stop", model=request.model)

    async def stream(self, request: LLMRequest):
        response = await self.complete(request)
        yield TextDelta(text=response.message.text)
        for c in response.message.tool_calls:
            yield ToolCallDelta(call=c)
        yield StreamEnd(response=response)

    async def aclose(self) -> None:
        pass


class NoEnvironment:
    """An environment that is never started (these runs use tools only)."""

    def __init__(self, **_: Any) -> None:
        raise AssertionError("no environment expected in these tests")


class FakePlugin:
    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend

    @hookimpl
    def rlm_register_backends(self, register):
        register("fake", lambda settings: self.backend)

    @hookimpl
    def rlm_register_environments(self, register):
        register("fake", NoEnvironment)


@pytest.fixture
def make_rlm() -> Callable[..., tuple[Any, FakeBackend]]:
    """``make_rlm(script, config) -> (rlm, backend)``: the kernel, the snipara plugin and the fake LLM."""
    from rlm import RLM

    def make(script: Any, config: RLMConfig) -> tuple[Any, FakeBackend]:
        backend = FakeBackend(script)
        pm = create_plugin_manager(entry_points=False)
        pm.register(FakePlugin(backend), name="fake-plugin")
        pm.register(plugin, name="snipara")
        rlm = RLM(model="fake-model", backend="fake", environment="fake", plugin_manager=pm, config=config)
        return rlm, backend

    return make


@pytest.fixture
def h() -> Any:
    """Helpers for the test modules (conftest is not importable under --import-mode=importlib)."""
    import asyncio
    from types import SimpleNamespace

    return SimpleNamespace(KEY=KEY, make_config=make_config, tools_for=tools_for, call=call, run=asyncio.run)
