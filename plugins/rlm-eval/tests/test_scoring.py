"""Tests for rlm_eval.scoring: exact match, the 0.75**|error| numeric score and pair F1, against hand-worked cases."""

from __future__ import annotations

import pytest
from rlm_eval.scoring import parse_pairs, score, score_exact, score_number, score_pairs


@pytest.mark.parametrize(
    "answer",
    [
        "location",
        "  Location  ",
        "LOCATION.",
        '"location"',
        "'location'",
        "`location`",
        "`location`.",
        '"Location."',
        "The answer is:\nlocation",
        "I counted the labels.\n\n  `Location`.  \n\n",
    ],
)
def test_score_exact_normalises(answer: str) -> None:
    assert score_exact("location", answer) == 1.0


@pytest.mark.parametrize(
    "answer",
    [
        "locations",
        "location is the answer",  # prose on the last line is not stripped
        "location\nbut maybe entity",  # only the last non-empty line counts
        "loc",
    ],
)
def test_score_exact_rejects(answer: str) -> None:
    assert score_exact("location", answer) == 0.0


def test_score_exact_values() -> None:
    assert score_exact("1234567", "1234567") == 1.0
    assert score_exact("1234567", "The value is:\n1234567.") == 1.0
    assert score_exact("a1b2c3d4-0000-1111-2222-333344445555", "A1B2C3D4-0000-1111-2222-333344445555") == 1.0
    assert score_exact("yes", "No.") == 0.0


def test_score_number_hand_computed() -> None:
    assert score_number(10, "10") == 1.0
    assert score_number(10, "about 12") == pytest.approx(0.75**2)
    assert score_number(10, "7 instances") == pytest.approx(0.75**3)
    assert score_number(1234, "There are 1,234 of them.") == 1.0
    assert score_number(1234, "1,235") == pytest.approx(0.75)
    assert score_number(5, "5 out of 100") == 1.0  # the first integer is used
    assert score_number(3, "user-4") == pytest.approx(0.75)  # a hyphen inside a word is not a minus sign
    assert score_number(0, "-2") == pytest.approx(0.75**2)
    assert score_number(10, "no idea") == 0.0
    assert score_number(0, "10000") == pytest.approx(0.75**10000)
    assert score_number(0, "1" * 400) == 0.0  # too far off to even form a float


def test_parse_pairs_formats() -> None:
    assert parse_pairs("(1, 2)\n(5,3)") == {(1, 2), (3, 5)}
    assert parse_pairs("1,2\n3-4\n7 – 6") == {(1, 2), (3, 4), (6, 7)}
    assert parse_pairs("Pairs: (10, 20), (30, 40) and (40, 30).") == {(10, 20), (30, 40)}
    assert parse_pairs("4,4\n") == set()
    assert parse_pairs("no pairs here") == set()


def test_score_pairs_f1_hand_computed() -> None:
    expected = [[1, 2], [3, 4]]
    assert score_pairs(expected, "1,2\n3,4") == 1.0
    assert score_pairs(expected, "(4, 3)\n(2, 1)") == 1.0
    # Half right: one hit out of two predicted and two expected -> P = R = 1/2 -> F1 = 1/2.
    assert score_pairs(expected, "1,2\n5,6") == pytest.approx(0.5)
    # One hit out of one predicted, two expected: P = 1, R = 1/2 -> F1 = 2/3.
    assert score_pairs(expected, "1,2") == pytest.approx(2 / 3)
    # Two hits out of four predicted: P = 1/2, R = 1 -> F1 = 2/3.
    assert score_pairs(expected, "1,2\n3,4\n5,6\n7,8") == pytest.approx(2 / 3)
    assert score_pairs(expected, "5,6") == 0.0
    assert score_pairs(expected, "none") == 0.0
    assert score_pairs([], "none") == 1.0
    assert score_pairs([], "1,2") == 0.0


def test_score_dispatch() -> None:
    assert score("exact", "yes", "Yes.") == 1.0
    assert score("number", 10, "about 12") == pytest.approx(0.75**2)
    assert score("pairs", [[1, 2], [3, 4]], "1,2\n5,6") == pytest.approx(0.5)
    for kind, expected in (("exact", "yes"), ("number", 0), ("pairs", [])):
        assert score(kind, expected, None) == 0.0
        assert score(kind, expected, "") == 0.0
    with pytest.raises(ValueError, match="unknown item kind"):
        score("fuzzy", "x", "x")
