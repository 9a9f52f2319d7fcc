"""Property: whatever the model does, a run never exceeds its token budget by more than
the reservation of its one forced last turn (hypothesis drives random scripts)."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlm.backend import LLMResponse
from rlm.orchestrator import DEFAULT_MAX_OUTPUT, estimate_tokens
from rlm.types import Message, ToolCall, Usage

ACTIONS = st.sampled_from(["text", "code", "sub", "batch", "many_code"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    actions=st.lists(ACTIONS, min_size=1, max_size=30),
    budget=st.integers(min_value=300, max_value=20_000),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_token_budget_is_never_exceeded_beyond_one_reservation(make_rlm, actions, budget, seed):
    rng = random.Random(seed)
    queue = list(actions)
    forced_reservations = [0]

    def script(request):
        reserve = estimate_tokens(request.messages, request.tools) + (request.max_tokens or DEFAULT_MAX_OUTPUT)
        if request.tool_choice == "none":
            forced_reservations.append(reserve)
        action = queue.pop(0) if queue else "text"
        if request.tool_choice == "none" or not request.tools:
            action = "text"
        calls = {
            "code": [ToolCall(id=f"c{rng.random()}", name="execute_code", arguments={"code": "print(1)"})],
            "many_code": [ToolCall(id=f"m{i}{rng.random()}", name="execute_code", arguments={"code": "1"})
                          for i in range(3)],
            "sub": [ToolCall(id=f"s{rng.random()}", name="rlm_sub_complete", arguments={"query": "q"})],
            "batch": [ToolCall(id=f"b{rng.random()}", name="rlm_batch_complete",
                               arguments={"queries": ["a", "b", "c"]})],
        }.get(action)
        # an honest provider: input as estimated, output within max_tokens
        usage = Usage(input_tokens=estimate_tokens(request.messages, request.tools),
                      output_tokens=rng.randint(0, request.max_tokens or DEFAULT_MAX_OUTPUT), cost_usd=None)
        message = Message.assistant("t", tool_calls=tuple(calls)) if calls else Message.assistant("answer")
        return LLMResponse(message=message, usage=usage, model=request.model)

    rlm, _ = make_rlm(script, token_budget=budget, max_turns=6, max_depth=3)
    result = rlm.completion_sync("go")
    assert result.total_tokens <= budget + max(forced_reservations), (result.total_tokens, budget)
