"""The OpenAI backend: Chat Completions through the official ``openai`` SDK.

Model strings may carry the ``openai/`` prefix rlm routes by; it is stripped
before sending.  ``base_url`` (``[rlm] api_base``) points the SDK at any
OpenAI-compatible server; such a server needs no key, so a placeholder is
sent when none is set.  The SDK's own retries are off: :mod:`rlm_backend_kit.retry`
retries 429/5xx/connection failures with backoff, jitter and
``Retry-After``.  SDK exceptions are turned into :mod:`rlm.errors` by
:mod:`.errors`.

Every attempt waits at most ``read_timeout`` for the server's next bytes
(:func:`rlm_backend_kit.retry.read_timeout`: one value for the backend's life); a
request's own ``timeout`` (the run's remaining time) bounds the whole call,
retries included, and no retry starts whose wait would end after it.  What the SDK accepts but is no answer is an error
too: a stream that ends without a ``finish_reason`` (the SDK drops
``[DONE]``, so the finish is the end marker seen here; retried while nothing
was yielded), an event that is not JSON, an answer with no text and no tool
call (``content: null``; retried), and an HTML page or other non-JSON body
with status 200 (not retried: ``api_base`` is wrong).

A non-streamed call on the shared client over the lean transport skips the SDK's per-call request and
response objects once the SDK has made one call: the SDK builds the request head once (auth, organization,
project, platform and timeout headers, the httpx client's headers and cookies) and each call sends it with
its own body (:class:`_DirectRoute`; answers, errors, cookies and redirects are handled as the SDK handles
them).  A client with per-call auth (an API-key provider, workload identity), SDK retries or custom httpx
settings always goes through the SDK's ``post``.
"""

from __future__ import annotations

import importlib
import json
import re
import ssl
import sys
import time
from typing import Any

from rlm_backend_kit import openai_format as convert
from rlm.backend import BackendCapabilities, LLMRequest, LLMResponse
from rlm_backend_kit.sdk_backend import (
    NO_KEY_MESSAGE,  # noqa: F401 - re-exported
    SDKBackend,
    SDKCall,
)

from rlm_backend_openai.errors import classify
from rlm_backend_openai.options import OpenAIOptions

PREFIX = "openai/"
SECTION = "backend-openai"
PROVIDER = "OpenAI"
KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"
SDK_REQUIREMENT = "openai>=2,<4"
INSTALL_HINT = f"pip install '{SDK_REQUIREMENT}'  (or: pip install rlm-backend-openai)"
#: Sent as the key to a custom base_url when no key is set (local servers ignore it).
PLACEHOLDER_KEY = "sk-no-key-required"

_TEXT_ONLY = re.compile(r"^(gpt-3\.5|gpt-4(-\d{4})?$|gpt-4-32k|o1-mini|o1-preview|o3-mini|text-|davinci|babbage)")
_NO_JSON_SCHEMA = re.compile(r"^(gpt-3\.5|gpt-4(-\d{4})?$|gpt-4-32k|gpt-4-turbo|o1-mini|o1-preview)")


def model_id(model: str) -> str:
    """The model as OpenAI names it: without rlm's ``openai/`` routing prefix."""
    return model.removeprefix(PREFIX)


class OpenAIBackend(SDKBackend):
    """:class:`rlm.backend.Backend` for OpenAI and OpenAI-compatible servers.

    Constructing it does no I/O and does not import the SDK; the client is
    made on the first call and closed by :meth:`aclose`.
    """

    name = "openai"
    section = SECTION
    options_type = OpenAIOptions
    provider = PROVIDER
    sdk_module = "openai"
    install_hint = INSTALL_HINT
    key_env = KEY_ENV
    base_url_env = BASE_URL_ENV
    placeholder_key = PLACEHOLDER_KEY
    no_key_fix = (f"export {KEY_ENV}=sk-... for OpenAI models, or set api_base to a local OpenAI-compatible "
                  "server (which needs no key)")
    body_noun = "completion"
    end_marker = "finish_reason"  # the SDK drops [DONE]: the finish is the end marker seen here
    empty_stream_detail = "no content delta, no tool call"
    classify_error = staticmethod(classify)
    share_clients = True

    #: (the last request's ``tools`` object, its JSON): :meth:`_tools_json`
    _last_tools: tuple[Any, bytes] | None = None

    def max_tokens_param(self) -> str:
        choice = self.options.max_tokens_param
        if choice != "auto":
            return choice
        return "max_tokens" if self.base_url else "max_completion_tokens"

    def make_client(self, sdk: Any, http_client: Any = None) -> Any:
        return _client_type(sdk)(
            http_client=http_client,
            api_key=self.api_key(),
            base_url=self.base_url,
            organization=self.options.organization,
            project=self.options.project,
            timeout=self.timeout,
            max_retries=0,
        )

    def capabilities(self, model: str) -> BackendCapabilities:
        name = model_id(model).lower()
        return BackendCapabilities(
            native_tools=True,
            json_schema=not _NO_JSON_SCHEMA.match(name),
            vision=not _TEXT_ONLY.match(name) and "audio" not in name,
            audio="audio" in name,
            preferred_protocol="tools",
        )

    def _params(self, request: LLMRequest) -> dict[str, Any]:
        params = convert.request_params(request, max_tokens_param=self.max_tokens_param())
        if request.max_tokens is None and self.options.default_max_tokens is not None:
            params[self.max_tokens_param()] = self.options.default_max_tokens
        params["model"] = model_id(request.model)
        params["timeout"] = self.timeout
        return params

    def prepare(self, request: LLMRequest, *, stream: bool) -> SDKCall:
        params = self._params(request)
        if stream:
            params["stream"] = True
            params["stream_options"] = {"include_usage": True}
            return SDKCall(params)
        # the body's JSON from each message's, encoded once (the SDK would encode the whole conversation each turn),
        # and the tools' once per tools object (a run sends the same one with every call: a fan-out of sub-calls)
        try:
            body: bytes | None = convert.json_body({k: v for k, v in params.items() if k not in ("timeout", "tools")},
                                                   request.messages)
            if "tools" in params:
                body = body[:-1] + b',"tools":' + self._tools_json(request.tools, params["tools"]) + b"}"
        except (TypeError, ValueError):  # not JSON as it stands (NaN, a lone surrogate): the SDK says so as usual
            body = None
        return SDKCall(params, body=body)

    def _tools_json(self, tools: Any, wire: list[dict[str, Any]]) -> bytes:
        """The JSON of ``wire`` (``tools`` in OpenAI form), kept for the last ``tools`` object sent."""
        kept = self._last_tools
        if kept is None or kept[0] is not tools:
            kept = self._last_tools = (tools, convert.json_bytes(wire))
        return kept[1]

    @staticmethod
    def _create_kwargs(params: dict[str, Any]) -> dict[str, Any]:
        """``chat.completions.create`` arguments that skip the SDK's typed re-transform of the body.

        ``params`` is already the wire format (rlm_backend_kit.openai_format built it); the
        SDK's recursive transform of ``messages`` costs ~1 ms per message per
        call, so a long conversation paid tens of ms a turn.  The body goes in
        ``extra_body``, which the SDK merges over its (empty) transformed one.
        """
        wire = {k: v for k, v in params.items() if k not in ("model", "timeout", "stream")}
        kwargs: dict[str, Any] = {"model": params["model"], "messages": [], "timeout": params["timeout"],
                                  "extra_body": wire}
        if params.get("stream"):
            kwargs["stream"] = True
        return kwargs

    async def create(self, client: Any, call: SDKCall) -> Any:
        kwargs = self._create_kwargs(call.params)
        if kwargs.get("stream"):
            return await client.chat.completions.create(**kwargs)
        if call.body is not None:
            direct = _direct_route(client, kwargs["timeout"])
            if direct is not None:
                answer = await direct.post(call.body)
                if answer is not _REDIRECTED:
                    return answer
        response_type = _response_type(client)
        if response_type is not None:
            # the SDK's own ``post`` (auth, headers, errors as the SDK raises them), without ``create``'s typed
            # transform of the params and typed parse of the answer -- about 40% of the SDK's CPU per call: the
            # body is already the wire format and the answer is read as a dict (from_openai_completion reads both)
            if call.body is not None and _takes_content(client):
                response = await client.post("/chat/completions", cast_to=response_type, content=call.body,
                                             options={"timeout": kwargs["timeout"]})
            else:
                body = {"model": kwargs["model"], **kwargs["extra_body"]}
                response = await client.post("/chat/completions", cast_to=response_type, body=body,
                                             options={"timeout": kwargs["timeout"]})
        else:  # pragma: no cover - an SDK whose client is not httpx-based
            response = (await client.chat.completions.with_raw_response.create(**kwargs)).http_response
        content_type = response.headers.get("content-type", "")
        if "json" not in content_type.lower():
            return response.text  # as the SDK does: the text of a body that is not JSON (an error in _read)
        return json.loads(response.content)

    def to_response(self, body: Any, call: SDKCall) -> LLMResponse:
        return convert.from_openai_completion(body, model=call.model)

    def body_detail(self, body: Any) -> str:
        return convert.content_detail(body)

    def assembler(self, call: SDKCall) -> convert.StreamAssembler:
        return convert.StreamAssembler(model=call.model)

    def stream_ended(self, assembler: convert.StreamAssembler) -> bool:
        return assembler.finish_reason is not None


_CLIENT_TYPES: dict[type, type] = {}


def _client_type(sdk: Any) -> type:
    """``sdk.AsyncOpenAI`` with the URL of each path kept once made (the SDK joins and parses the base URL and
    the path again for every request: ~5% of a turn's CPU).  Kept per client and base URL: a new ``base_url``
    (the SDK's setter makes a new URL object) makes new ones; nothing else goes into the URL."""
    base = sdk.AsyncOpenAI
    kind = _CLIENT_TYPES.get(base)
    if kind is None:
        class AsyncOpenAI(base):  # type: ignore[misc, valid-type]
            _rlm_urls: tuple[Any, dict[str, Any]] | None = None
            #: (base URL, timeout, its :class:`_DirectRoute`), or None: made on the next non-streamed call
            _rlm_direct: tuple[Any, float, _DirectRoute] | None = None

            def _prepare_url(self, url: str) -> Any:
                base_url = self.base_url
                urls = self._rlm_urls
                if urls is None or urls[0] is not base_url:
                    urls = self._rlm_urls = (base_url, {})
                prepared = urls[1].get(url)
                if prepared is None:  # httpx URLs are immutable: one can serve every request
                    prepared = urls[1][url] = super()._prepare_url(url)
                return prepared

        AsyncOpenAI.__qualname__ = base.__qualname__
        AsyncOpenAI.__module__ = __name__
        kind = _CLIENT_TYPES[base] = AsyncOpenAI
    return kind


_RESPONSE_TYPES: dict[type, Any] = {}
_TAKES_CONTENT: dict[type, bool] = {}


def _takes_content(client: Any) -> bool:
    """Whether the SDK client's ``post`` sends a ``content=`` body as it is (openai 2.x's later releases do)."""
    kind = type(client)
    known = _TAKES_CONTENT.get(kind)
    if known is None:
        import inspect

        try:
            known = "content" in inspect.signature(client.post).parameters
        except (TypeError, ValueError):
            known = False
        _TAKES_CONTENT[kind] = known
    return known


def _response_type(client: Any) -> Any:
    """The ``Response`` class of the httpx (or fork, e.g. ``httpx2``) under ``client``: as ``cast_to``, the SDK
    hands back the HTTP response as it came; None when the client has no such httpx."""
    http_client = getattr(client, "_client", None)
    kind = type(http_client)
    if kind not in _RESPONSE_TYPES:
        base = next((c for c in kind.__mro__ if c.__name__ == "AsyncClient"), None)
        module = sys.modules.get(base.__module__.split(".")[0]) if base is not None else None
        _RESPONSE_TYPES[kind] = getattr(module, "Response", None)
    return _RESPONSE_TYPES[kind]


#: what :meth:`_DirectRoute.post` returns for a redirect: the SDK's own path sends the request (and follows it)
_REDIRECTED = object()
#: seconds a direct route's request head serves before the SDK builds it again (cookies it holds may expire)
DIRECT_HEAD_TTL = 30.0


class _DirectRoute:
    """A non-streamed ``POST /chat/completions`` straight onto the shared client's
    :class:`~rlm_backend_kit.http_transport.LeanTransport`, with the request head the SDK itself built.

    The SDK's ``post`` builds an options model, a header set, a URL and an httpx request and response for
    every call (~0.3 ms of CPU, most of a sub-call's client cost: a fan-out of 200 sub-calls pays it 200 times
    on one event loop).  Here the SDK builds them once (the client's auth, organization, project, platform and
    timeout headers, and the httpx client's own headers and cookies) and each call sends that head with its
    body.  What the SDK would do with the answer is done
    the same way: a connection failure or timeout is the SDK's ``APIConnectionError``/``APITimeoutError``, a
    4xx/5xx its status error (``_make_status_error_from_response``), a body that is not JSON its text, a
    compressed body decoded, cookies the server sets kept in the client's jar (the head is then built again),
    and a redirect goes through the SDK's own path, which follows it."""

    __slots__ = ("client", "http", "hx", "sdk", "transport", "request", "prefix", "made", "cookies")

    def __init__(self, client: Any, http: Any, hx: Any, sdk: Any, transport: Any, request: Any) -> None:
        self.client, self.http, self.hx, self.sdk, self.transport = client, http, hx, sdk, transport
        self.request = request
        self.prefix = transport.head_prefix(request)
        self.made = time.monotonic()
        self.cookies = len(http.cookies.jar)

    def fresh(self) -> bool:
        return time.monotonic() - self.made < DIRECT_HEAD_TTL and len(self.http.cookies.jar) == self.cookies

    async def post(self, body: bytes) -> Any:
        hx, request = self.hx, self.request
        try:
            status, headers, raw = await self.transport.post_bytes(
                request, self.prefix + b"Content-Length: %d\r\n\r\n" % len(body), body)
        except hx.TimeoutException as exc:
            raise self.sdk.APITimeoutError(request=request) from exc
        except (hx.RequestError, ssl.SSLError) as exc:
            raise self.sdk.APIConnectionError(request=request) from exc
        plain = 200 <= status < 300
        content_type = b""
        for name, value in headers:
            lower = name.lower()
            if lower == b"content-type":
                content_type = value
            elif lower in (b"content-encoding", b"set-cookie"):
                plain = False
        if plain and b"json" in content_type.lower():
            return json.loads(raw)
        if 300 <= status < 400:
            return _REDIRECTED
        # anything else as the SDK would read it: through an httpx response (decoded, cookies kept)
        response = hx.Response(status, headers=headers, content=raw, request=request)
        if any(name.lower() == b"set-cookie" for name, _ in headers):
            self.http.cookies.extract_cookies(response)
        if status >= 400:
            raise self.client._make_status_error_from_response(response)
        if "json" not in response.headers.get("content-type", "").lower():
            return response.text
        return json.loads(response.content)


def _direct_route(client: Any, timeout: float) -> _DirectRoute | None:
    """The client's direct route for requests with ``timeout``, made on first use; None where the SDK's own
    ``post`` must send: a client not over the lean transport, or with anything that changes a request per
    call (an API-key provider, workload identity, a provider runtime, custom auth, an idempotency header,
    SDK retries, httpx auth, event hooks or mounts), or before the SDK's first call (it looks up the platform
    headers then)."""
    kept = getattr(client, "_rlm_direct", _NOT_DIRECT)
    if kept is _NOT_DIRECT:  # not our client type: the SDK's post
        return None
    base_url = client.base_url
    if kept is not None and kept[0] is base_url and kept[1] == timeout and kept[2].fresh():
        return kept[2]
    route = _make_direct(client, timeout)
    client._rlm_direct = (base_url, timeout, route) if route is not None else None
    return route


_NOT_DIRECT = object()


def _make_direct(client: Any, timeout: float) -> _DirectRoute | None:
    from rlm_backend_kit import http_transport

    http = getattr(client, "_client", None)
    if http is None or getattr(client, "_platform", None) is None:
        return None
    for name in ("_provider_runtime", "_api_key_provider", "_workload_identity_auth", "_idempotency_header"):
        if getattr(client, name, None) is not None:
            return None
    if client.max_retries != 0 or client.custom_auth is not None:
        return None
    if getattr(http, "_auth", None) is not None or getattr(http, "_mounts", None):
        return None
    hooks = getattr(http, "_event_hooks", None)
    if hooks is None or any(hooks.values()):
        return None
    base = next((c for c in type(http).__mro__ if c.__name__ == "AsyncClient"), None)
    hx = sys.modules.get(base.__module__.split(".")[0]) if base is not None else None
    transport = getattr(http, "_transport", None)
    if hx is None or not isinstance(transport, http_transport.lean_transport_type(hx)):
        return None
    sdk_name = type(client).__mro__[1].__module__.split(".")[0]
    try:
        sdk = sys.modules[sdk_name]
        options = importlib.import_module(f"{sdk_name}._models").FinalRequestOptions.construct(
            method="post", url="/chat/completions", json_data=None, content=b"", timeout=timeout)
        request = client._build_request(options, retries_taken=0)
    except Exception:  # noqa: BLE001 - an SDK shaped otherwise: its own post
        return None
    if request.method != "POST":
        return None
    return _DirectRoute(client, http, hx, sdk, transport, request)
