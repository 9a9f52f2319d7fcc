"""Sub-calls on a second model (``sub_model``), and sampling options (temperature, top_p, seed,
max_output_tokens) from the config, the constructor and one completion."""

from __future__ import annotations

import json

import pytest
from .conftest import FakeBackend, FakePlugin, call

from rlm import RLM
from rlm.backend import BackendCapabilities, LLMResponse
from rlm.config import ModelPricing
from rlm.errors import ConfigError
from rlm.orchestrator import DEFAULT_MAX_OUTPUT
from rlm.plugins import create_plugin_manager
from rlm.types import Message, Usage

BIG, CHEAP = "big-model", "cheap-model"
PRICES = {BIG: ModelPricing(input_per_mtok=10.0, output_per_mtok=30.0),
          CHEAP: ModelPricing(input_per_mtok=0.5, output_per_mtok=1.5)}


def is_sub(request):
    return any(m.role == "user" and m.text.startswith("a part of the task") for m in request.messages)


def delegating(request):
    """The top call delegates once (tools protocol), then answers with what the sub-call said."""
    if is_sub(request):
        return "sub answer"
    results = [m for m in request.messages if m.role == "tool"]
    if results:
        return "top: " + json.loads(results[-1].text)
    return [call("rlm_sub_complete", query="a part of the task")]


def fixed_usage(script):
    def answer(request):
        item = script(request)
        message = Message.assistant(item) if isinstance(item, str) else Message.assistant(
            "", tool_calls=tuple(c.__class__(id=f"tc{i}", name=c.name, arguments=c.arguments)
                                 for i, c in enumerate(item)))
        return LLMResponse(message=message, usage=Usage(input_tokens=1000, output_tokens=100, cost_usd=None),
                           finish_reason="stop", model=request.model)
    return answer


def events_of(result, kind):
    return [e for e in result.events if e["type"] == kind]


def test_sub_calls_go_to_the_sub_model_and_are_priced_with_its_price(make_rlm):
    rlm, backend = make_rlm(fixed_usage(delegating), model=BIG, sub_model=CHEAP, max_depth=2, pricing=PRICES,
                            cost_limit=5.0)
    result = rlm.completion_sync("go")
    assert result.success, result.error
    assert result.response == "top: sub answer"
    assert [r.model for r in backend.requests] == [BIG, CHEAP, BIG]
    # priced per model: 2 top calls at the big price, 1 sub-call at the cheap one (an independent sum)
    big = 2 * (1000 * 10.0 + 100 * 30.0) / 1e6
    cheap = (1000 * 0.5 + 100 * 1.5) / 1e6
    assert result.total_cost_usd == pytest.approx(big + cheap)
    calls = events_of(result, "llm_call")
    assert [(e["model"], e["depth"]) for e in calls] == [(BIG, 0), (CHEAP, 1), (BIG, 0)]
    assert [e["cost"] for e in calls] == pytest.approx([big / 2, cheap, big / 2])
    assert events_of(result, "run_start")[0]["sub_model"] == CHEAP


def test_llm_query_from_repl_code_goes_to_the_sub_model_too(make_rlm):
    def script(request):
        if request.model == CHEAP:
            return "sub answer"
        if any("REPL output" in m.text for m in request.messages):
            return "FINAL(done)"
        return "```repl\nprint(llm_query('part'), llm_query_batched(['a', 'b']))\n```"

    rlm, backend = make_rlm(script, model=BIG, sub_model=CHEAP, protocol="repl", max_depth=2)
    result = rlm.completion_sync("go")
    assert result.success, result.error
    assert sorted(r.model for r in backend.requests) == sorted([BIG, CHEAP, CHEAP, CHEAP, BIG])


def test_without_sub_model_sub_calls_use_the_model(make_rlm):
    rlm, backend = make_rlm(delegating, model=BIG, max_depth=2)
    result = rlm.completion_sync("go")
    assert result.response == "top: sub answer"
    assert [r.model for r in backend.requests] == [BIG, BIG, BIG]
    assert "sub_model" not in events_of(result, "run_start")[0]


def test_a_cost_limit_needs_the_sub_models_price_too(make_rlm):
    rlm, backend = make_rlm(delegating, model=BIG, sub_model=CHEAP, pricing={BIG: PRICES[BIG]}, cost_limit=1.0)
    with pytest.raises(ConfigError, match="sub-model 'cheap-model'"):
        rlm.completion_sync("go")
    assert backend.requests == []  # refused at the start, before any model call


def test_a_sub_backend_serves_the_sub_calls(tmp_path):
    top, sub = FakeBackend(delegating), FakeBackend(lambda r: "from the other backend")

    class Two(FakePlugin):
        from rlm import hookimpl

        @hookimpl
        def rlm_register_backends(self, register):
            register("fake", lambda settings: top, description="top")
            register("other", lambda settings: sub, description="sub")

    pm = create_plugin_manager(entry_points=False)
    pm.register(Two(top), name="two")
    rlm = RLM(model=BIG, backend="fake", sub_backend="other", sub_model=CHEAP, environment="fake",
              plugin_manager=pm, log_dir=str(tmp_path / "logs"), max_depth=2)
    result = rlm.completion_sync("go")
    assert result.response == "top: from the other backend"
    assert [r.model for r in top.requests] == [BIG, BIG] and [r.model for r in sub.requests] == [CHEAP]


# --- sampling ---------------------------------------------------------------------------------------------------


def test_sampling_from_the_config_reaches_every_request(make_rlm):
    rlm, backend = make_rlm(delegating, model=BIG, sub_model=CHEAP, max_depth=2, temperature=0.3, top_p=0.9,
                            seed=7, max_output_tokens=500)
    assert rlm.completion_sync("go").success
    assert {(r.temperature, r.top_p, r.seed, r.max_tokens) for r in backend.requests} == {(0.3, 0.9, 7, 500)}


def test_one_completions_sampling_overrides_the_config_for_that_call_only(make_rlm):
    rlm, backend = make_rlm(["one", "two"], temperature=0.3)
    rlm.completion_sync("go", temperature=1.1, seed=3, max_output_tokens=64)
    rlm.completion_sync("again")
    first, second = backend.requests
    assert (first.temperature, first.seed, first.max_tokens) == (1.1, 3, 64)
    assert (second.temperature, second.seed, second.max_tokens) == (0.3, None, DEFAULT_MAX_OUTPUT)


def test_no_sampling_set_sends_none(make_rlm):
    rlm, backend = make_rlm(["answer"])
    rlm.completion_sync("go")
    request = backend.requests[0]
    assert (request.temperature, request.top_p, request.seed) == (None, None, None)


@pytest.mark.parametrize("bad", [{"temperature": 2.5}, {"temperature": -0.1}, {"top_p": 0.0}, {"top_p": 1.5},
                                 {"max_output_tokens": 0}])
def test_out_of_range_sampling_is_a_config_error_before_any_call(make_rlm, bad):
    with pytest.raises(ConfigError):
        make_rlm(["answer"], **bad)
    rlm, backend = make_rlm(["answer"])
    with pytest.raises(ConfigError):
        rlm.completion_sync("go", **bad)
    assert backend.requests == []


class NoSeedBackend(FakeBackend):
    def capabilities(self, model):
        return BackendCapabilities(sampling=frozenset({"temperature", "top_p"}))


def _with_backend(tmp_path, backend, **settings):
    pm = create_plugin_manager(entry_points=False)
    pm.register(FakePlugin(backend), name="fake-plugin")
    return RLM(model=BIG, backend="fake", environment="fake", plugin_manager=pm, log_dir=str(tmp_path / "logs"),
               **settings)


def test_a_seed_the_backend_does_not_send_is_refused_before_any_call(tmp_path):
    backend = NoSeedBackend(["answer"])
    rlm = _with_backend(tmp_path, backend, seed=5)
    with pytest.raises(ConfigError, match="does not send seed") as info:
        rlm.completion_sync("go")
    assert "remove seed" in info.value.fix and backend.requests == []


def test_the_kernels_own_seed_is_left_out_for_a_backend_without_seeds(tmp_path):
    """Repetition control picks a new seed; a backend that cannot send one gets the temperature only."""
    code = "```repl\nprint(undefined_name)\n```"
    backend = NoSeedBackend([code, code, "FINAL(gave up on it)"])
    rlm = _with_backend(tmp_path, backend, protocol="repl", temperature=0.2)
    result = rlm.completion_sync("go")
    assert result.success, result.error
    last = backend.requests[-1]
    assert last.seed is None and last.temperature == pytest.approx(0.7)  # raised above the user's 0.2
