"""The litellm backend beyond the conformance suite: quiet stdout, providers for api_base, capabilities.

The first test imports litellm (seconds) under fd-level capture, so that
what litellm prints while importing is checked too when this file runs first.
"""

from __future__ import annotations

import os
import sys

import pytest
from rlm.backend import BackendSettings, LLMRequest
from rlm.errors import BackendError
from rlm.types import Message
from rlm_backend_litellm import loader
from rlm_backend_litellm.backend import LiteLLMBackend
from rlm_backend_litellm.options import LiteLLMOptions
from rlm_testing.backend_plugin_suite import fast_backend, run
from rlm_testing.server import Reply

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def _backend(server, **settings) -> LiteLLMBackend:
    return fast_backend(LiteLLMBackend, server, **settings)


def test_nothing_reaches_stdout(scripted_llm, capfd):
    """stdout may be a protocol stream: importing litellm, calls, failures and debug hints print nothing there."""
    scripted_llm.script([Reply.text("hi"), Reply.error(400), Reply.text("streamed")])
    request = LLMRequest(model="gpt-4o-mini", messages=[Message.user("x")])
    run(_backend(scripted_llm, max_retries=0), request)
    with pytest.raises(BackendError):
        run(_backend(scripted_llm, max_retries=0), request)
    run(_backend(scripted_llm), request, stream=True)
    unknown = LLMRequest(model="no-such-provider-model", messages=[Message.user("x")])
    with pytest.raises(BackendError, match="cannot tell which provider"):  # litellm prints its "Provider List" hint
        run(LiteLLMBackend(settings=BackendSettings(api_key="k")), unknown)
    assert capfd.readouterr().out == ""
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    litellm = sys.modules["litellm"]
    assert litellm.suppress_debug_info is True and litellm.set_verbose is False


def test_loggers_write_to_stderr_only(capfd):
    import logging

    loader.load_litellm()
    logger = logging.getLogger("LiteLLM")
    assert not logger.propagate
    assert [h for h in logger.handlers if type(h).__module__.startswith("litellm")] == [], "litellm's own handler is gone"
    assert any(isinstance(h, loader.StderrHandler) for h in logger.handlers)
    logger.warning("a warning from litellm")
    captured = capfd.readouterr()
    assert captured.out == "" and "a warning from litellm" in captured.err


def test_unknown_model_on_api_base_goes_as_openai_compatible(scripted_llm):
    scripted_llm.script([Reply.text("from the local server")])
    response = run(_backend(scripted_llm), LLMRequest(model="qwen2.5-coder", messages=[Message.user("x")]))
    assert response.message.text == "from the local server"
    assert scripted_llm.last_request.model == "qwen2.5-coder"


def test_custom_llm_provider_option(scripted_llm):
    scripted_llm.script([Reply.text("ok")])
    backend = _backend(scripted_llm, options=LiteLLMOptions(custom_llm_provider="openai", default_max_tokens=77))
    run(backend, LLMRequest(model="some/namespaced-model", messages=[Message.user("x")]))
    sent = scripted_llm.last_request
    assert sent.model == "some/namespaced-model"
    assert sent.body.get("max_tokens", sent.body.get("max_completion_tokens")) == 77


def test_capabilities_from_the_model_map():
    backend = LiteLLMBackend(settings=BackendSettings(api_key="k"))
    mini = backend.capabilities("gpt-4o-mini")
    assert (mini.native_tools, mini.json_schema, mini.vision) == (True, True, True)
    assert mini.context_window and mini.context_window >= 100_000
    assert mini.pricing_per_mtok is None, "the kernel prices tokens itself"
    unknown = backend.capabilities("my-local-model")
    assert (unknown.native_tools, unknown.json_schema, unknown.vision, unknown.context_window) == (True, True, False, None)


def test_a_known_openai_model_on_api_base_names_its_provider(scripted_llm):
    """An OpenAI model at api_base goes with custom_llm_provider="openai" (what litellm finds itself, named so
    that litellm does not match api_base against its known endpoints on every call); a model of another
    provider keeps its own."""
    backend = _backend(scripted_llm)
    assert backend._params(LLMRequest(model="gpt-4o-mini", messages=[Message.user("x")]))["custom_llm_provider"] \
        == "openai"
    anthropic = backend._params(LLMRequest(model="anthropic/claude-3-5-sonnet-latest", messages=[Message.user("x")]))
    assert "custom_llm_provider" not in anthropic
    scripted_llm.script([Reply.text("ok")])
    assert run(backend, LLMRequest(model="gpt-4o-mini", messages=[Message.user("x")])).message.text == "ok"
    assert scripted_llm.last_request.model == "gpt-4o-mini"


def test_the_shared_client_is_looked_up_once_per_model_until_aclose(scripted_llm, monkeypatch):
    import asyncio

    backend = _backend(scripted_llm)
    looked_up: list[str] = []
    real = backend._shared_client

    def counting(model, args):
        looked_up.append(model)
        return real(model, args)

    monkeypatch.setattr(backend, "_shared_client", counting)
    request = LLMRequest(model="gpt-4o-mini", messages=[Message.user("x")])
    first = backend._params(request)["client"]
    assert first is not None and backend._params(request)["client"] is first
    assert looked_up == ["gpt-4o-mini"]
    asyncio.run(backend.aclose())
    assert backend._params(request)["client"] is first, "the process's shared client, looked up again"
    assert looked_up == ["gpt-4o-mini", "gpt-4o-mini"]
