"""The ``local`` backend: a small model served by llama.cpp on this machine.

On the first call the backend assembles the model (once per machine, see
:mod:`rlm_backend_local.models`), starts llama.cpp's own server through
xllamacpp (once per process, see :mod:`rlm_backend_local.server`) and talks
to it over the OpenAI Chat Completions protocol with
:mod:`rlm_backend_local.http`.  With ``[rlm] api_base`` set it talks to
that server instead and starts nothing.

Capabilities: ``native_tools=False`` and ``preferred_protocol="repl"``, so
the orchestrator uses the paper-style REPL protocol (code blocks + FINAL):
at 0.5B-1.5B parameters ``tool_choice="auto"`` is unreliable, while
```python answers and grammar-constrained JSON (``json_schema=True``) are
reliable.

Faults: every attempt waits at most ``read_timeout`` (unset: the request's
timeout) for the server's next bytes; a stream that ends without a
``finish_reason``, an answer with no text and no tool call, and an HTML page
instead of JSON are errors (the first two retried while nothing was
yielded; the page is not: ``api_base`` is wrong).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from attrs import define
from rlm.backend import (
    BackendCapabilities,
    BackendSettings,
    LLMRequest,
    LLMResponse,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
)
from rlm.errors import (
    AuthenticationError,
    BackendError,
    ContextTooLongError,
    ModelNotFoundError,
    ProviderUnavailableError,
    RateLimitError,
)
from rlm.logging import get_logger
from rlm.provider_errors import empty_answer_of, not_an_api_body, truncated_stream
from rlm.retry import DEADLINE_GRACE

from rlm_backend_local import http
from rlm_backend_local.convert import StreamState, estimate_prompt_tokens, parse_completion, request_body
from rlm_backend_local.models import CATALOG, check_gguf, ensure_model
from rlm_backend_local.server import (
    RUNTIME,
    LlamaServer,
    ServerSpec,
    install_command,
    missing_server_modules,
    permanent,
    shared_server,
    with_tail,
)
from rlm_backend_local.settings import LocalSettings, settings_from

log = get_logger(__name__)

PREFIX = "local/"
#: Turns a run's top call gets unless the user set max_turns: a CPU model answers a file question in
#: two to four turns, and one that has not after eight is repeating itself (each turn costs ~10 s).
SUGGESTED_MAX_TURNS = 8
_MAX_BACKOFF = 10.0
#: How the server is named in errors.
SERVER = "the local model server"


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@define(frozen=True, kw_only=True)
class Target:
    """Where one request goes: the server's base URL, its key, the model name it knows."""

    base_url: str
    api_key: str | None
    model: str
    server: LlamaServer | None = None


def resolve_model(model: str, local: LocalSettings) -> tuple[str, Path | None]:
    """``(name, path)`` of the model that serves ``model``: a catalog name (path None) or a GGUF path.

    ``local/<catalog name>`` and ``local/<path>.gguf`` pick a model; any
    other string (``gpt-4o-mini`` served because no key is set,
    ``local/default``) means the configured one.
    """
    name = model[len(PREFIX):] if model.startswith(PREFIX) else ""
    if name in CATALOG:
        return name, None
    if name.endswith(".gguf"):
        path = Path(name).expanduser()
        return path.stem, path
    if local.model_path:
        path = Path(local.model_path).expanduser()
        return path.stem, path
    return local.model, None


class LocalBackend:
    """The embedded default model (see the module docstring)."""

    name = "local"

    def __init__(self, *, settings: BackendSettings | None = None) -> None:
        self.settings = settings or BackendSettings()
        self.local = settings_from(self.settings.options)
        self._external = self.settings.base_url.rstrip("/") if self.settings.base_url else None
        self._targets: dict[str, Target] = {}
        self._lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        log.info("local_backend_created", protocol="repl", native_tools=False,
                 reason="small local models call tools unreliably; the REPL protocol (code blocks + FINAL) is used",
                 server=self._external or "llama.cpp server child process")

    # --- what it can do ------------------------------------------------------------------------

    def context_window(self, model: str) -> int:
        name, path = resolve_model(model, self.local)
        spec = CATALOG.get(name) if path is None else None
        return min(self.local.n_ctx, spec.trained_context) if spec else self.local.n_ctx

    def capabilities(self, model: str) -> BackendCapabilities:
        return BackendCapabilities(
            native_tools=False,
            json_schema=True,
            vision=False,
            audio=False,
            preferred_protocol="repl",
            pricing_per_mtok=(0.0, 0.0),
            context_window=self.context_window(model),
            suggested_max_turns=SUGGESTED_MAX_TURNS,
            # at this size llm_query is asked about files it cannot see, and each sub-call costs seconds
            suggested_sub_calls=False,
            served_model=self.served_model(model),
        )

    def served_model(self, model: str) -> str:
        """The model that answers ``model`` here: ``local/<catalog name or GGUF stem>``."""
        if self._external:
            return f"{PREFIX}{model.removeprefix(PREFIX)}"
        name, _ = resolve_model(model, self.local)
        return f"{PREFIX}{name}"

    # --- where requests go ---------------------------------------------------------------------

    def server_spec(self, model: str) -> ServerSpec:
        """The server that serves ``model`` (assembles a catalog model on first use; blocking)."""
        name, path = resolve_model(model, self.local)
        python = self.local.python or sys.executable
        if python == sys.executable:
            missing = missing_server_modules()
            if missing:
                raise permanent(BackendError(
                    f"the local model needs the llama.cpp runtime {RUNTIME}, which is not installed",
                    fix=f"run `{install_command()}` (or scripts/install-local-model.sh), "
                        "or set OPENAI_API_KEY/ANTHROPIC_API_KEY to use a hosted model",
                ))
        if path is None:
            spec = CATALOG.get(name)
            if spec is None:
                from rlm_backend_local.models import catalog_spec

                catalog_spec(name)  # raises the ConfigError listing the catalog
            model_path = ensure_model(spec, python=python)  # type: ignore[arg-type]
        else:
            check_gguf(path)
            model_path = path
        return ServerSpec(
            model_path=str(model_path),
            alias=name,
            n_ctx=self.context_window(model),
            n_threads=self.local.n_threads or cpu_count(),
            python=python,
            extra_args=self.local.server_args,
        )

    def _prepare(self, model: str) -> Target:
        if self._external:
            name = model.removeprefix(PREFIX)
            return Target(base_url=self._external, api_key=self.settings.api_key, model=name)
        spec = self.server_spec(model)
        server = shared_server(spec, startup_timeout=self.local.startup_timeout)
        base_url = server.ensure_started()
        return Target(base_url=base_url, api_key=server.api_key, model=spec.alias, server=server)

    async def target(self, model: str) -> Target:
        """The server for ``model``, started if needed (its health is checked per call, cheaply)."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock[0] is not loop:  # one lock per event loop
            self._lock = (loop, asyncio.Lock())
        async with self._lock[1]:
            cached = self._targets.get(model)
            if cached is not None and (cached.server is None or cached.server.alive()):
                return cached
            target = await asyncio.to_thread(self._prepare, model)
            self._targets[model] = target
            return target

    # --- calls ---------------------------------------------------------------------------------

    def _body(self, request: LLMRequest, target: Target, *, stream: bool = False) -> dict[str, Any]:
        return request_body(request, model=target.model, max_tokens=self.local.max_tokens,
                            temperature=self.local.temperature, stream=stream)

    def _read_timeout(self, total: float) -> tuple[float, bool]:
        """``(seconds, whether the read_timeout setting binds)``: how long one read may wait (``inf``: only
        the request's deadline)."""
        read = self.local.read_timeout if self.local.read_timeout is not None else self.settings.read_timeout
        if read is not None and read < total:
            return read, True
        return math.inf, False

    def _answer(self, response: http.Response, target: Target) -> LLMResponse:
        """A 200's body as an LLMResponse; a BackendError for a page that is no completion or an empty answer."""
        content_type = response.headers.get("content-type", "")
        if "html" in content_type.lower():
            raise permanent(not_an_api_body(SERVER, target.base_url, response.body.decode("utf-8", "replace"),
                                            content_type, compatible="OpenAI").error)
        try:
            answer = parse_completion(response.json(), model=target.model)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProviderUnavailableError(
                f"the local model server sent a malformed response ({exc})",
                fix="retry; if it persists, check the server with `rlm doctor`",
            ) from None
        _check_not_empty(answer, target, "content: null, no tool call")
        return answer

    async def complete(self, request: LLMRequest) -> LLMResponse:
        total = request.timeout or self.settings.timeout
        read, is_read_timeout = self._read_timeout(total)
        # a caller holding the same deadline (the orchestrator) acts first
        deadline = time.monotonic() + total + DEADLINE_GRACE
        attempt = 0
        while True:
            target = await self.target(request.model)
            url = f"{target.base_url}/chat/completions"
            timeout = min(read, max(0.001, deadline - time.monotonic()))
            try:
                response = await asyncio.wait_for(
                    http.request("POST", url, payload=self._body(request, target), api_key=target.api_key),
                    timeout=timeout,
                )
                if response.status == 200:
                    return self._answer(response, target)
                raise error_for(response, model=request.model, url=target.base_url)
            except TimeoutError:
                error: BackendError = _timeout_error(min(read, total), read_setting=is_read_timeout)
            except http.HTTPFailure as exc:
                error = self._transport_error(exc, target)
            except BackendError as exc:
                error = exc
            retry_after = getattr(error, "retry_after", None)
            if error.permanent or attempt >= self.settings.max_retries:
                raise error
            wait = _backoff(attempt, retry_after)
            if time.monotonic() + wait >= deadline:
                raise error
            await asyncio.sleep(wait)
            attempt += 1

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamEvent]:
        total = request.timeout or self.settings.timeout
        read, is_read_timeout = self._read_timeout(total)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + total + DEADLINE_GRACE

        def wait_at_most() -> float:
            return min(read, max(0.001, deadline - loop.time()))

        attempt = 0
        while True:
            target = await self.target(request.model)
            body = self._body(request, target, stream=True)
            state = StreamState(model=target.model, prompt_estimate=estimate_prompt_tokens(body))
            started = False
            stream: http.EventStream | None = None
            timeout = wait_at_most()
            try:
                stream = await asyncio.wait_for(
                    http.open_stream(f"{target.base_url}/chat/completions", payload=body, api_key=target.api_key),
                    timeout=timeout,
                )
                if stream.status != 200 or "html" in stream.headers.get("content-type", "").lower():
                    timeout = wait_at_most()
                    raw = await asyncio.wait_for(stream.body(), timeout=timeout)
                    response = http.Response(status=stream.status, headers=stream.headers, body=raw)
                    if stream.status == 200:
                        self._answer(response, target)  # raises: an HTML page is no event stream
                    raise error_for(response, model=request.model, url=target.base_url)
                events = stream.events()
                while True:
                    timeout = wait_at_most()
                    try:
                        data = await asyncio.wait_for(events.__anext__(), timeout=timeout)
                    except StopAsyncIteration:
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        raise ProviderUnavailableError(
                            "the local model server sent a malformed stream event",
                            fix="retry; if it persists, check the server with `rlm doctor`",
                        ) from None
                    if isinstance(chunk, Mapping) and chunk.get("error"):
                        raise BackendError(f"the local model failed while streaming: {_message(chunk)}")
                    piece = state.feed(chunk if isinstance(chunk, Mapping) else {})
                    if piece:
                        started = True
                        yield TextDelta(text=piece)
                if state.finish_reason is None:
                    raise truncated_stream(SERVER, target.base_url, "finish_reason").error
                final = state.response()
                _check_not_empty(final, target, "no content delta, no tool call")
                for call in state.tool_calls():
                    yield ToolCallDelta(call=call)
                yield StreamEnd(response=final)
                return
            except TimeoutError:
                error: BackendError = _timeout_error(min(read, total), read_setting=is_read_timeout)
            except http.HTTPFailure as exc:
                error = self._transport_error(exc, target)
            except BackendError as exc:
                error = exc
            finally:
                if stream is not None:
                    stream.close()
            retry_after = getattr(error, "retry_after", None)
            if started or error.permanent or attempt >= self.settings.max_retries:
                raise error
            wait = _backoff(attempt, retry_after)
            if loop.time() + wait >= deadline:
                raise error
            await asyncio.sleep(wait)
            attempt += 1

    def _transport_error(self, exc: http.HTTPFailure, target: Target) -> BackendError:
        server = target.server
        if server is not None and not server.alive():
            tail = server.log_tail()
            return ProviderUnavailableError(
                with_tail("the local llama.cpp server died", tail),
                fix="it is restarted on the next call; `rlm doctor` checks the setup",
            )
        return ProviderUnavailableError(f"the model server at {target.base_url} failed: {exc}",
                                        fix="check that the server is running")

    async def aclose(self) -> None:
        """Forget the targets; the shared server keeps running for other calls and stops at exit."""
        self._targets.clear()


# --- errors ------------------------------------------------------------------------------------


def _timeout_error(timeout: float, *, read_setting: bool = False) -> BackendError:
    knob = "[plugins.backend-local] read_timeout" if read_setting else "the timeout"
    return ProviderUnavailableError(
        f"the local model timed out after {timeout:g} s",
        fix=f"raise {knob}, or lower [plugins.backend-local] max_tokens",
    )


def _check_not_empty(response: LLMResponse, target: Target, detail: str) -> None:
    """An error for an answer with no text and no tool call (one cut by max_tokens is the caller's to judge)."""
    failure = empty_answer_of(response, SERVER, target.base_url, detail, compatible="OpenAI")
    if failure is not None:
        raise failure.error if failure.retryable else permanent(failure.error)


def _message(data: Any) -> str:
    if isinstance(data, Mapping):
        error = data.get("error")
        if isinstance(error, Mapping) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        detail = data.get("detail")
        if detail:
            return detail if isinstance(detail, str) else json.dumps(detail)[:500]
    return ""


def _code(data: Any) -> str:
    error = data.get("error") if isinstance(data, Mapping) else None
    return str(error.get("code") or error.get("type") or "") if isinstance(error, Mapping) else ""


def error_for(response: http.Response, *, model: str, url: str) -> BackendError:
    """The rlm error for a non-200 answer, naming cause and fix."""
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError):
        data = None
    message = _message(data) or response.body.decode("utf-8", "replace")[:300].strip() or f"HTTP {response.status}"
    code = _code(data)
    status = response.status
    error: BackendError
    if status in (401, 403):
        error = AuthenticationError(f"the model server at {url} refused the API key ({message})",
                                    fix="set the key the server expects, or unset [rlm] api_base")
    elif status == 404:
        error = ModelNotFoundError(f"model {model!r} not found on the server at {url} ({message})",
                                   fix="use a model the server serves (see its /v1/models)")
    elif status in (400, 413) and ("context" in code.lower() or "context" in message.lower()):
        error = ContextTooLongError(f"the prompt does not fit the local model's context window ({message})",
                                    fix="raise [plugins.backend-local] n_ctx, or shorten the input")
    elif status == 429:
        error = RateLimitError(f"the model server at {url} is rate limiting ({message})",
                               fix="wait and retry, or lower max_parallel")
    elif status >= 500 or status == 408:
        error = ProviderUnavailableError(f"the model server at {url} failed with HTTP {status} ({message})",
                                         fix="retry; `rlm doctor` checks the local model setup")
    else:
        error = permanent(BackendError(f"the model server at {url} rejected the request with HTTP {status} "
                                       f"({message})", fix="report this with the request that caused it"))
    retry_after = response.headers.get("retry-after")
    if retry_after:
        try:
            error.retry_after = float(retry_after)  # type: ignore[attr-defined]
        except ValueError:
            pass
    return error


def _backoff(attempt: int, retry_after: float | None) -> float:
    delay = min(_MAX_BACKOFF, 0.25 * 2 ** attempt) * (0.8 + 0.4 * random.random())
    return max(delay, retry_after) if retry_after is not None else delay
