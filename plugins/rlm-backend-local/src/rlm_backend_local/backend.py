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

Retries and errors are rlm-backend-kit's, as for every backend: :mod:`rlm_backend_kit.retry`
decides when to try again (``max_retries``, backoff with jitter,
``Retry-After``, no retry past the request's deadline; the policy, read
timeout and deadline come from :class:`rlm_backend_kit.sdk_backend.RetryingBackend`) and
:func:`rlm_backend_kit.provider_errors.classify` maps an error status to an rlm error
(401/403 authentication, 404 model, 429 rate limit, 408/409/5xx transient).
Local additions: a server that died during a call is restarted once (its
log tail in the error), and llama.cpp's "exceeds the context size" is a
ContextTooLongError whose fix is ``n_ctx``.

Faults: every attempt waits at most ``read_timeout`` (unset: the run's
timeout) for the server's next bytes; a stream that ends without a
``finish_reason``, an event stream that breaks the rules (:mod:`rlm.sse`: an
event over 1 MiB, a line not UTF-8), an answer with no text and no tool
call, and an HTML page instead of JSON are errors (all retried while nothing
was yielded but the page: ``api_base`` is wrong).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
from attrs import define
from rlm import sse
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
from rlm.errors import BackendError, ContextTooLongError, ProviderUnavailableError
from rlm.logging import get_logger
from rlm_backend_kit.provider_errors import (
    classify,
    empty_answer_of,
    malformed_stream,
    not_an_api_body,
    timed_out_failure,
    truncated_stream,
)
from rlm_backend_kit.retry import Failure, Fault, read_timeout
from rlm_backend_kit.sdk_backend import RetryingBackend

from rlm_backend_local import http
from rlm_backend_local.convert import (
    StreamState,
    estimate_prompt_tokens,
    parse_completion,
    request_body,
)
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
from rlm_backend_local.settings import SECTION, LocalSettings

log = get_logger(__name__)

PREFIX = "local/"
#: Turns a run's top call gets unless the user set max_turns: a CPU model answers a file question in
#: two to four turns, and one that has not after eight is repeating itself (each turn costs ~10 s).
SUGGESTED_MAX_TURNS = 8
#: How the server is named in errors: the one this backend started, one at ``[rlm] api_base``.
SERVER = "the local model server"
EXTERNAL_SERVER = "the model server"
#: What a 401/403's fix asks to check (the kernel's message says "check <this> (or the key given as api_key)").
KEY_HINT = "the key the server expects"


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


class LocalBackend(RetryingBackend):
    """The embedded default model (see the module docstring).

    Settings, options, retry policy, read timeout (:attr:`timeout`) and deadlines are
    :class:`rlm_backend_kit.sdk_backend.RetryingBackend`'s, as for every backend retried by :mod:`rlm_backend_kit.retry`.
    """

    name = "local"
    section = SECTION
    options_type = LocalSettings

    def __init__(self, *, settings: BackendSettings | None = None) -> None:
        super().__init__(settings=settings)
        self.local: LocalSettings = self.options
        self._external = self.settings.base_url.rstrip("/") if self.settings.base_url else None
        self.provider = EXTERNAL_SERVER if self._external else SERVER
        if self.local.read_timeout is None and self.settings.read_timeout is None:
            # unset, an attempt may take the run's whole timeout: a small CPU model can take minutes to answer
            self.timeout, self.timeout_fix = read_timeout(self.settings, self.settings.timeout, section=SECTION)
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

    def _answer(self, response: http.Response, target: Target) -> LLMResponse:
        """A 200's body as an LLMResponse; a Fault for a page that is no completion or an empty answer."""
        content_type = response.headers.get("content-type", "")
        if "html" in content_type.lower():
            raise Fault(not_an_api_body(self.provider, target.base_url, response.body.decode("utf-8", "replace"),
                                        content_type, compatible="OpenAI"))
        try:
            answer = parse_completion(response.json(), model=target.model)
        except (ValueError, UnicodeDecodeError, AttributeError, TypeError) as exc:
            raise Fault(Failure(error=ProviderUnavailableError(
                f"{self.provider} at {target.base_url} sent a response that could not be read ({exc})",
                fix="try again; if it persists, check the server with `rlm doctor`" if target.server else
                "try again; if it persists, check that api_base points at an OpenAI-compatible server",
            ))) from None
        self._check_not_empty(answer, target, "content: null, no tool call")
        return answer

    def _check_not_empty(self, response: LLMResponse, target: Target, detail: str) -> None:
        """A Fault for an answer with no text and no tool call (one cut by max_tokens is the caller's to judge)."""
        failure = empty_answer_of(response, self.provider, target.base_url, detail, compatible="OpenAI")
        if failure is not None:
            raise Fault(failure)

    def _bounded(self, request: LLMRequest) -> LLMRequest:
        """``request`` with a deadline: its own timeout, else the run's (a CPU model may take minutes)."""
        return request if request.timeout else attrs.evolve(request, timeout=self.settings.timeout)

    def _classifier(self, model: str, current: dict[str, Target]) -> Callable[[BaseException], Failure | None]:
        """The Failure of one call's failed attempt (``current["target"]``: the server it went to).

        Transport failures and error statuses are classified as for every
        backend; a server of ours that died is restarted (by the next
        attempt's :meth:`target`) once per call.
        """
        restarted = False

        def classify_exc(exc: BaseException) -> Failure | None:
            nonlocal restarted
            target = current.get("target")
            base_url = target.base_url if target is not None else self._external
            where = f" at {base_url}" if base_url else ""
            if isinstance(exc, TimeoutError):
                return timed_out_failure(self.provider, where, self.timeout,
                                         f"{self.timeout_fix}, or lower [plugins.{SECTION}] max_tokens")
            if isinstance(exc, http.HTTPFailure):
                server = target.server if target is not None else None
                if server is not None and not server.alive():
                    error = ProviderUnavailableError(
                        with_tail("the local llama.cpp server died", server.log_tail()),
                        fix="it is restarted on the next call; `rlm doctor` checks the setup",
                    )
                    retry, restarted = not restarted, True
                    return Failure(error=error, retryable=retry, retry_after=0.0)
                fix = ("check the server's certificate (or $SSL_CERT_FILE) and api_base" if isinstance(
                    exc, http.TLSFailure) else "check that the server is running and api_base")
                return Failure(error=ProviderUnavailableError(f"cannot reach {self.provider}{where}: {exc}", fix=fix),
                               retryable=not exc.permanent)
            if isinstance(exc, http.APIStatusError):
                name = target.model if target is not None else model
                return self._context_too_long(exc) or classify(
                    exc, model=name, provider=self.provider, key_env=KEY_HINT, base_url=base_url)
            return None

        return classify_exc

    def _context_too_long(self, exc: http.APIStatusError) -> Failure | None:
        """llama.cpp's "the request exceeds the available context size" (400, ``exceed_context_size_error``)."""
        if exc.status_code not in (400, 413):
            return None
        error = exc.body.get("error") if isinstance(exc.body, Mapping) else None
        said = [str(error.get(k) or "") for k in ("code", "type", "message")] if isinstance(error, Mapping) else []
        message = _message(exc.body) or exc.message
        if not any("context" in part.lower() for part in (*said, message)):
            return None
        fix = ("shorten the input, or serve the model with a larger context" if self._external else
               f"raise [plugins.{SECTION}] n_ctx, or shorten the input")
        return Failure(error=ContextTooLongError(
            f"the prompt does not fit the model's context window ({message})", fix=fix))

    async def complete(self, request: LLMRequest) -> LLMResponse:
        request = self._bounded(request)
        await self.target(request.model)  # assembles and starts the model on first use, outside the deadline
        current: dict[str, Target] = {}

        async def attempt() -> LLMResponse:
            target = current["target"] = await self.target(request.model)
            response = await asyncio.wait_for(
                http.request("POST", f"{target.base_url}/chat/completions", payload=self._body(request, target),
                             api_key=target.api_key),
                timeout=self.timeout,
            )
            if response.status != 200:
                raise http.APIStatusError(response)
            return self._answer(response, target)

        return await self._call(request, attempt, self._classifier(request.model, current),
                                self._too_late(request, self.provider, self._external))

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamEvent]:
        request = self._bounded(request)
        await self.target(request.model)
        current: dict[str, Target] = {}
        read = self.timeout

        async def attempt() -> AsyncIterator[StreamEvent]:
            target = current["target"] = await self.target(request.model)
            body = self._body(request, target, stream=True)
            state = StreamState(model=target.model, prompt_estimate=estimate_prompt_tokens(body))
            stream = await asyncio.wait_for(
                http.open_stream(f"{target.base_url}/chat/completions", payload=body, api_key=target.api_key),
                timeout=read,
            )
            try:
                if stream.status != 200 or "html" in stream.headers.get("content-type", "").lower():
                    raw = await asyncio.wait_for(stream.body(), timeout=read)
                    response = http.Response(status=stream.status, headers=stream.headers, body=raw)
                    if stream.status == 200:
                        self._answer(response, target)  # raises: an HTML page is no event stream
                    raise http.APIStatusError(response)
                events = stream.events()
                while True:
                    try:
                        data = await asyncio.wait_for(anext(events), timeout=read)
                    except StopAsyncIteration:
                        break
                    except sse.SSEError as exc:
                        raise Fault(Failure(error=ProviderUnavailableError(
                            f"{self.provider} at {target.base_url} sent a broken event stream: {exc}",
                            fix="try again; if it persists, check that api_base points at an OpenAI-compatible "
                                "server"), retryable=True)) from None
                    try:
                        chunk = json.loads(data)
                    except ValueError as exc:
                        raise Fault(malformed_stream(self.provider, target.base_url, exc, compatible="OpenAI")) from None
                    if isinstance(chunk, Mapping) and chunk.get("error"):
                        raise Fault(Failure(error=ProviderUnavailableError(
                            f"{self.provider} failed while streaming: {_message(chunk)}",
                            fix="try again; `rlm doctor` checks the local model setup"), retryable=True))
                    piece = state.feed(chunk if isinstance(chunk, Mapping) else {})
                    if piece:
                        yield TextDelta(text=piece)
            finally:
                stream.close()
            if state.finish_reason is None:
                raise Fault(truncated_stream(self.provider, target.base_url, "finish_reason"))
            final = state.response()
            self._check_not_empty(final, target, "no content delta, no tool call")
            for call in state.tool_calls():
                yield ToolCallDelta(call=call)
            yield StreamEnd(response=final)

        async for event in self._stream(request, attempt, self._classifier(request.model, current),
                                        self._too_late(request, self.provider, self._external)):
            yield event

    async def aclose(self) -> None:
        """Forget the targets; the shared server keeps running for other calls and stops at exit."""
        self._targets.clear()


# --- errors ------------------------------------------------------------------------------------


def _message(data: Any) -> str:
    """The server's words in an error body (OpenAI's ``error.message``, llama.cpp's, FastAPI's ``detail``)."""
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
