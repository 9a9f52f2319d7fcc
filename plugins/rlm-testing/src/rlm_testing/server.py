"""A scripted OpenAI/Anthropic-compatible LLM server for tests and benchmarks.

:class:`ScriptedLLMServer` listens on 127.0.0.1 (a free port by default) in a
daemon thread and speaks just enough of two wire protocols for real SDKs and
hand-written clients to work against it:

- OpenAI Chat Completions: ``POST /v1/chat/completions`` (JSON, or SSE with
  ``stream: true``; a usage chunk when ``stream_options.include_usage``) and
  ``GET /v1/models``;
- Anthropic Messages: ``POST /v1/messages`` (JSON, or the SSE event sequence
  ``message_start`` ... ``message_stop``) and ``GET /v1/models`` (when the
  request carries ``anthropic-version``).

What each completion request gets back is decided by a *script*: a list of
:class:`Reply` steps consumed one per request (an item may also be a function
``RecordedRequest -> Reply``), or one function called for every request.  A
step is protocol-neutral; it is rendered in whichever protocol, streamed or
not, the request used::

    with ScriptedLLMServer([
        Reply.tool_calls(("get_weather", {"city": "Paris"})),
        Reply.text("It is sunny.", input_tokens=40, output_tokens=5),
    ]) as server:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="k")
        ...
        assert server.requests[1].body["messages"][-1]["role"] == "tool"

Steps: :meth:`Reply.text`, :meth:`Reply.tool_calls`, :meth:`Reply.json`,
:meth:`Reply.error` (and the shortcuts :meth:`Reply.rate_limited`,
:meth:`Reply.server_error`, :meth:`Reply.invalid_api_key`,
:meth:`Reply.model_not_found`, :meth:`Reply.context_too_long`,
:meth:`Reply.overloaded`), :meth:`Reply.slow`, :meth:`Reply.malformed`,
:meth:`Reply.drop`, and the faults a client must not take for an answer:
:meth:`Reply.truncated` (a stream cut before its end marker, a JSON body cut
in half, the connection closed cleanly), :meth:`Reply.stalled` (the same,
then silence on an open connection), :meth:`Reply.hang` (no answer at all
until the server stops), :meth:`Reply.html` (an HTML page with status 200)
and :meth:`Reply.empty` (OpenAI ``content: null``, Anthropic
``content: []``).  Errors use each provider's real JSON error shape and
status.  When the script is exhausted the server answers 500 with
``scripted LLM server: script exhausted after N requests`` (and
``x-should-retry: false`` so SDKs fail at once).

Every request (method, path, lower-cased headers, parsed JSON body,
protocol, monotonic time) is recorded in :attr:`ScriptedLLMServer.requests`.

Also runnable: ``python -m rlm_testing.server --port 8000 --script steps.json``
where the file holds a JSON list of steps (see :meth:`Reply.from_obj`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from rlm.logging import get_logger

from rlm_testing.script import Protocol, RecordedRequest, Reply, ScriptedToolCall, estimate_tokens
from rlm_testing.serving import HTTPServing, Request
from rlm_testing.wire import (
    Rendered,
    render_anthropic,
    render_error,
    render_html,
    render_malformed,
    render_models,
    render_openai,
)

__all__ = ["RecordedRequest", "Reply", "ScriptedLLMServer", "ScriptedToolCall", "estimate_tokens", "main"]

log = get_logger(__name__)

#: A script: steps consumed one per request, or one function called for every request.
Script = Sequence[Any] | Callable[[RecordedRequest], Any]


# --- the server -------------------------------------------------------------


def _protocol_of(method: str, path: str, headers: Mapping[str, str]) -> Protocol | None:
    if method == "POST" and path.rstrip("/").endswith("/chat/completions"):
        return "openai"
    if method == "POST" and path.rstrip("/").endswith("/messages"):
        return "anthropic"
    if method == "GET" and path.rstrip("/").endswith("/models"):
        return "anthropic" if "anthropic-version" in headers else "openai"
    return None


DEFAULT_MODELS: tuple[str, ...] = ("scripted-model", "gpt-4o-mini", "claude-sonnet-4-20250514")


class ScriptedLLMServer:
    """An OpenAI/Anthropic-compatible HTTP server that answers from a script.

    :param script: a list of steps (:class:`Reply`, its JSON form, or a
        function ``RecordedRequest -> step``) consumed one per completion
        request, or one function called for every completion request
        (returning None means "exhausted").
    :param latency: seconds added before every reply (benchmarks).
    :param default: the step used once the script is exhausted; without it
        the server answers 500 "script exhausted".
    :param models: ids listed by ``GET /v1/models``.
    :param port: 0 picks a free port.

    Every connection is served by one asyncio loop in a daemon thread (:mod:`rlm_testing.serving`), so
    hundreds of clients at once cost little; script functions run on that loop's thread and must not
    block (a :meth:`Reply.slow` step waits without blocking).  The listen backlog is
    :data:`~rlm_testing.serving.LISTEN_BACKLOG`.  Thread-safe: the script may be changed while requests
    are served.
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        default: Reply | None = None,
        models: Iterable[str] = DEFAULT_MODELS,
    ) -> None:
        self.host = host
        self.port = port
        self.latency = latency
        self.default = default
        self.models = tuple(models)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._steps: list[Any] = []
        self._script_fn: Callable[[RecordedRequest], Any] | None = None
        self._requests: list[RecordedRequest] = []
        self._served = 0
        self._errors: list[BaseException] = []
        self._serving: HTTPServing | None = None
        self._arrived = threading.Condition(self._lock)
        if script is not None:
            self.script(script)

    # --- lifecycle ----------------------------------------------------------

    def start(self) -> ScriptedLLMServer:
        """Bind and serve in a daemon thread.  Returns self."""
        if self._serving is not None:
            return self
        self._stopping.clear()
        serving = HTTPServing(self._answer, host=self.host, port=self.port)
        self.port = serving.start()
        self._serving = serving
        log.debug("scripted_llm_started", url=self.url)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; sleeping (slow) replies are abandoned.  Idempotent."""
        serving, self._serving = self._serving, None
        if serving is None:
            return
        self._stopping.set()
        serving.stop()
        log.debug("scripted_llm_stopped", port=self.port, requests=len(self._requests))

    def __enter__(self) -> ScriptedLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._serving is not None

    @property
    def open_connections(self) -> int:
        """Client connections open now (kept-alive idle ones included; 0 when stopped)."""
        serving = self._serving
        return serving.open_connections if serving is not None else 0

    # --- addresses ----------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        if not self.port:
            raise RuntimeError("the scripted LLM server is not started; call start() or use it as a context manager")
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """What OpenAI clients take as ``base_url``: ``http://127.0.0.1:PORT/v1``."""
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """What the Anthropic SDK takes as ``base_url`` (it appends ``/v1/messages``)."""
        return self.url

    def base_url(self, protocol: Protocol) -> str:
        """The base URL an SDK of ``protocol`` expects."""
        return self.anthropic_base_url if protocol == "anthropic" else self.openai_base_url

    # --- scripting ----------------------------------------------------------

    def script(self, script: Script) -> ScriptedLLMServer:
        """Replace the script (list of steps, or a function).  Returns self."""
        with self._lock:
            if callable(script) and not isinstance(script, Reply):
                self._script_fn, self._steps = script, []
            else:
                self._script_fn = None
                self._steps = [self._coerce(step) for step in script]
        return self

    def add(self, *steps: Any) -> ScriptedLLMServer:
        """Append steps to the script.  Returns self."""
        with self._lock:
            if self._script_fn is not None:
                raise RuntimeError("the script is a function; give a list with script() to add steps")
            self._steps.extend(self._coerce(step) for step in steps)
        return self

    def reset(self) -> None:
        """Forget the script and the recorded requests."""
        with self._lock:
            self._steps, self._script_fn, self._requests, self._served, self._errors = [], None, [], 0, []

    @staticmethod
    def _coerce(step: Any) -> Any:
        return step if callable(step) and not isinstance(step, Reply) else Reply.from_obj(step)

    @property
    def remaining(self) -> int:
        """Steps not consumed yet (0 for a function script)."""
        with self._lock:
            return len(self._steps)

    @property
    def served(self) -> int:
        """Completion requests answered from the script so far."""
        with self._lock:
            return self._served

    # --- records ------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in order (a snapshot)."""
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest:
        """The latest request; AssertionError when there was none."""
        with self._lock:
            if not self._requests:
                raise AssertionError("the scripted LLM server received no request")
            return self._requests[-1]

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised by script functions (each answered 500)."""
        with self._lock:
            return list(self._errors)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until ``count`` requests arrived; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self._requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._requests)} requests arrived, expected {count}")
                self._arrived.wait(left)
            return list(self._requests)

    # --- answering (called on the serving loop's thread) ----------------------

    def _answer(self, request: Request) -> tuple[float, Rendered] | None:
        """Record ``request``; the reply and the seconds to wait before it (None: the server is stopping)."""
        if self._stopping.is_set():
            return None
        method, path, query, headers, raw, client = (request.method, request.path, request.query, request.headers,
                                                      request.body, request.client)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        protocol = _protocol_of(method, path, headers)
        with self._lock:
            req = RecordedRequest(
                index=len(self._requests),
                method=method,
                path=path,
                query=query,
                headers=headers,
                body=body,
                raw_body=raw,
                protocol=protocol,
                time=time.monotonic(),
                client=(str(client[0]), int(client[1])) if client else None,
            )
            self._requests.append(req)
            self._arrived.notify_all()
        request_id = f"req_rlmtest_{req.index:05d}"

        if protocol is not None and method == "GET":
            return self._delayed(0.0, render_models(protocol, self.models))
        if protocol is None:
            step = Reply.error(404, f"scripted LLM server: no route for {method} {path}", code="invalid_request")
            return self._delayed(0.0, render_error(step, None, req, request_id))
        if body is None or not isinstance(body, Mapping):
            step = Reply.error(400, "scripted LLM server: the request body is not a JSON object")
            return self._delayed(0.0, render_error(step, protocol, req, request_id))

        step, n = self._next_step(req)
        if isinstance(step, str):  # exhausted or script failure: the message
            failure = Reply.error(500, step, code="server_error", headers={"x-should-retry": "false"})
            log.warning("scripted_llm_no_step", path=path, reason=step)
            return self._delayed(0.0, render_error(failure, protocol, req, request_id))
        log.debug("request_served", path=path, protocol=protocol, step=step.kind, status=step.status, n=n)
        if step.kind == "hang":
            rendered = Rendered(hang=True)
        elif step.kind == "drop":
            rendered = Rendered(drop=True)
        elif step.kind == "html":
            rendered = render_html(step)
        elif step.kind == "malformed":
            rendered = render_malformed(req)
        elif step.kind == "error":
            rendered = render_error(step, protocol, req, request_id)
        elif protocol == "anthropic":
            rendered = render_anthropic(step, req, n, request_id)
        else:
            rendered = render_openai(step, req, n, request_id)
        return self._delayed(step.delay, rendered)

    def _next_step(self, req: RecordedRequest) -> tuple[Reply | str, int]:
        with self._lock:
            fn = self._script_fn
            if fn is None and self._steps:
                item = self._steps.pop(0)
            elif fn is None:
                item = self.default
                if item is None:
                    return f"scripted LLM server: script exhausted after {self._served} requests", self._served
            else:
                item = fn
            self._served += 1
            n = self._served
        if callable(item) and not isinstance(item, Reply):
            try:
                produced = item(req)
            except Exception as exc:  # noqa: BLE001 - a failing script function is reported as a 500
                with self._lock:
                    self._errors.append(exc)
                return f"scripted LLM server: script function raised {type(exc).__name__}: {exc}", n
            if produced is None:
                if self.default is not None:
                    return self.default, n
                return f"scripted LLM server: script exhausted after {n - 1} requests", n
            try:
                item = Reply.from_obj(produced)
            except (TypeError, ValueError) as exc:
                return f"scripted LLM server: script function returned a bad step: {exc}", n
        return item, n

    def _delayed(self, delay: float, rendered: Rendered) -> tuple[float, Rendered]:
        return self.latency + delay, rendered


# --- python -m rlm_testing.server ----------------------------------------------


def _cycle(steps: Sequence[Reply]) -> Callable[[RecordedRequest], Reply]:
    """A thread-safe script function replaying ``steps`` forever."""
    lock = threading.Lock()
    endless = itertools.cycle(steps)

    def next_step(_: RecordedRequest) -> Reply:
        with lock:
            return next(endless)

    return next_step


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a script from a JSON file until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m rlm_testing.server",
        description="A scripted OpenAI/Anthropic-compatible LLM server (for tests and benchmarks).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: a free one)")
    parser.add_argument("--script", help="JSON file holding a list of steps")
    parser.add_argument("--cycle", action="store_true", help="replay the script forever")
    parser.add_argument("--default-text", help="answer this text once the script is exhausted")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every reply")
    args = parser.parse_args(argv)

    steps: list[Reply] = []
    if args.script:
        with open(args.script, encoding="utf-8") as fh:
            loaded = json.load(fh)
        if not isinstance(loaded, list):
            parser.error("the script file must hold a JSON list of steps")
        try:
            steps = [Reply.from_obj(obj) for obj in loaded]
        except (TypeError, ValueError, KeyError) as exc:
            parser.error(f"bad step in {args.script}: {exc}")
    if args.cycle and not steps:
        parser.error("--cycle needs a non-empty --script")
    default = Reply.text(args.default_text) if args.default_text is not None else None
    server = ScriptedLLMServer(
        _cycle(steps) if args.cycle else steps, host=args.host, port=args.port, latency=args.latency, default=default
    )
    server.start()
    print(f"scripted LLM server listening on {server.url}", flush=True)
    print(f"  OpenAI base_url:    {server.openai_base_url}", flush=True)
    print(f"  Anthropic base_url: {server.anthropic_base_url}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    print(f"served {server.served} scripted requests", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
