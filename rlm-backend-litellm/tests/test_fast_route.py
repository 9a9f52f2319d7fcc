"""The fast OpenAI route (:mod:`rlm_backend_litellm.fast_route`): taken when nothing can tell, litellm otherwise.

Each behaviour is checked both ways against the scripted OpenAI-compatible server through the real litellm
and openai SDKs: the same call once with ``fast_openai_route`` off (``litellm.acompletion``) and once on.
What the server received (the JSON body), what the backend returned (text, tool calls, usage, finish reason,
model) and the rlm error raised (class and message) must be equal.  Known, harmless difference on the wire:
litellm's request carries the openai SDK's client-side ``X-Stainless-Raw-Response: true`` header, the fast
route's does not (it asks the SDK for the HTTP response directly); the body is the same bytes' JSON.
Whether the route was taken is told by counting ``litellm.acompletion`` calls.  No timing is asserted.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from rlm.backend import BackendSettings, LLMRequest, ToolSchema
from rlm.types import ImagePart, Message, TextPart, ToolCall
from rlm_backend_litellm.backend import LiteLLMBackend
from rlm_backend_litellm.fast_route import litellm_parts
from rlm_backend_litellm.loader import load_litellm
from rlm_backend_litellm.options import LiteLLMOptions
from rlm_testing.server import Reply

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

TOOLS = (
    ToolSchema(name="lookup", description="Look a word up.",
               parameters={"type": "object", "properties": {"word": {"type": "string", "pattern": "^[a-z]+$"}},
                           "required": ["word"]}),
    # a pattern Python's re cannot compile: litellm drops it from what it sends; so must the fast route
    ToolSchema(name="letters", description="Letters only.",
               parameters={"type": "object", "properties": {"s": {"type": "string", "pattern": "\\p{L}+"}}}),
)
CONVERSATION = [
    Message.system("You are terse."),
    Message.user("look up cat"),
    Message.assistant("", tool_calls=(ToolCall(id="call_1", name="lookup", arguments={"word": "cat"}),)),
    Message.tool("call_1", "a small feline"),
    Message.user("and now?"),
]
REQUESTS = {
    "text": LLMRequest(model="gpt-4o-mini", messages=[Message.system("s"), Message.user("hello")]),
    "tools-and-sampling": LLMRequest(model="gpt-4o-mini", messages=CONVERSATION, tools=TOOLS, tool_choice="auto",
                                     temperature=0.2, top_p=0.9, seed=7, max_tokens=64),
    "named-tool-choice": LLMRequest(model="gpt-4o-mini", messages=CONVERSATION, tools=TOOLS, tool_choice="lookup"),
    "response-format": LLMRequest(model="gpt-4o-mini", messages=[Message.user("json please")],
                                  response_format={"name": "answer", "schema": {
                                      "type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
                                      "additionalProperties": False}}),
    "image": LLMRequest(model="gpt-4o-mini", messages=[Message(role="user", content=(
        TextPart(text="what is this?"), ImagePart(url="https://example.com/cat.png")))]),
    "unknown-model": LLMRequest(model="my-local-model", messages=[Message.user("hi")], max_tokens=10),
    "names-and-prose-with-calls": LLMRequest(model="gpt-4o-mini", tools=TOOLS, messages=[
        Message(role="user", content="hi, I am Alice", name="alice"),
        Message.assistant("Let me look.", tool_calls=(ToolCall(id="c9", name="lookup", arguments={"word": "x"}),)),
        Message.tool("c9", "nothing"),
        Message.user("thanks \u2014 \U0001F600 ok")]),
}
REPLIES = {
    "text": Reply.text("hello there"),
    "tools-and-sampling": Reply.tool_calls(("lookup", {"word": "dog"}), ("letters", {"s": "abc"}), text="calling"),
    "named-tool-choice": Reply.tool_calls(("lookup", {"word": "cow"})),
    "response-format": Reply.json({"a": "b"}),
    "image": Reply.text("a cat", finish="length"),
    "unknown-model": Reply.text("hi", input_tokens=3, output_tokens=1),
    "names-and-prose-with-calls": Reply.text("you are welcome \u00e9"),
}


def _backend(server, *, fast: bool = True, **options: Any) -> LiteLLMBackend:
    return LiteLLMBackend(settings=BackendSettings(
        api_key="k", base_url=server.openai_base_url, timeout=60.0, max_retries=0,
        options=LiteLLMOptions(retry_base_delay=0.01, retry_max_delay=0.02, fast_openai_route=fast, **options)))


@pytest.fixture
def acompletion_calls(monkeypatch) -> list[str]:
    """The models ``litellm.acompletion`` was called for (the fast route does not call it)."""
    litellm = load_litellm()
    original = litellm.acompletion
    calls: list[str] = []

    async def counting(**kwargs: Any) -> Any:
        calls.append(kwargs.get("model"))
        return await original(**kwargs)

    monkeypatch.setattr(litellm, "acompletion", counting)
    return calls


@pytest.fixture
def clean_callbacks(monkeypatch) -> None:
    """litellm's callback lists, restored after the test (litellm moves callbacks between them on a call)."""
    litellm = load_litellm()
    parts = litellm_parts(litellm)
    assert parts is not None, "this litellm lacks what the fast route uses"
    for name in parts.callback_names:
        value = getattr(litellm, name)
        monkeypatch.setattr(litellm, name, type(value)(value))


def _outcome(backend: LiteLLMBackend, request: LLMRequest, *, stream: bool = False) -> Any:
    async def go() -> Any:
        try:
            if stream:
                return ("ok", [event async for event in backend.stream(request)][-1].response)
            return ("ok", await backend.complete(request))
        except Exception as exc:  # noqa: BLE001 - compared below
            return ("error", type(exc).__name__, str(exc))
        finally:
            await backend.aclose()

    return asyncio.run(go())


def _both_ways(server, request: LLMRequest, reply: Reply, **options: Any) -> dict[bool, tuple[Any, list[Any]]]:
    seen = {}
    for fast in (False, True):
        server.reset()
        server.script([reply])
        outcome = _outcome(_backend(server, fast=fast, **options), request)
        seen[fast] = (outcome, [r.body for r in server.requests])
    return seen


@pytest.mark.parametrize("shape", sorted(REQUESTS))
def test_both_routes_send_the_same_body_and_read_the_same_answer(scripted_llm, acompletion_calls, clean_callbacks,
                                                                 shape):
    seen = _both_ways(scripted_llm, REQUESTS[shape], REPLIES[shape])
    assert acompletion_calls == [REQUESTS[shape].model], "the fast route called litellm.acompletion"
    (slow, slow_bodies), (fast, fast_bodies) = seen[False], seen[True]
    assert slow[0] == "ok", slow
    assert fast_bodies == slow_bodies and len(fast_bodies) == 1
    assert fast == slow  # text, tool calls, usage tokens, finish reason, model
    if shape == "tools-and-sampling":
        sent = fast_bodies[0]
        assert [c.name for c in fast[1].message.tool_calls] == ["lookup", "letters"]
        assert fast[1].usage.input_tokens > 0 and fast[1].usage.output_tokens > 0
        assert (sent["temperature"], sent["top_p"], sent["seed"], sent["max_tokens"]) == (0.2, 0.9, 7, 64)
        assert "pattern" not in sent["tools"][1]["function"]["parameters"]["properties"]["s"]  # litellm's rewrite
        assert sent["model"] == "gpt-4o-mini"


ERRORS = {
    "401": Reply.invalid_api_key(),
    "404": Reply.model_not_found(),
    "429": Reply.rate_limited(0.01),
    "500": Reply.server_error(),
    "503": Reply.overloaded(status=503),
    "context": Reply.context_too_long(),
    "html": Reply.html(),
    "html-502": Reply.html(status=502),
    "not-json": Reply.malformed(),
    "dropped": Reply.drop(),
    "empty-answer": Reply.text(""),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_failures_are_the_same_rlm_errors_both_ways(scripted_llm, acompletion_calls, clean_callbacks, case):
    seen = _both_ways(scripted_llm, REQUESTS["text"], ERRORS[case])
    assert acompletion_calls == ["gpt-4o-mini"]
    slow, fast = seen[False][0], seen[True][0]
    assert slow[0] == "error", slow
    assert fast == slow  # class and message


def test_a_read_timeout_is_the_same_error_both_ways(scripted_llm, acompletion_calls, clean_callbacks):
    request = REQUESTS["text"]
    outcomes = {}
    for fast in (False, True):
        scripted_llm.script([Reply.hang()])
        outcomes[fast] = _outcome(_backend(scripted_llm, fast=fast, read_timeout=0.3), request)
    assert outcomes[False][0] == "error"
    assert outcomes[True] == outcomes[False]
    assert acompletion_calls == ["gpt-4o-mini"]


def test_retries_work_on_the_fast_route(scripted_llm, acompletion_calls, clean_callbacks):
    scripted_llm.script([Reply.server_error(), Reply.rate_limited(0.01), Reply.text("third time")])
    backend = LiteLLMBackend(settings=BackendSettings(
        api_key="k", base_url=scripted_llm.openai_base_url, max_retries=2,
        options=LiteLLMOptions(retry_base_delay=0.01, retry_max_delay=0.02)))
    outcome = _outcome(backend, REQUESTS["text"])
    assert outcome[0] == "ok" and outcome[1].message.text == "third time"
    assert len(scripted_llm.requests) == 3 and acompletion_calls == []


def test_a_litellm_callback_forces_the_litellm_route_and_is_called(scripted_llm, acompletion_calls, clean_callbacks):
    """A user's logger (Langfuse, OTel... are CustomLoggers) keeps getting every call."""
    from litellm.integrations.custom_logger import CustomLogger

    called: list[Any] = []

    class Recorder(CustomLogger):
        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            called.append(response_obj)

    load_litellm().callbacks.append(Recorder())
    scripted_llm.script([Reply.text("logged")])
    backend = _backend(scripted_llm)

    async def go() -> Any:
        try:
            answer = await backend.complete(REQUESTS["text"])
            for _ in range(250):  # litellm runs success callbacks after the answer, on this loop
                if called:
                    break
                await asyncio.sleep(0.02)
            return answer
        finally:
            await backend.aclose()

    assert asyncio.run(go()).message.text == "logged"
    assert acompletion_calls == ["gpt-4o-mini"]
    assert called, "the user's litellm callback was not called"


@pytest.mark.parametrize("where", ["success_callback", "failure_callback", "input_callback"])
def test_a_function_callback_forces_the_litellm_route(scripted_llm, acompletion_calls, clean_callbacks, where):
    getattr(load_litellm(), where).append(lambda *args, **kwargs: None)
    scripted_llm.script([Reply.text("ok")])
    assert _outcome(_backend(scripted_llm), REQUESTS["text"])[0] == "ok"
    assert acompletion_calls == ["gpt-4o-mini"]


def test_litellm_global_headers_force_the_litellm_route(scripted_llm, acompletion_calls, clean_callbacks,
                                                        monkeypatch):
    monkeypatch.setattr(load_litellm(), "headers", {"x-team": "blue"})
    scripted_llm.script([Reply.text("ok")])
    assert _outcome(_backend(scripted_llm), REQUESTS["text"])[0] == "ok"
    assert acompletion_calls == ["gpt-4o-mini"]
    assert scripted_llm.last_request.headers.get("x-team") == "blue"  # litellm honoured its setting


def test_litellm_debug_logging_forces_the_litellm_route(scripted_llm, acompletion_calls, clean_callbacks,
                                                        monkeypatch):
    logger = logging.getLogger("LiteLLM")
    before = logger.level
    logger.setLevel(logging.DEBUG)  # what LITELLM_LOG=DEBUG does
    try:
        scripted_llm.script([Reply.text("ok")])
        assert _outcome(_backend(scripted_llm), REQUESTS["text"])[0] == "ok"
    finally:
        logger.setLevel(before)
    assert acompletion_calls == ["gpt-4o-mini"]


@pytest.mark.parametrize("options", [{"fast": False}, {"drop_params": True}, {"shared_client": False}],
                         ids=["switched-off", "drop_params", "own-clients"])
def test_options_that_turn_it_off(scripted_llm, acompletion_calls, clean_callbacks, options):
    scripted_llm.script([Reply.text("ok")])
    assert _outcome(_backend(scripted_llm, **options), REQUESTS["text"])[0] == "ok"
    assert acompletion_calls == ["gpt-4o-mini"]


def test_reasoning_models_and_streams_stay_on_litellm(scripted_llm, acompletion_calls, clean_callbacks):
    """litellm rewrites the parameters of o-series / GPT-5 models (its own config): not the fast route's case."""
    scripted_llm.script([Reply.text("ok"), Reply.text("streamed")])
    assert _outcome(_backend(scripted_llm), LLMRequest(model="o3-mini", messages=[Message.user("x")]))[0] == "ok"
    outcome = _outcome(_backend(scripted_llm), REQUESTS["text"], stream=True)
    assert outcome[0] == "ok" and outcome[1].message.text == "streamed"
    assert acompletion_calls == ["o3-mini", "gpt-4o-mini"]
    scripted_llm.script([Reply.text("fast again")])  # litellm's calls left nothing behind that turns it off
    assert _outcome(_backend(scripted_llm), REQUESTS["text"])[1].message.text == "fast again"
    assert acompletion_calls == ["o3-mini", "gpt-4o-mini"]


def test_a_provider_other_than_openai_stays_on_litellm(scripted_llm, acompletion_calls, clean_callbacks):
    backend = _backend(scripted_llm)
    params = backend._params(LLMRequest(model="anthropic/claude-sonnet-4-5", messages=[Message.user("x")]))
    assert "client" not in params and backend._fast_route(load_litellm(), params) is None


def test_without_api_base_an_openai_model_takes_the_fast_route_where_litellm_would_send_it(
        scripted_llm, acompletion_calls, clean_callbacks, monkeypatch):
    """No api_base: the model goes where litellm itself would send it (OPENAI_BASE_URL here), through the shared
    client and the fast route, with the body litellm sends there."""
    monkeypatch.setenv("OPENAI_BASE_URL", scripted_llm.openai_base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    request = REQUESTS["tools-and-sampling"]
    seen = {}
    for fast in (False, True):
        scripted_llm.reset()
        scripted_llm.script([REPLIES["tools-and-sampling"]])
        backend = LiteLLMBackend(settings=BackendSettings(timeout=60.0, max_retries=0, options=LiteLLMOptions(
            retry_base_delay=0.01, retry_max_delay=0.02, fast_openai_route=fast)))
        seen[fast] = (_outcome(backend, request), [r.body for r in scripted_llm.requests],
                      [r.headers.get("authorization") for r in scripted_llm.requests])
    assert acompletion_calls == [request.model]  # only the run with the route off
    assert seen[True][0][0] == "ok" and seen[True] == seen[False]
    assert seen[True][2] == ["Bearer sk-env"]


def test_the_default_openai_base_is_litellms_own_and_litellm_wide_settings_keep_its_client(monkeypatch):
    from rlm_backend_litellm.backend import openai_base_url

    litellm = load_litellm()
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    assert openai_base_url(litellm, {}) == "https://api.openai.com/v1"
    assert openai_base_url(litellm, {"OPENAI_API_BASE": "http://b/v1"}) == "http://b/v1"
    assert openai_base_url(litellm, {"OPENAI_BASE_URL": "http://a/v1", "OPENAI_API_BASE": "http://b/v1"}) == "http://a/v1"
    monkeypatch.setattr(litellm, "api_key", "sk-litellm-wide")
    assert openai_base_url(litellm, {}) is None  # litellm applies its own key: its own client
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    backend = LiteLLMBackend(settings=BackendSettings(timeout=60.0))
    assert backend._shared_client("gpt-4o-mini", {}) is None
    monkeypatch.setattr(litellm, "api_key", None)
    client = backend._shared_client("gpt-4o-mini", {})
    assert client is not None and str(client.base_url) == "https://api.openai.com/v1/"  # no request is made
