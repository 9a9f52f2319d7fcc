"""Anthropic blocks are computed once per message (``convert.wire_blocks``) and requests built from them
are what the uncached conversion gives, however often the cached blocks were merged into turns."""

from __future__ import annotations

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from rlm.types import Message, ToolCall
from rlm_backend_anthropic import convert
from rlm_backend_anthropic.convert import to_anthropic_messages

texts = st.text(min_size=1, max_size=30)
messages_st = st.one_of(
    texts.map(Message.user),
    texts.map(Message.system),
    st.builds(lambda t, n: Message.assistant(t, tool_calls=(ToolCall(id=f"c{n}", name="f", arguments={"n": n}),)),
              texts, st.integers(0, 9)),
    st.builds(lambda t, n: Message.tool(f"c{n}", t), texts, st.integers(0, 9)),
)


def uncached(messages, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(convert, "wire_blocks", convert.message_blocks)
        return to_anthropic_messages(messages)


@settings(max_examples=150, deadline=None)
@given(st.lists(messages_st, min_size=1, max_size=12), st.lists(st.tuples(st.integers(0, 50), texts), max_size=4))
def test_cached_blocks_give_the_uncached_request_again_and_after_replacements(conversation, replacements):
    import pytest

    monkeypatch = pytest.MonkeyPatch()
    try:
        conversation = list(conversation)
        want = uncached(conversation, monkeypatch)
        # twice: merging same-role turns must not grow the cached blocks' lists
        assert to_anthropic_messages(conversation) == want
        assert to_anthropic_messages(conversation) == want
        for index, text in replacements:
            i = index % len(conversation)
            conversation[i] = attrs.evolve(conversation[i], content=text)
            assert to_anthropic_messages(conversation) == uncached(conversation, monkeypatch)
    finally:
        monkeypatch.undo()


def test_a_tool_result_turn_merges_without_changing_the_cache():
    calls = (ToolCall(id="a", name="f", arguments={}), ToolCall(id="b", name="f", arguments={}))
    call = Message.assistant("", tool_calls=calls)
    results = [Message.tool("a", "1"), Message.tool("b", "2")]
    conversation = [Message.user("go"), call, *results]
    _, first = to_anthropic_messages(conversation)
    _, second = to_anthropic_messages(conversation + [Message.user("more")])
    assert first[-1]["content"] == [{"type": "tool_result", "tool_use_id": "a", "content": "1"},
                                    {"type": "tool_result", "tool_use_id": "b", "content": "2"}]
    assert second[-1]["content"] == first[-1]["content"] + [{"type": "text", "text": "more"}]
    assert convert.wire_blocks(results[0]) == ("user", [{"type": "tool_result", "tool_use_id": "a", "content": "1"}])
