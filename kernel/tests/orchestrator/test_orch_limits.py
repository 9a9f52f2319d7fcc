"""Every limit ends in one forced last turn, and the result says which limit it was."""

from __future__ import annotations

import asyncio

import pytest

from rlm import tool
from rlm.errors import AuthenticationError, ConfigError
from rlm.types import ToolCall


def tc(name, **arguments):
    return ToolCall(id="", name=name, arguments=arguments)


def loop_forever(request):
    if request.tool_choice == "none":
        return "best answer so far"
    return [tc("execute_code", code="print(1)")]


def test_max_turns_forces_a_last_answer(make_rlm):
    rlm, backend = make_rlm(loop_forever, max_turns=3)
    result = rlm.completion_sync("go")
    assert result.response == "best answer so far" and result.limit_hit == "max_turns" and result.success
    assert result.total_calls == 4
    assert "Turn limit reached" in backend.requests[-1].messages[-1].text
    assert [e["limit"] for e in result.events if e["type"] == "limit_hit"] == ["max_turns"]


def test_token_budget_forces_a_last_answer(make_rlm):
    # the first call reserves a token per byte of its prompt (no usage seen yet): the budget leaves room
    rlm, backend = make_rlm(loop_forever, token_budget=9_000, backend_kwargs={"usage": (900, 100)})
    result = rlm.completion_sync("go")
    assert result.limit_hit == "token_budget" and result.response == "best answer so far"
    assert result.total_tokens <= 9_000  # the forced last turn fits in what ordinary turns left


def test_cost_limit_needs_a_known_price(make_rlm):
    rlm, backend = make_rlm(["x"], cost_limit=1.0)
    with pytest.raises(ConfigError, match="price of model 'fake-model' is unknown"):
        rlm.completion_sync("go")
    assert backend.requests == []  # refused before anything was spent


def test_backend_declared_price_satisfies_a_cost_limit(make_rlm):
    from rlm.backend import BackendCapabilities

    rlm, backend = make_rlm(["free answer"], cost_limit=1.0)
    backend.capabilities = lambda model: BackendCapabilities(pricing_per_mtok=(0.0, 0.0))
    result = rlm.completion_sync("go")
    assert result.response == "free answer" and result.total_cost_usd == 0.0


def test_cost_limit_forces_a_last_answer(make_rlm, tmp_path):
    (tmp_path / "rlm.toml").write_text('[pricing."fake-model"]\ninput_per_mtok = 1000.0\noutput_per_mtok = 1000.0\n')
    rlm, _ = make_rlm(loop_forever, cost_limit=5.0, token_budget=None, backend_kwargs={"usage": (100, 50)})
    result = rlm.completion_sync("go")
    assert result.limit_hit == "cost_limit"
    assert result.total_cost_usd is not None and result.total_cost_usd <= 5.0
    assert result.response == "best answer so far"


def test_timeout_forces_a_last_answer(make_rlm):
    @tool
    async def slow() -> str:
        """Takes long."""
        await asyncio.sleep(0.4)
        return "slow result"

    def script(request):
        if request.tool_choice == "none":
            return "partial"
        return [tc("slow")]

    rlm, _ = make_rlm(script, tools=[slow], timeout=1.0)
    result = rlm.completion_sync("go")
    assert result.limit_hit == "timeout" and result.response == "partial"
    assert result.duration_ms < 2500


def test_permanent_backend_error_ends_the_run_with_that_error(make_rlm):
    rlm, backend = make_rlm([AuthenticationError("Invalid API key", fix="check OPENAI_API_KEY")])
    result = rlm.completion_sync("go")
    assert not result.success and result.error_type == "AuthenticationError"
    assert "Invalid API key" in result.error and len(backend.requests) == 1


def test_hard_caps_clamp_with_a_warning(make_rlm):
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        rlm, _ = make_rlm(["x"], max_depth=9, timeout=5000)
    assert rlm.config.max_depth == 5 and rlm.config.timeout == 600
    assert {e["setting"] for e in logs if e["event"] == "limit_clamped"} == {"max_depth", "timeout"}


def test_a_direct_call_cut_by_the_timeout_says_it_did_not_finish_in_time(make_rlm):
    # not "did not fit": the one call was sent and the run's clock ran out while the model read it
    rlm, _ = make_rlm(["late"], backend_kwargs={"delay": 3.0}, timeout=1.0, direct_below_tokens=2**40)
    result = rlm.completion_sync("a long input")
    assert not result.success and result.limit_hit == "timeout"
    assert "did not finish in time" in result.error and "did not fit" not in result.error
