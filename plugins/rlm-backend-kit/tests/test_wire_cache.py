"""The OpenAI wire form is computed once per message (``openai_format.wire_message``) and is always
what the uncached conversion gives: for any conversation, after any message was replaced (compaction
makes a new message), and however many requests shared the cached dicts."""

from __future__ import annotations

import copy
import json

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from rlm.backend import LLMRequest
from rlm.types import ImagePart, Message, TextPart, ToolCall
from rlm_backend_kit.openai_format import json_body, request_params, to_openai_message, to_openai_messages

texts = st.text(max_size=30)
messages_st = st.one_of(
    texts.map(Message.user),
    texts.map(Message.system),
    st.builds(lambda t, n: Message.assistant(t, tool_calls=(ToolCall(id=f"c{n}", name="f", arguments={"n": n}),)),
              texts, st.integers(0, 9)),
    st.builds(lambda t, n: Message.tool(f"c{n}", t), texts, st.integers(0, 9)),
    st.builds(lambda t: Message.user((TextPart(text=t), ImagePart(url="https://x/y.png"))), texts),
)


def uncached(messages) -> list[dict]:
    return [to_openai_message(m) for m in messages]


@settings(max_examples=150, deadline=None)
@given(st.lists(messages_st, min_size=1, max_size=12), st.lists(st.tuples(st.integers(0, 50), texts), max_size=4))
def test_the_cached_wire_form_is_the_uncached_one_before_and_after_replacements(conversation, replacements):
    conversation = list(conversation)
    first = to_openai_messages(conversation)
    assert first == uncached(conversation)
    for index, text in replacements:  # compaction: a message replaced by a new, shorter one
        i = index % len(conversation)
        conversation[i] = attrs.evolve(conversation[i], content=text)
        assert to_openai_messages(conversation) == uncached(conversation)
    request = LLMRequest(model="m", messages=tuple(conversation))
    assert request_params(request)["messages"] == uncached(conversation)


def test_old_messages_are_not_converted_again():
    conversation = [Message.system("s"), Message.user("go")]
    first = to_openai_messages(conversation)
    conversation.append(Message.assistant("", tool_calls=(ToolCall(id="a", name="f", arguments={}),)))
    second = to_openai_messages(conversation)
    assert second == uncached(conversation)
    assert all(a is b for a, b in zip(first, second))  # the same dicts: converted once


def test_the_public_conversion_hands_out_fresh_dicts():
    """``to_openai_message`` itself is not cached: a caller may change what it returns."""
    message = Message.assistant("", tool_calls=(ToolCall(id="a", name="f", arguments={"x": 1}),))
    before = copy.deepcopy(to_openai_messages([message]))
    mine = to_openai_message(message)
    mine["content"] = "changed"
    mine["tool_calls"].clear()
    assert to_openai_messages([message]) == before


@settings(max_examples=100, deadline=None)
@given(st.lists(messages_st, max_size=8), st.sampled_from([None, 0.5]), st.integers(0, 3))
def test_the_spliced_json_body_parses_to_the_params(conversation, temperature, calls):
    request = LLMRequest(model="m", messages=tuple(conversation), temperature=temperature, max_tokens=calls or None)
    params = {**request_params(request), "model": "gpt-x"}
    for _ in range(calls + 1):  # again, with every message's JSON cached
        assert json.loads(json_body(params, conversation)) == params
    assert json.loads(json_body({"messages": []}, [])) == {"messages": []}
