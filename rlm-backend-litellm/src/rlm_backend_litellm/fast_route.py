"""The fast OpenAI route: a non-streamed call to an OpenAI-protocol model sent without ``litellm.acompletion``.

For a model litellm itself serves as provider ``openai`` (OpenAI, or an OpenAI-compatible server at ``api_base``),
litellm's work per call is: build the request body with its ``OpenAIGPTConfig`` (message and tool rewrites
for the OpenAI wire), post it with the openai SDK client it was given (the backend's shared client over
:mod:`rlm_backend_kit.http_transport`), and around that, unconditionally, its logging object, the standard
logging payload, ``completion_cost``, walks of the whole conversation and a typed ``ModelResponse`` -- about
2/3 of the litellm route's client CPU per turn.  This route keeps the first two, litellm's own code: the body
is ``OpenAIGPTConfig.transform_request``'s (the same function ``litellm.acompletion`` calls, so the bytes on the
wire are litellm's), posted the way litellm posts it (``client.post("/chat/completions", body=...)`` with the
same timeout), and the answer read by litellm's own ``convert_to_model_response_object`` (finish reasons, ``<think>`` reasoning, repaired tool calls; a 400 "max_tokens
or model output limit was reached" becomes litellm's own length-truncated answer).  Errors are the SDK's
exceptions, which :func:`rlm_backend_litellm.errors.classify` maps to the same rlm errors as litellm's wrappers
of them; retries and timeouts are the backend's, as before.

It is taken only when nothing could tell the difference (:meth:`FastRoute.usable` is checked on every call):

- ``[plugins.backend-litellm] fast_openai_route`` and ``shared_client`` are on, the call is not streamed,
  and the backend has a shared client for the model (provider ``openai``, at ``api_base`` or, without one,
  where litellm would send it: ``OPENAI_BASE_URL``, ``OPENAI_API_BASE`` or api.openai.com; no proxy in the
  environment, ``RLM_HTTP_TRANSPORT`` not ``httpx``: :func:`rlm_backend_kit.http_transport.lean_ok`);
- litellm's chat config for the model is the plain ``OpenAIGPTConfig`` (or its unknown-model variant): not the
  o-series, GPT-5, audio or any other config that rewrites parameters;
- every parameter sent is one litellm passes through for that model (no ``drop_params``, backend or global);
- no litellm callback of any kind is registered (every ``litellm.*callback*`` list and dict is empty: a user's
  Langfuse/OTel/custom logger keeps being called), and none of litellm's global settings that act on a call is
  set (cache, budget, call rules, model aliases, fallbacks, global headers, organization, a secret manager,
  ``modify_params``, JSON schema validation); ``OPENAI_ORGANIZATION`` is not set, and litellm's logger is
  not asked for INFO or DEBUG records (``LITELLM_LOG``).

Anything else goes through ``litellm.acompletion`` as before.  litellm internals are looked up once, by
name; a litellm without them (another version) leaves every call on ``litellm.acompletion``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

import attrs
from rlm.logging import get_logger

log = get_logger(__name__)

#: litellm settings that must be empty/unset/false for the fast route (each acts on every call)
UNSET_SETTINGS = (
    "cache", "drop_params", "modify_params", "model_alias_map", "max_budget", "pre_call_rules", "post_call_rules",
    "default_fallbacks", "context_window_fallbacks", "content_policy_fallbacks", "headers", "organization",
    "enable_json_schema_validation", "_key_management_system", "secret_manager_client", "guardrail_name_config_map",
    "return_response_headers", "api_version", "api_base", "api_key", "openai_key",
)
#: the request keys that are not sampling/format parameters
_NOT_PARAMS = frozenset({"model", "messages", "timeout", "num_retries", "max_retries", "api_base", "api_key",
                         "custom_llm_provider", "client", "drop_params"})


@attrs.frozen
class LiteLLMParts:
    """The pieces of litellm the fast route uses, looked up once (None: this litellm lacks one)."""

    config_for: Any
    config_types: tuple[type, ...]
    #: litellm's reading of a parsed answer (``convert_to_model_response_object``) and its ``ModelResponse``
    to_model_response: Any
    model_response: Any
    is_output_token_limit_error: Any
    build_output_token_limit_response: Any
    #: names of litellm's callback lists/dicts (every module attribute named ``*callback*``)
    callback_names: tuple[str, ...]


_parts: LiteLLMParts | None | bool = False
_LITELLM_LOGGER = logging.getLogger("LiteLLM")


def litellm_parts(litellm: Any) -> LiteLLMParts | None:
    """The litellm internals of the fast route, or None (logged once) when this litellm does not have them."""
    global _parts
    if _parts is not False:
        return _parts  # type: ignore[return-value]
    try:
        from litellm.litellm_core_utils.llm_response_utils.convert_dict_to_response import (
            convert_to_model_response_object,
        )
        from litellm.llms.openai.chat.gpt_transformation import (
            OpenAIGPTConfig,
            OpenAIUnknownModelConfig,
        )
        from litellm.llms.openai.common_utils import (
            build_output_token_limit_response,
            is_output_token_limit_error,
        )
        from litellm.types.utils import LlmProviders, ModelResponse
        from litellm.utils import ProviderConfigManager

        def config_for(model: str) -> Any:
            return ProviderConfigManager.get_provider_chat_config(model=model, provider=LlmProviders.OPENAI)

        names = tuple(sorted(n for n in dir(litellm) if "callback" in n.lower() and not n.startswith("_known")
                             and isinstance(getattr(litellm, n, None), (list, dict, set, tuple))))
        _parts = LiteLLMParts(config_for=config_for, config_types=(OpenAIGPTConfig, OpenAIUnknownModelConfig),
                              to_model_response=convert_to_model_response_object, model_response=ModelResponse,
                              is_output_token_limit_error=is_output_token_limit_error,
                              build_output_token_limit_response=build_output_token_limit_response,
                              callback_names=names)
    except Exception as exc:  # noqa: BLE001 - another litellm: every call through litellm.acompletion
        log.info("litellm_fast_route_unavailable", reason=repr(exc),
                 fix="nothing to do: calls go through litellm.acompletion")
        _parts = None
    return _parts  # type: ignore[return-value]


def litellm_untouched(litellm: Any, parts: LiteLLMParts) -> str | None:
    """None when no litellm callback and no call-wide litellm setting is in use; else the first one found."""
    for name in parts.callback_names:
        if getattr(litellm, name, None):
            return name
    for name in UNSET_SETTINGS:
        if getattr(litellm, name, None):
            return name
    if os.environ.get("OPENAI_ORGANIZATION"):
        return "OPENAI_ORGANIZATION"
    if _LITELLM_LOGGER.isEnabledFor(logging.INFO):
        return "LITELLM_LOG"  # litellm's own logs of each call were asked for
    return None


def response_type(client: Any) -> Any:
    """The ``Response`` class of the httpx (or ``httpx2``) under the SDK client: as ``cast_to`` the SDK hands
    back the HTTP response as it came; None when the client is not httpx-based."""
    http_client = getattr(client, "_client", None)
    base = next((c for c in type(http_client).__mro__ if c.__name__ == "AsyncClient"), None)
    module = sys.modules.get(base.__module__.split(".")[0]) if base is not None else None
    return getattr(module, "Response", None)


@attrs.frozen
class FastRoute:
    """The fast route for one model: litellm's chat config for it, the shared SDK client, what litellm passes."""

    model: str
    client: Any
    config: Any
    parts: LiteLLMParts
    #: the parameters litellm passes through unchanged for this model
    supported: frozenset[str]
    #: httpx's ``Response`` (``cast_to``: the SDK returns the HTTP response as it came)
    response_type: Any
    litellm_params: Mapping[str, Any]

    @classmethod
    def make(cls, litellm: Any, model: str, client: Any, base_url: str) -> FastRoute | None:
        parts = litellm_parts(litellm)
        if parts is None or client is None:
            return None
        try:
            config = parts.config_for(model)
        except Exception:  # noqa: BLE001 - litellm cannot tell: its own path says what is wrong
            return None
        if type(config) not in parts.config_types:
            log.debug("litellm_fast_route_off", model=model, reason=f"litellm config {type(config).__name__}")
            return None
        kind = response_type(client)
        if kind is None:
            return None
        try:
            supported = frozenset(config.get_supported_openai_params(model))
        except Exception:  # noqa: BLE001
            return None
        return cls(model=model, client=client, config=config, parts=parts, supported=supported, response_type=kind,
                   litellm_params={"custom_llm_provider": "openai", "api_base": base_url})

    def takes(self, params: Mapping[str, Any]) -> bool:
        """Whether every parameter of ``params`` is one litellm passes through for this model."""
        return all(k in self.supported for k in params if k not in _NOT_PARAMS)

    def body(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The request body litellm would send for ``params`` (its ``OpenAIGPTConfig.transform_request``)."""
        optional = {k: v for k, v in params.items() if k not in _NOT_PARAMS}
        return self.config.transform_request(self.model, list(params["messages"]), optional,
                                             dict(self.litellm_params), {})

    async def send(self, body: dict[str, Any], timeout: float) -> Any:
        """Post ``body`` as litellm does; the answer as litellm's ``ModelResponse`` (read by litellm's own
        ``convert_to_model_response_object``: finish reasons, reasoning in ``<think>`` tags, repaired tool calls),
        or the text of a body that is not JSON.  A 400 that litellm turns into an answer (the output token
        limit) is that answer."""
        import openai

        try:
            response = await self.client.post("/chat/completions", cast_to=self.response_type, body=body,
                                              options={"timeout": timeout})
        except openai.BadRequestError as exc:
            if not self.parts.is_output_token_limit_error(exc):
                raise
            return self.parts.build_output_token_limit_response(e=exc, data=body, is_async=True, base_model=None)[1]
        if "json" not in response.headers.get("content-type", "").lower():
            return response.text
        answer = json.loads(response.content)
        if not isinstance(answer, dict):
            return response.text
        headers = dict(response.headers)
        return self.parts.to_model_response(
            response_object=self.config.transform_parsed_response_dict(answer),
            model_response_object=self.parts.model_response(), hidden_params={"headers": headers},
            _response_headers=headers)
