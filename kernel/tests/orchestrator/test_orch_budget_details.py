"""Budget details of the README ("The loop: Budgets", "Budgets are guarantees") no other test pins down:

(a) a sub-call's budget is ``min(requested, 0.5 x parent's remaining)``: the requested side binds when
    it is the smaller one, half of what is left when it is not;
(b) a call that failed after it was sent counts as its whole reservation (tokens and cost), on its
    own node and on every ancestor, and the budget left to later calls shrinks by that much;
(c) a provider that reports more input tokens than the call reserved makes a
    ``budget_reservation_exceeded`` warning in the log (and one that stays within it makes none).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from structlog.testing import capture_logs

from rlm.budget import BudgetNode
from rlm.errors import ProviderUnavailableError
from rlm.types import ToolCall

BUDGET = 100_000
USAGE = (1_000, 100)  # what the scripted provider reports for every call


def tc(name: str, **arguments: Any) -> ToolCall:
    return ToolCall(id="", name=name, arguments=arguments)


def is_sub(request) -> bool:
    return request.messages[1].text.startswith("SUB")


@pytest.fixture
def reservations(monkeypatch) -> list[Any]:
    """Every reservation made (a spy on :meth:`BudgetNode.reserve`; the real method still runs)."""
    made: list[Any] = []
    original = BudgetNode.reserve

    def reserve(self, tokens, cost):
        reservation = original(self, tokens, cost)
        made.append(reservation)
        return reservation

    monkeypatch.setattr(BudgetNode, "reserve", reserve)
    return made


def sub_delegating(*queries: dict[str, Any]):
    """A top call that makes the given rlm_sub_complete calls one per turn, then answers."""
    def script(request):
        if is_sub(request):
            return "sub answer"
        done = sum(1 for m in request.messages if m.role == "tool")
        if done < len(queries):
            return [tc("rlm_sub_complete", **queries[done])]
        return "done"
    return script


# --- (a) min(requested, 0.5 x remaining) --------------------------------------------------------------------


def test_a_requested_budget_smaller_than_half_the_remaining_binds(make_rlm):
    rlm, backend = make_rlm(sub_delegating({"query": "SUB small", "max_tokens": 3_000}), token_budget=BUDGET,
                            max_depth=2, backend_kwargs={"usage": USAGE})
    result = rlm.completion_sync("go")
    assert result.response == "done", result.error
    starts = [e for e in result.events if e["type"] == "call_start"]
    assert [e["token_limit"] for e in starts] == [3_000]  # not half of the ~99k left
    sub = [r for r in backend.requests if is_sub(r)]
    assert len(sub) == 1 and sub[0].max_tokens is not None and sub[0].max_tokens < 3_000
    end = next(e for e in result.events if e["type"] == "call_end")
    assert end["tokens_spent"] == sum(USAGE) <= 3_000


def test_a_requested_budget_larger_than_half_gets_half_of_the_remaining(make_rlm):
    rlm, _backend = make_rlm(sub_delegating({"query": "SUB big", "max_tokens": 90_000}), token_budget=BUDGET,
                             max_depth=2, backend_kwargs={"usage": USAGE})
    result = rlm.completion_sync("go")
    assert result.response == "done", result.error
    starts = [e for e in result.events if e["type"] == "call_start"]
    remaining = BUDGET - sum(USAGE)  # after the top call's first turn, nothing else held
    assert [e["token_limit"] for e in starts] == [remaining // 2]


def test_without_a_request_the_sub_call_gets_half_of_the_remaining(make_rlm):
    rlm, _backend = make_rlm(sub_delegating({"query": "SUB any"}, {"query": "SUB again", "max_tokens": 10**9}),
                             token_budget=BUDGET, max_depth=2, backend_kwargs={"usage": USAGE})
    result = rlm.completion_sync("go")
    assert result.response == "done", result.error
    limits = [e["token_limit"] for e in result.events if e["type"] == "call_start"]
    # the first: half of what the first turn left; the second: half of what the first sub-call and
    # the second turn left (actual usage, not the first sub-call's whole limit)
    first = (BUDGET - sum(USAGE)) // 2
    second = (BUDGET - 3 * sum(USAGE)) // 2
    assert limits == [first, second]


# --- (b) a failed call counts as its whole reservation ----------------------------------------------------------


def test_a_call_that_failed_after_it_was_sent_counts_as_its_whole_reservation(make_rlm, tmp_path, reservations):
    (tmp_path / "rlm.toml").write_text('[pricing."fake-model"]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n')
    failed_once: list[bool] = []

    def script(request):
        if is_sub(request):
            if not failed_once:
                failed_once.append(True)
                return ProviderUnavailableError("the provider went away mid-request (test)")
            return "sub answer"
        done = [json.loads(m.content) for m in request.messages if m.role == "tool"]
        if not done:
            return [tc("rlm_sub_complete", query="SUB first")]
        if len(done) == 1:
            return [tc("rlm_sub_complete", query="SUB second")]
        return "done"

    rlm, _backend = make_rlm(script, token_budget=BUDGET, cost_limit=5.0, max_depth=2,
                            backend_kwargs={"usage": USAGE})
    result = rlm.completion_sync("go")
    assert result.response == "done", result.error
    # the failed sub-call made exactly one reservation: that is what its node (and the run) were charged
    starts = [e for e in result.events if e["type"] == "call_start"]
    failed_call = next(r for r in reservations if r.node.token_limit == starts[0]["token_limit"]
                       and r.node.parent is not None and r.node.parent.token_limit == BUDGET)
    assert failed_call.tokens > sum(USAGE) and failed_call.cost > 0
    node = failed_call.node
    assert node.tokens_spent == failed_call.tokens and node.tokens_reserved == 0
    assert node.cost_spent == pytest.approx(failed_call.cost) and node.cost_reserved == pytest.approx(0.0)
    ends = [e for e in result.events if e["type"] == "call_end"]
    assert ends[0]["error_type"] == "ProviderUnavailableError" and ends[0]["tokens_spent"] == failed_call.tokens
    # the run's node: the top call's turns (reported usage) plus the whole reservation of the failed call
    run_node = node.parent
    assert run_node.tokens_reserved == 0
    assert run_node.tokens_spent == 4 * sum(USAGE) + failed_call.tokens  # 3 top turns + 1 sub answer
    # and the second sub-call got half of what that left
    assert starts[1]["token_limit"] == (BUDGET - 2 * sum(USAGE) - failed_call.tokens) // 2


# --- (c) a provider counting more than reserved is reported ------------------------------------------------------


def test_a_provider_reporting_more_input_than_reserved_makes_a_warning(make_rlm, reservations):
    rlm, backend = make_rlm(["ok"], token_budget=10**8, backend_kwargs={"usage": (10**6, 10)})
    with capture_logs() as logs:
        result = rlm.completion_sync("go")
    assert result.response == "ok", result.error
    assert len(reservations) == 1
    reserved_input = reservations[0].tokens - backend.requests[0].max_tokens
    warnings = [e for e in logs if e["event"] == "budget_reservation_exceeded"]
    assert len(warnings) == 1, logs
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["reported"] == 10**6 and warnings[0]["reserved"] == reserved_input < 10**6


def test_a_provider_within_the_reservation_makes_no_warning(make_rlm, reservations):
    rlm, backend = make_rlm(["ok"], token_budget=10**8, backend_kwargs={"usage": (50, 10)})
    with capture_logs() as logs:
        result = rlm.completion_sync("go")
    assert result.response == "ok", result.error
    assert reservations[0].tokens - backend.requests[0].max_tokens >= 50
    assert not [e for e in logs if e["event"] == "budget_reservation_exceeded"]
