"""Budget packing: results never exceed ``max_tokens`` (as estimated) by construction.

Tokens are the kernel's one estimate (:func:`rlm.tokens.estimate_tokens`, 4
characters a token), so a result's size means here what it means to the run;
every returned item is charged its text plus a small fixed overhead for its
labels, and items are packed greedily by rank.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from attrs import define
from rlm.tokens import CHARS_PER_TOKEN, estimate_tokens

T = TypeVar("T")

#: Tokens charged per returned item for its labels (file, title, line, score).
ITEM_OVERHEAD = 12
#: A section larger than what is left is cut only if at least this many tokens remain.
MIN_USEFUL = 64


def cut_to_tokens(text: str, tokens: int) -> str:
    """The start of ``text`` that fits in ``tokens``, cut at a line or word boundary when possible."""
    limit = max(0, (tokens - 1) * CHARS_PER_TOKEN)
    if len(text) <= limit:
        return text
    head = text[:limit]
    for sep in ("\n", " "):
        at = head.rfind(sep)
        if at > limit // 2:
            head = head[:at]
            break
    return head.rstrip() + " …"


@define(frozen=True, kw_only=True)
class Packed:
    """What fitted: the chosen (possibly cut) texts with their items, and the tokens used."""

    items: tuple[tuple[object, str], ...]
    tokens: int
    truncated: bool


def pack(items: Iterable[T], text_of: Callable[[T], str], max_tokens: int,
         overhead: Callable[[T], int] | None = None) -> Packed:
    """Greedily keep ranked ``items`` whose text (plus overhead) fits in ``max_tokens``.

    An item too big for what is left is cut to fit when enough room remains
    (so the best match is never dropped for being long); smaller later items
    still fill the remaining room.  ``truncated`` says something was cut or left out.
    """
    kept: list[tuple[object, str]] = []
    used = 0
    truncated = False
    for item in items:
        text = text_of(item)
        extra = ITEM_OVERHEAD + (overhead(item) if overhead else 0)
        cost = estimate_tokens(text) + extra
        room = max_tokens - used
        if cost <= room:
            kept.append((item, text))
            used += cost
            continue
        truncated = True
        if room - extra >= MIN_USEFUL:
            cut = cut_to_tokens(text, room - extra)
            cost = estimate_tokens(cut) + extra
            if cost <= room:
                kept.append((item, cut))
                used += cost
    return Packed(items=tuple(kept), tokens=used, truncated=truncated)


def split_budget(total: int, parts: int) -> Sequence[int]:
    """``total`` tokens shared evenly between ``parts`` queries (never more than ``total`` in all)."""
    if parts <= 0:
        return []
    share = total // parts
    return [share] * parts
