"""The size of a prompt (characters and UTF-8 bytes), measured once per message.

:func:`prompt_size` sizes a prompt for the budgets (:meth:`rlm.orchestrator.Run.input_reservation`
counts its bytes) and the context window (:func:`estimate_tokens`, from its characters).  A message's
size is computed once per message object (:mod:`rlm.memo`: messages are frozen), and
:class:`PromptMeter` keeps a running total of one conversation, so a turn costs what its new messages
cost, not what the whole conversation does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rlm.backend import ToolSchema
from rlm.memo import memoize_by_identity
from rlm.tokens import tokens_for_chars
from rlm.types import Message

#: characters and bytes counted per message on top of its text (roles, separators)
MESSAGE_OVERHEAD = 16
#: characters and bytes counted per image or audio part
MEDIA_PART_SIZE = 1000
#: tokens added to every prompt estimate
PROMPT_OVERHEAD_TOKENS = 8


def utf8_len(text: str) -> int:
    """UTF-8 bytes of ``text`` (a lone surrogate counts as the 3 bytes it would take)."""
    return len(text.encode("utf-8", "surrogatepass"))


@memoize_by_identity
def message_size(m: Message) -> tuple[int, int]:
    """(characters, UTF-8 bytes) of one message as a provider sees it, with a fixed overhead each."""
    chars = len(m.text) + MESSAGE_OVERHEAD
    size = utf8_len(m.text) + MESSAGE_OVERHEAD
    if not isinstance(m.content, str):
        parts = MEDIA_PART_SIZE * sum(1 for p in m.content if getattr(p, "type", "") != "text")
        chars += parts
        size += parts
    for c in m.tool_calls:
        text = c.name + json.dumps(dict(c.arguments), default=str)
        chars += len(text)
        size += utf8_len(text)
    return chars, size


def tools_size(tools: Sequence[ToolSchema]) -> tuple[int, int]:
    """(characters, UTF-8 bytes) of tool schemas (a few per prompt, often rebuilt: not memoized)."""
    chars = size = 0
    for t in tools:
        text = t.name + t.description + json.dumps(dict(t.parameters))
        chars += len(text)
        size += utf8_len(text)
    return chars, size


def prompt_size(messages: Sequence[Message], tools: Sequence[ToolSchema] = (), cache: Any = None) -> tuple[int, int]:
    """(characters, UTF-8 bytes) of a prompt: its messages and tool schemas.  ``cache`` is ignored
    (kept for callers of the older signature: every message's size is memoized now)."""
    sizes = message_size.many(messages)  # type: ignore[attr-defined]
    c, b = tools_size(tools)
    return sum(s[0] for s in sizes) + c, sum(s[1] for s in sizes) + b


def estimate_tokens(messages: Sequence[Message], tools: Sequence[ToolSchema] = (), cache: Any = None) -> int:
    """A cheap estimate of prompt tokens (:func:`rlm.tokens.tokens_for_chars`, plus overhead), for
    sizing the context window.  Budget reservations use :meth:`Run.input_reservation`, an upper bound."""
    return size_tokens(prompt_size(messages, tools))


def size_tokens(size: tuple[int, int]) -> int:
    """The token estimate of a prompt of ``size`` (characters, bytes), as :func:`estimate_tokens` gives it."""
    return tokens_for_chars(size[0]) + PROMPT_OVERHEAD_TOKENS


class PromptMeter:
    """The running size of one conversation: :meth:`measure` sizes only the messages added since its
    last call.

    A message replaced anywhere before the end (compaction) is noticed (the list is compared with what
    was measured, by identity first: a C-speed pass, no sizing), and the total is then re-summed from
    the memoized sizes of its messages.  Any list may be measured; the result always equals
    :func:`prompt_size` of it.
    """

    __slots__ = ("_seen", "_chars", "_bytes")

    def __init__(self) -> None:
        self._seen: list[Message] = []
        self._chars = 0
        self._bytes = 0

    def measure(self, messages: Sequence[Message], tools: Sequence[ToolSchema] = ()) -> tuple[int, int]:
        """(characters, UTF-8 bytes) of ``messages`` and ``tools``, as :func:`prompt_size` counts them."""
        seen = self._seen
        n = len(seen)
        if len(messages) < n or list(messages[:n]) != seen:  # something measured before was replaced or removed
            seen.clear()
            self._chars = self._bytes = n = 0
        for m in messages[n:]:
            c, b = message_size(m)
            self._chars += c
            self._bytes += b
            seen.append(m)
        c, b = tools_size(tools)
        return self._chars + c, self._bytes + b

    def estimate_tokens(self, messages: Sequence[Message], tools: Sequence[ToolSchema] = ()) -> int:
        """:func:`estimate_tokens` of ``messages``, from the running size."""
        return size_tokens(self.measure(messages, tools))
