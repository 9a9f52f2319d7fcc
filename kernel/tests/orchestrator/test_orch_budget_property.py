"""Property: whatever the model does and however its provider counts tokens, a run never spends
more than its token budget or its cost limit -- the forced last turn included.

The fake provider counts usage with a model of its own, drawn by hypothesis and independent of the
kernel's estimates: a tokens-per-character or tokens-per-UTF-8-byte ratio from 0.01 to 1 (the
kernel's own chars/4 estimate is a ratio of 0.25 per character, so most ratios drawn count more
than the kernel estimates, up to one token per byte: the most a byte-level tokenizer can count),
plus 0 to 16 tokens a message, applied to everything sent (messages, tool calls and tool schemas).
Like real providers it never produces more output than the request's ``max_tokens``, and without
one it may produce far more than the kernel reserved.
"""

from __future__ import annotations

import json
import math
import random

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rlm.backend import LLMRequest, LLMResponse
from rlm.orchestrator import DEFAULT_MAX_OUTPUT
from rlm.types import Message, ToolCall, Usage

ACTIONS = st.sampled_from(["text", "code", "sub", "batch", "many_code", "query"])
#: Text the model may write: ASCII, code, CJK (about a token per character), emoji (several bytes each).
WORDS = st.sampled_from(["answer", "print(1)", "数据分析结果", "🙂🙂", "x" * 40, "ok"])


def _sent_text(request: LLMRequest) -> str:
    parts = []
    for m in request.messages:
        parts.append(m.text)
        parts.extend(c.name + json.dumps(dict(c.arguments)) for c in m.tool_calls)
    parts.extend(t.name + t.description + json.dumps(dict(t.parameters)) for t in request.tools)
    return "".join(parts)


@attrs.frozen
class UsageModel:
    """A provider's input count: ``ratio`` tokens a character (``unit="char"``) or a UTF-8 byte
    (``unit="byte"``) of everything sent, rounded up, plus ``per_message`` tokens a message."""

    unit: str
    ratio: float
    per_message: int

    def __call__(self, request: LLMRequest) -> int:
        text = _sent_text(request)
        units = len(text) if self.unit == "char" else len(text.encode("utf-8"))
        return math.ceil(units * self.ratio) + self.per_message * len(request.messages)


#: Independent usage models, the extremes (one token a byte, a tiny ratio) drawn often.
USAGE_MODELS = st.one_of(
    st.builds(UsageModel, unit=st.sampled_from(["char", "byte"]),
              ratio=st.floats(min_value=0.01, max_value=1.0, allow_nan=False),
              per_message=st.integers(min_value=0, max_value=16)),
    st.sampled_from([UsageModel("byte", 1.0, 16), UsageModel("char", 1.0, 4), UsageModel("char", 0.01, 0)]),
)


def _script(actions: list[str], words: list[str], count_input, rng: random.Random):
    queue = list(actions)

    def script(request: LLMRequest) -> LLMResponse:
        action = queue.pop(0) if queue else "text"
        if request.tool_choice == "none" or not request.tools:
            action = "text"
        calls = {
            "code": [ToolCall(id=f"c{rng.random()}", name="execute_code",
                              arguments={"code": f"print({rng.choice(words)!r})"})],
            "many_code": [ToolCall(id=f"m{i}{rng.random()}", name="execute_code", arguments={"code": "1"})
                          for i in range(3)],
            "sub": [ToolCall(id=f"s{rng.random()}", name="rlm_sub_complete", arguments={"query": rng.choice(words)})],
            "batch": [ToolCall(id=f"b{rng.random()}", name="rlm_batch_complete",
                               arguments={"queries": [rng.choice(words) for _ in range(3)]})],
            "query": [ToolCall(id=f"q{rng.random()}", name="execute_code",
                               arguments={"code": "print(llm_query('summarise ' * 20))"})],
        }.get(action)
        cap = request.max_tokens or 16 * DEFAULT_MAX_OUTPUT  # no max_tokens: a provider's own (large) default
        usage = Usage(input_tokens=count_input(request), output_tokens=rng.randint(0, cap), cost_usd=None)
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 30)))
        message = Message.assistant(text, tool_calls=tuple(calls)) if calls else Message.assistant(text)
        return LLMResponse(message=message, usage=usage, model=request.model)

    return script


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    actions=st.lists(ACTIONS, min_size=1, max_size=30),
    words=st.lists(WORDS, min_size=1, max_size=4),
    usage_model=USAGE_MODELS,
    budget=st.integers(min_value=300, max_value=60_000),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_the_token_budget_holds_whatever_the_provider_counts(make_rlm, actions, words, usage_model, budget, seed):
    rng = random.Random(seed)
    rlm, _ = make_rlm(_script(actions, words, usage_model, rng), token_budget=budget,
                      max_turns=6, max_depth=3)
    result = rlm.completion_sync("go " + " ".join(words))
    assert result.total_tokens <= budget, (usage_model, result.total_tokens, budget)
    if result.error is None:
        assert result.response.strip()  # an answer, or an error that says why there is none


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    actions=st.lists(ACTIONS, min_size=1, max_size=20),
    words=st.lists(WORDS, min_size=1, max_size=4),
    usage_model=USAGE_MODELS,
    cost_limit=st.floats(min_value=0.001, max_value=2.0),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_the_cost_limit_holds_whatever_the_provider_counts(make_rlm, tmp_path, actions, words, usage_model,
                                                           cost_limit, seed):
    (tmp_path / "rlm.toml").write_text('[pricing."fake-model"]\ninput_per_mtok = 30.0\noutput_per_mtok = 60.0\n')
    rng = random.Random(seed)
    rlm, _ = make_rlm(_script(actions, words, usage_model, rng), cost_limit=cost_limit,
                      token_budget=None, max_turns=6, max_depth=3)
    result = rlm.completion_sync("go " + " ".join(words))
    assert result.total_cost_usd is not None and result.total_cost_usd <= cost_limit + 1e-9, (
        usage_model, result.total_cost_usd, cost_limit)
