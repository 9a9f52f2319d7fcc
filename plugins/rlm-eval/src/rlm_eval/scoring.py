"""Scorers for ``rlm eval`` answers: exact match, the paper's 0.75**|error| numeric score, and pair F1.

Every scorer returns a float in ``[0, 1]``; :func:`score` picks one by the
item's ``kind`` (``"exact"``, ``"number"`` or ``"pairs"``).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["parse_pairs", "score", "score_exact", "score_number", "score_pairs"]

_QUOTES = "\"'`"


def _normalise(text: str) -> str:
    """Strip whitespace, casefold, and peel surrounding quotes/backticks and a trailing period until stable."""
    previous = None
    text = text.strip().casefold()
    while text != previous:
        previous = text
        if text.endswith("."):
            text = text[:-1].rstrip()
        if len(text) >= 2 and text[0] in _QUOTES and text[-1] == text[0]:
            text = text[1:-1].strip()
    return text


def score_exact(expected: str, answer: str) -> float:
    """1.0 if ``answer`` (or its last non-empty line) equals ``expected`` after normalisation, else 0.0.

    Normalisation strips whitespace, casefolds, and removes surrounding quotes or
    backticks and a trailing period.  The last-line rule accepts answers where a
    model writes prose before the value.
    """
    want = _normalise(str(expected))
    if _normalise(answer) == want:
        return 1.0
    lines = [line for line in answer.splitlines() if line.strip()]
    if lines and _normalise(lines[-1]) == want:
        return 1.0
    return 0.0


# An integer, allowing thousands separators ("1,234"); a minus sign counts only at the start of
# a word ("-3", "= -3"), not inside one ("user-12" reads as 12).
_INT_RE = re.compile(r"(?:(?<![^\s(:=])-)?(?<!\d)(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)")


def score_number(expected: int, answer: str) -> float:
    """The RLM paper's numeric score ``0.75 ** abs(expected - y)``, y the first integer in ``answer``.

    Thousands separators are accepted (``"1,234"``); no integer scores 0.0.
    """
    match = _INT_RE.search(answer)
    if match is None:
        return 0.0
    value = int(match.group().replace(",", ""))
    try:
        return 0.75 ** abs(int(expected) - value)
    except OverflowError:  # a difference too large to convert to float
        return 0.0


_PAIR_RE = re.compile(r"(?<!\d)(\d+)\s*[,\-\u2013\u2014]\s*(\d+)(?!\d)")


def parse_pairs(answer: str) -> set[tuple[int, int]]:
    """Pairs of integers in ``answer``: ``"(1, 2)"``, ``"1,2"`` or ``"1-2"``, one per line or inline.

    Each pair is ordered ``(min, max)``; a pair of equal numbers is dropped.
    """
    pairs: set[tuple[int, int]] = set()
    for match in _PAIR_RE.finditer(answer):
        a, b = int(match.group(1)), int(match.group(2))
        if a != b:
            pairs.add((min(a, b), max(a, b)))
    return pairs


def score_pairs(expected: list[list[int]], answer: str) -> float:
    """F1 between the ``expected`` pairs and :func:`parse_pairs` of ``answer``; both empty scores 1.0."""
    want = {(min(a, b), max(a, b)) for a, b in expected}
    got = parse_pairs(answer)
    if not want and not got:
        return 1.0
    hits = len(want & got)
    if hits == 0:
        return 0.0
    precision = hits / len(got)
    recall = hits / len(want)
    return 2 * precision * recall / (precision + recall)


def score(item_kind: str, expected: Any, answer: str | None) -> float:
    """Score ``answer`` against ``expected`` with the scorer for ``item_kind``; a missing or empty answer scores 0.0."""
    scorers = {"exact": score_exact, "number": score_number, "pairs": score_pairs}
    if item_kind not in scorers:
        raise ValueError(f"unknown item kind {item_kind!r}: expected one of {', '.join(scorers)}")
    if answer is None or not answer.strip():
        return 0.0
    return float(scorers[item_kind](expected, answer))
