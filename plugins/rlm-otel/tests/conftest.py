"""Fixtures for rlm-otel's tests: real runs without a provider SDK or a sandbox, and a local OTLP receiver.

- ``make_rlm(**settings)``: an ``RLM`` whose backend is a stdlib OpenAI-compatible client of the
  ``scripted_llm`` server (rlm-testing), whose environment answers every execution with ``42``, and
  whose trajectory sinks are ``otel`` (and nothing else);
- ``memory_spans``: the SDK's ``InMemorySpanExporter`` installed with ``rlm_otel.pipeline.use_exporter``;
- ``otlp_receiver``: an ``http.server`` on 127.0.0.1 collecting the OTLP/HTTP POSTs to ``/v1/traces``
  and decoding them with opentelemetry-proto.

Only the kernel, rlm-testing and rlm-otel are needed (the backend and the environment are test fakes).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from rlm import hookimpl
from rlm.backend import BackendCapabilities, LLMRequest, LLMResponse, StreamEnd
from rlm.errors import BackendError
from rlm.types import Message, REPLResult, ToolCall, Usage

#: what the test backend's model costs: USD per million (input, output) tokens
PRICE = (1.0, 2.0)


class ScriptedOpenAIBackend:
    """A stdlib client of the scripted server's OpenAI Chat Completions endpoint (tests only)."""

    name = "scripted-openai"

    def __init__(self, *, settings: Any) -> None:
        self.base_url = str(settings.base_url).rstrip("/")

    def capabilities(self, model: str) -> BackendCapabilities:
        return BackendCapabilities(native_tools=True, preferred_protocol="tools", pricing_per_mtok=PRICE)

    @staticmethod
    def _message(m: Message) -> dict[str, Any]:
        if m.role == "tool":
            return {"role": "tool", "tool_call_id": m.tool_call_id, "content": m.text}
        out: dict[str, Any] = {"role": m.role, "content": m.text}
        if m.tool_calls:
            out["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": json.dumps(dict(c.arguments))}}
                                 for c in m.tool_calls]
        return out

    def _post(self, request: LLMRequest) -> LLMResponse:
        body: dict[str, Any] = {"model": request.model, "messages": [self._message(m) for m in request.messages]}
        if request.tools:
            body["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                               "parameters": dict(t.parameters)}}
                             for t in request.tools]
        post = urllib.request.Request(f"{self.base_url}/chat/completions", data=json.dumps(body).encode(),
                                      headers={"content-type": "application/json", "authorization": "Bearer k"})
        try:
            with urllib.request.urlopen(post, timeout=30) as resp:
                doc = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise BackendError(f"the scripted server answered {exc.code}: {exc.read()[:200]!r}") from exc
        choice = doc["choices"][0]
        calls = tuple(ToolCall(id=c["id"], name=c["function"]["name"], arguments=json.loads(c["function"]["arguments"]))
                      for c in choice["message"].get("tool_calls") or [])
        usage = doc["usage"]
        return LLMResponse(message=Message.assistant(choice["message"].get("content") or "", calls),
                           usage=Usage(input_tokens=usage["prompt_tokens"], output_tokens=usage["completion_tokens"]),
                           finish_reason=choice.get("finish_reason"), model=doc.get("model", request.model))

    async def complete(self, request: LLMRequest) -> LLMResponse:
        return await asyncio.to_thread(self._post, request)

    async def stream(self, request: LLMRequest):
        yield StreamEnd(response=await self.complete(request))

    async def aclose(self) -> None:
        return None


class FortyTwoEnvironment:
    """A REPL that prints 42 whatever it is given (tests only: nothing runs)."""

    name = "forty-two"

    def __init__(self, *, settings: Any, callbacks: Any = None) -> None:
        self.executed: list[str] = []

    async def start(self) -> None:
        return None

    async def execute(self, code: str, *, timeout: float | None = None) -> REPLResult:
        self.executed.append(code)
        return REPLResult(output="42\n")

    async def get_context(self) -> dict[str, str]:
        return {}

    async def get_variable(self, name: str) -> Any:
        raise KeyError(name)

    async def set_context(self, name: str, value: Any) -> None:
        return None

    async def clear_context(self) -> None:
        return None

    async def reset(self) -> None:
        return None

    async def close(self) -> None:
        return None


class _TestPlugin:
    @hookimpl
    def rlm_register_backends(self, register):
        register("scripted-openai", ScriptedOpenAIBackend, description="tests only")

    @hookimpl
    def rlm_register_environments(self, register):
        register("forty-two", FortyTwoEnvironment, description="tests only")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, tmp_path) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith(("RLM_", "OTEL_")) or key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    yield
    from rlm_otel import pipeline

    pipeline.shutdown_all(timeout=0)


@pytest.fixture
def make_rlm(scripted_llm, tmp_path):
    """``make_rlm(**settings) -> RLM`` running on the scripted server, with the ``otel`` sink only."""
    from rlm import RLM
    from rlm.plugins import create_plugin_manager

    from rlm_otel import plugin

    def make(**settings: Any) -> Any:
        pm = create_plugin_manager(entry_points=False)
        pm.register(plugin, name="otel")
        pm.register(_TestPlugin(), name="otel-tests")
        options = {"model": "scripted-model", "backend": "scripted-openai", "environment": "forty-two",
                   "api_base": scripted_llm.openai_base_url, "trajectory_sinks": ("otel",),
                   "log_dir": str(tmp_path / "logs"), "protocol": "tools", **settings}
        return RLM(plugin_manager=pm, **options)

    return make


@pytest.fixture
def memory_spans() -> Iterator[Any]:
    """The SDK's in-memory exporter, receiving the spans of every run of the test."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from rlm_otel import pipeline

    exporter = InMemorySpanExporter()
    pipeline.use_exporter(exporter)
    yield exporter
    pipeline.use_exporter(None)


class OTLPReceiver:
    """What an OTLP/HTTP collector received: decoded export requests and their headers."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> list[tuple[Any, Any, Any]]:
        """(resource, scope, span) of every span received."""
        with self.lock:
            return [(rs.resource, ss.scope, span) for request in self.requests for rs in request.resource_spans
                    for ss in rs.scope_spans for span in ss.spans]


@pytest.fixture
def otlp_receiver() -> Iterator[OTLPReceiver]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    received = OTLPReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            with received.lock:
                received.requests.append(request)
                received.headers.append({k.lower(): v for k, v in self.headers.items()})
                received.paths.append(self.path)
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    received.server = server
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    yield received
    server.shutdown()
    server.server_close()
