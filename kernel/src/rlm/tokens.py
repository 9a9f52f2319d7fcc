"""The one token estimate of the kernel and its plugins: 4 characters a token.

It is an *estimate*, for sizing a prompt against a context window or filling
in usage a provider did not report.  It is never a bound: budget reservations
use :meth:`rlm.orchestrator.Run.input_reservation`, which counts UTF-8 bytes
(see README "Budgets are guarantees").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: Characters per token of the estimate.
CHARS_PER_TOKEN = 4


def tokens_for_chars(chars: int) -> int:
    """Estimated tokens of ``chars`` characters of text (rounded down)."""
    return max(0, chars) // CHARS_PER_TOKEN


def text_chars(value: Any) -> int:
    """Characters of text in ``value``: a string; a message (an :class:`rlm.types.Message` or an
    OpenAI-style mapping with ``content``) whose content is a string or a list of parts (only text
    parts count); or an iterable of those (summed).  None and anything else count 0."""
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        if "content" in value:
            return text_chars(value.get("content"))
        text = value.get("text")  # a content part
        return len(text) if isinstance(text, str) else 0
    text = getattr(value, "text", None)
    if isinstance(text, str):  # rlm.types.Message (its text: parts joined) or a TextPart
        return len(text)
    if isinstance(value, Iterable) and not isinstance(value, (bytes, bytearray)):
        return sum(text_chars(item) for item in value)
    return 0


def estimate_tokens(text_or_messages: Any, *, per_message: int = 0) -> int:
    """Estimated tokens of a text, a message or a list of messages (see :func:`text_chars`).

    ``per_message`` adds that many tokens per message of a list (a chat template's
    overhead); a lone text or message counts as one.
    """
    value = text_or_messages
    single = value is None or isinstance(value, (str, Mapping)) or hasattr(value, "role")
    if not single and isinstance(value, Iterable):
        value = list(value)  # a generator is read once
    tokens = tokens_for_chars(text_chars(value))
    if per_message and value is not None:
        tokens += per_message * (1 if single else len(value))
    return tokens
