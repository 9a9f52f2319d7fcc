"""The Anthropic backend: the Messages API through the official ``anthropic`` SDK.

Model strings may carry the ``anthropic/`` prefix rlm routes by; it is
stripped before sending.  ``base_url`` (``[rlm] api_base``) points the SDK
at an Anthropic-compatible server, which gets a placeholder key when none is
set.  The SDK's own retries are off: :mod:`rlm_backend_kit.retry` retries 429/5xx/529,
timeouts and connection failures with backoff, jitter and ``Retry-After``.
SDK exceptions are turned into :mod:`rlm.errors` by :mod:`.errors`.

Every attempt waits at most ``read_timeout`` for the server's next bytes
(:func:`rlm_backend_kit.retry.read_timeout`); a request's own ``timeout`` (the run's
remaining time) bounds the whole call, retries included.  What the SDK
accepts but is no answer is an error too: a stream without ``message_stop``
(retried while nothing was yielded), an event that is not JSON, a message
with no text and no tool call (``content: []``; retried), and an HTML page
or other non-JSON body with status 200 (not retried: ``api_base`` is wrong).
"""

from __future__ import annotations

from typing import Any

from rlm.backend import BackendCapabilities, LLMRequest, LLMResponse
from rlm_backend_kit.sdk_backend import (
    NO_KEY_MESSAGE,  # noqa: F401 - re-exported
    SDKBackend,
    SDKCall,
)

from rlm_backend_anthropic import convert
from rlm_backend_anthropic.errors import classify
from rlm_backend_anthropic.options import AnthropicOptions

PREFIX = "anthropic/"
SECTION = "backend-anthropic"
PROVIDER = "Anthropic"
KEY_ENV = "ANTHROPIC_API_KEY"
BASE_URL_ENV = "ANTHROPIC_BASE_URL"
SDK_REQUIREMENT = "anthropic>=2,<3"
INSTALL_HINT = f"pip install '{SDK_REQUIREMENT}'  (or: pip install rlm-backend-anthropic)"
#: Sent as the key to a custom base_url when no key is set.
PLACEHOLDER_KEY = "sk-ant-no-key-required"


def model_id(model: str) -> str:
    """The model as Anthropic names it: without rlm's ``anthropic/`` routing prefix."""
    return model.removeprefix(PREFIX)


class AnthropicBackend(SDKBackend):
    """:class:`rlm.backend.Backend` for Anthropic's Messages API.

    Constructing it does no I/O and does not import the SDK; the client is
    made on the first call and closed by :meth:`aclose`.
    """

    name = "anthropic"
    section = SECTION
    options_type = AnthropicOptions
    provider = PROVIDER
    sdk_module = "anthropic"
    install_hint = INSTALL_HINT
    key_env = KEY_ENV
    base_url_env = BASE_URL_ENV
    placeholder_key = PLACEHOLDER_KEY
    no_key_fix = (f"export {KEY_ENV}=sk-ant-... for Anthropic models, or set api_base to an Anthropic-compatible "
                  "server")
    body_noun = "message"
    end_marker = "message_stop"
    empty_stream_detail = "no content block"
    classify_error = staticmethod(classify)
    share_clients = True

    def make_client(self, sdk: Any, http_client: Any = None) -> Any:
        return sdk.AsyncAnthropic(api_key=self.api_key(), base_url=self.base_url, timeout=self.timeout,
                                  max_retries=0, http_client=http_client)

    def capabilities(self, model: str) -> BackendCapabilities:
        return BackendCapabilities(
            native_tools=True,
            json_schema=True,
            vision=True,
            audio=False,
            preferred_protocol="tools",
            sampling=frozenset({"temperature", "top_p"}),  # the Messages API has no seed
        )

    def prepare(self, request: LLMRequest, *, stream: bool) -> SDKCall:
        """The Messages API body (with ``max_tokens``, which Anthropic requires); ``context`` is the
        :class:`convert.Prepared` (its answer tool, in tool mode)."""
        model = model_id(request.model)
        max_tokens = request.max_tokens or self.options.default_max_tokens or convert.default_max_tokens(model)
        prepared = convert.request_params(
            request, model=model, max_tokens=max_tokens, structured_output=self.options.structured_output
        )
        prepared.params["timeout"] = self.timeout
        params = dict(prepared.params, stream=True) if stream else prepared.params
        return SDKCall(params, context=prepared)

    @staticmethod
    def _create_kwargs(params: dict[str, Any]) -> dict[str, Any]:
        """``messages.create`` arguments that skip the SDK's typed re-transform of the body.

        ``params`` is already the wire format; the SDK's recursive transform
        costs about a millisecond per message per call, so the body goes in
        ``extra_body``, which the SDK merges over its (tiny) transformed one.
        """
        direct = ("model", "max_tokens", "timeout", "stream")
        wire = {k: v for k, v in params.items() if k not in direct and k != "extra_body"}
        wire.update(params.get("extra_body") or {})
        kwargs = {k: params[k] for k in direct if k in params}
        kwargs["messages"] = []
        kwargs["extra_body"] = wire
        return kwargs

    async def create(self, client: Any, call: SDKCall) -> Any:
        return await client.messages.create(**self._create_kwargs(call.params))

    def to_response(self, body: Any, call: SDKCall) -> LLMResponse:
        return convert.from_anthropic_message(body, model=call.model, output_tool=call.context.output_tool)

    def body_detail(self, body: Any) -> str:
        return _content_detail(body)

    def assembler(self, call: SDKCall) -> convert.StreamAssembler:
        return convert.StreamAssembler(model=call.model, output_tool=call.context.output_tool)

    def stream_ended(self, assembler: convert.StreamAssembler) -> bool:
        return assembler.stopped


def _content_detail(message: Any) -> str:
    """What the message held: ``content: []``, no content at all, or only empty text blocks."""
    content = convert._get(message, "content")
    if content is None:
        return "no content field"
    if not content:
        return "content: []"
    return "only empty text blocks"
