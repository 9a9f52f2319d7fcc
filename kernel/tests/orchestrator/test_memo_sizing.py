"""Values memoized per message (``rlm.memo``) and the running prompt size (``rlm.sizing.PromptMeter``).

The memo must never serve a value for another object (a replaced message, a reused address) and must
not keep objects alive; the running size must equal a fresh measure of the conversation after any
sequence of appends, replacements (compaction) and removals, and in a real run after every turn.
"""

from __future__ import annotations

import gc

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from rlm.memo import IdentityMemo, memoize_by_identity
from rlm.sizing import PromptMeter, estimate_tokens, message_size, prompt_size, size_tokens
from rlm.types import ImagePart, Message, TextPart, ToolCall


def fresh_size(messages) -> tuple[int, int]:
    """The size of ``messages`` computed from scratch (no memo)."""
    sizes = [message_size.uncached(m) for m in messages]
    return sum(s[0] for s in sizes), sum(s[1] for s in sizes)


def test_a_value_is_computed_once_per_object_and_again_for_an_equal_new_one():
    calls = []
    memo: IdentityMemo = IdentityMemo()
    compute = lambda m: calls.append(m) or len(m.text)  # noqa: E731
    a = Message.user("hello")
    assert memo.get(a, compute) == memo.get(a, compute) == 5
    b = attrs.evolve(a)  # equal, another object
    assert memo.get(b, compute) == 5
    assert calls == [a, b]


def test_a_replaced_message_gets_its_own_value():
    size = memoize_by_identity(lambda m: len(m.text))
    old = Message.tool("c1", "x" * 1000)
    assert size(old) == 1000
    cut = attrs.evolve(old, content="x" * 10)  # what compaction does: a new message
    assert size(cut) == 10 and size(old) == 1000


def test_an_entry_goes_with_its_object_and_keeps_nothing_alive():
    memo: IdentityMemo = IdentityMemo()
    message = Message.user("bye")
    memo.get(message, lambda m: m.text)
    assert len(memo) == 1
    del message
    gc.collect()
    assert len(memo) == 0


def test_objects_without_weak_references_are_computed_every_time():
    calls = []
    memo: IdentityMemo = IdentityMemo()
    assert memo.get(12345, lambda n: calls.append(n) or n + 1) == 12346
    assert memo.get(12345, lambda n: calls.append(n) or n + 1) == 12346
    assert len(calls) == 2 and len(memo) == 0


def test_get_many_is_get_of_each():
    memo: IdentityMemo = IdentityMemo()
    messages = [Message.user(str(i)) for i in range(5)]
    assert memo.get_many(messages, lambda m: m.text) == [m.text for m in messages]
    assert memo.get_many(messages[::-1], lambda m: "never") == [m.text for m in messages[::-1]]


def test_a_grown_sequence_reuses_its_prefix_and_a_replaced_one_does_not():
    calls = []
    memo: IdentityMemo = IdentityMemo()
    compute = lambda m: calls.append(m) or m.text  # noqa: E731
    conversation = [Message.user(str(i)) for i in range(4)]
    assert memo.get_many(conversation, compute) == ["0", "1", "2", "3"]
    conversation.append(Message.tool("t", "4"))
    assert memo.get_many(conversation, compute) == ["0", "1", "2", "3", "4"]
    conversation[1] = Message.user("cut")  # compaction: a new message in the middle
    assert memo.get_many(conversation, compute) == ["0", "cut", "2", "3", "4"]
    assert [m.text for m in calls] == ["0", "1", "2", "3", "4", "cut"]


texts = st.text(max_size=40)
messages_st = st.one_of(
    texts.map(Message.user),
    texts.map(Message.system),
    st.builds(lambda t, n: Message.assistant(t, tool_calls=(ToolCall(id=f"c{n}", name="f", arguments={"n": n}),)),
              texts, st.integers(0, 9)),
    st.builds(lambda t, n: Message.tool(f"c{n}", t), texts, st.integers(0, 9)),
    st.builds(lambda t: Message.user((TextPart(text=t), ImagePart(url="https://x/y.png"))), texts),
)
#: ("append", message) | ("replace", index, message) | ("pop",) | ("measure",)
operations = st.lists(st.one_of(
    st.tuples(st.just("append"), messages_st),
    st.tuples(st.just("replace"), st.integers(0, 50), messages_st),
    st.tuples(st.just("pop")),
    st.tuples(st.just("measure")),
), max_size=40)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_the_running_size_equals_a_fresh_measure_after_any_edits(ops):
    meter = PromptMeter()
    conversation: list[Message] = []
    for op in ops:
        if op[0] == "append":
            conversation.append(op[1])
        elif op[0] == "replace" and conversation:
            conversation[op[1] % len(conversation)] = op[2]
        elif op[0] == "pop" and conversation:
            conversation.pop()
        assert meter.measure(conversation) == fresh_size(conversation) == prompt_size(conversation)
        assert meter.estimate_tokens(conversation) == estimate_tokens(conversation) == size_tokens(
            fresh_size(conversation))


def test_the_running_size_is_right_at_every_turn_of_a_run_that_compacts(make_rlm, monkeypatch):
    """A tools-protocol run whose context is compacted: every measure the orchestrator takes equals a fresh one."""
    from rlm import tool
    from rlm.sizing import PromptMeter as Meter

    checked = []
    measure = Meter.measure

    def checking(self, messages, tools=()):
        got = measure(self, messages, tools)
        chars, size = fresh_size(messages)
        extra = prompt_size([], tools)
        assert got == (chars + extra[0], size + extra[1])
        checked.append(len(messages))
        return got

    monkeypatch.setattr(Meter, "measure", checking)

    @tool
    async def big(n: int) -> str:
        """A long output."""
        return f"{n}:" + "y" * 3000

    def script(request):
        turn = sum(1 for m in request.messages if m.role == "tool")
        if turn < 6:
            return [ToolCall(id=f"t{turn}", name="big", arguments={"n": turn})]
        return "done"

    rlm, backend = make_rlm(script, protocol="tools", tools=[big], context_window=4000, token_budget=10**7)
    result = rlm.completion_sync("go")
    assert result.success, result.error
    assert any(e["type"] == "context_compacted" for e in result.events)
    assert len(checked) >= 7
    compacted = [m for m in backend.requests[-1].messages if m.role == "tool" and "removed to fit" in m.text]
    assert compacted  # the requests carried the cut messages, measured as such above
