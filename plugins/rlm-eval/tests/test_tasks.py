"""Tests for rlm_eval.tasks: sizes, determinism, and answers recomputed independently from the generated contexts."""

from __future__ import annotations

import re
import time
from collections import Counter
from itertools import combinations

import pytest
from rlm_eval.tasks import (
    CATEGORIES,
    TASKS,
    EvalItem,
    approx_tokens,
    generate,
    parse_size,
)

_LINE = re.compile(r"^Date: (\d{4}-\d{2}-\d{2}) \|\| User: (\d+) \|\| Instance: (.+\?)$")


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("8k", 8192), ("32K", 32768), ("1m", 1048576), ("1M", 1048576), ("500", 500), (" 1k ", 1024), ("1.5k", 1536)],
)
def test_parse_size(text: str, tokens: int) -> None:
    assert parse_size(text) == tokens


@pytest.mark.parametrize("text", ["", "k", "8kb", "8 g", "-8k", "0", "0k", "1.5", "eight", "8k8"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


def test_approx_tokens() -> None:
    assert approx_tokens("") == 0
    assert approx_tokens("abc") == 1
    assert approx_tokens("abcd") == 1
    assert approx_tokens("abcde") == 2


def test_unknown_task() -> None:
    with pytest.raises(ValueError, match="sniah, oolong, pairs"):
        generate("ruler", size="1k", n=1, seed=0)
    with pytest.raises(ValueError, match="invalid size"):
        generate("sniah", size="big", n=1, seed=0)
    assert generate("sniah", size="1k", n=0, seed=0) == []


@pytest.mark.parametrize("task", TASKS)
def test_deterministic_per_seed(task: str) -> None:
    first = generate(task, size="2k", n=4, seed=7)
    assert first == generate(task, size="2k", n=4, seed=7)
    other = generate(task, size="2k", n=4, seed=8)
    assert [i.context for i in first] != [i.context for i in other]
    assert len({i.context for i in first}) == 4  # items differ within a run too


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("size", ["1k", "8k", "32k"])
def test_sizes_within_five_percent(task: str, size: str) -> None:
    start = time.perf_counter()
    items = generate(task, size=size, n=3, seed=1)
    elapsed = time.perf_counter() - start
    target = parse_size(size)
    for index, item in enumerate(items):
        assert isinstance(item, EvalItem)
        assert item.id == f"{task}-{size}-{index}"
        assert (item.task, item.size, item.target_tokens) == (task, size, target)
        assert abs(approx_tokens(item.context) - target) <= 0.05 * target
        assert item.question
    assert elapsed < 1.5  # three 32k contexts; one takes well under half a second


def test_sniah_one_needle() -> None:
    items = generate("sniah", size="8k", n=5, seed=3)
    depths = [item.meta["depth"] for item in items]
    assert depths == [0.0, 0.25, 0.5, 0.75, 1.0]
    for item in items:
        assert item.kind == "exact"
        assert isinstance(item.answer, str)
        assert item.context.count("special magic") == 1
        assert item.context.count(item.answer) == 1
        match = re.search(r"One of the special magic (numbers|words|uuids) for (\w+ \w+) is: (\S+)\.", item.context)
        assert match is not None
        kind, key, value = match.groups()
        assert value == item.answer
        assert item.question == (
            f"What is the special magic {kind} for {key} mentioned in the context? Answer with the value only."
        )
        if kind == "numbers":
            assert re.fullmatch(r"\d{7}", value)
        elif kind == "uuids":
            assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", value)
        else:
            assert re.fullmatch(r"[a-z]+", value)
        # The needle sits near the requested depth (within a sentence or two).
        assert abs(match.start() / len(item.context) - item.meta["depth"]) < 0.05


def test_sniah_needle_types_vary() -> None:
    kinds = {item.meta["needle_type"] for item in generate("sniah", size="1k", n=30, seed=0)}
    assert kinds == {"numbers", "words", "uuids"}


def _parse_lines(item: EvalItem) -> list[tuple[int, str, str]]:
    """(user, date, category) per line, users and dates read from the text, categories from meta["labels"]."""
    lines = item.context.split("\n")
    labels = item.meta["labels"]
    assert len(lines) == len(labels)
    out = []
    for line, (user, date, category) in zip(lines, labels, strict=True):
        match = _LINE.match(line)
        assert match is not None, line
        assert (int(match.group(2)), match.group(1)) == (user, date)
        assert category in CATEGORIES
        # No label field, and no other category's name that could mislead a reader.
        assert "label" not in line.casefold() and line.count("||") == 2
        for name in CATEGORIES:
            assert name == category or name not in match.group(3).casefold()
        out.append((user, date, category))
    return out


def _oolong_answer(item: EvalItem, rows: list[tuple[int, str, str]]) -> object:
    counts = Counter(category for _, _, category in rows)
    qtype, params = item.meta["question_type"], item.meta["params"]
    if qtype == "count":
        return counts[params["category"]]
    if qtype == "count_user":
        return sum(1 for u, _, c in rows if u == params["user"] and c == params["category"])
    if qtype == "count_dates":
        return sum(1 for _, d, c in rows if c == params["category"] and params["from"] <= d <= params["to"])
    ranked = sorted(CATEGORIES, key=lambda c: counts[c])
    if qtype == "most_common":
        assert counts[ranked[-1]] > counts[ranked[-2]]
        return ranked[-1]
    if qtype == "least_common":
        assert counts[ranked[0]] < counts[ranked[1]]
        return ranked[0]
    assert qtype == "compare"
    assert counts[params["first"]] != counts[params["second"]]
    return "yes" if counts[params["first"]] > counts[params["second"]] else "no"


@pytest.mark.parametrize("size", ["1k", "8k"])
def test_oolong_answers_recomputed(size: str) -> None:
    items = generate("oolong", size=size, n=24, seed=5)
    assert len({item.meta["question_type"] for item in items}) >= 5
    for item in items:
        rows = _parse_lines(item)
        counts = Counter(category for _, _, category in rows)
        assert item.meta["counts"] == {c: counts[c] for c in CATEGORIES}
        assert _oolong_answer(item, rows) == item.answer
        qtype, params = item.meta["question_type"], item.meta["params"]
        if qtype.startswith("count"):
            assert item.kind == "number" and isinstance(item.answer, int)
            assert f"labelled {params['category']}?" in item.question
            assert item.question.endswith("Answer with a number only.")
        else:
            assert item.kind == "exact" and isinstance(item.answer, str)
        if qtype == "compare":
            assert item.answer in ("yes", "no")
            assert item.question.endswith("Answer yes or no.")
        if qtype == "count_user":
            assert f"user {params['user']} " in item.question
            assert item.answer >= 1


def test_pairs_answers_recomputed() -> None:
    seen_types = set()
    for size in ("1k", "8k"):
        for item in generate("pairs", size=size, n=16, seed=11):
            assert item.kind == "pairs"
            rows = _parse_lines(item)
            users = sorted({u for u, _, _ in rows})
            assert users == item.meta["users"]  # every user appears in the context
            assert 10 <= len(users) <= 40
            has: dict[int, set[str]] = {u: set() for u in users}
            for u, _, c in rows:
                has[u].add(c)
            qtype, c1, c2 = item.meta["question_type"], item.meta["params"]["first"], item.meta["params"]["second"]
            seen_types.add(qtype)
            expected = []
            for a, b in combinations(users, 2):
                ha, hb = has[a], has[b]
                ok = {
                    "both": c1 in ha and c1 in hb,
                    "cross": (c1 in ha and c2 in hb) or (c2 in ha and c1 in hb),
                    "both_either": bool({c1, c2} & ha) and bool({c1, c2} & hb),
                    "both_all": {c1, c2} <= ha and {c1, c2} <= hb,
                }[qtype]
                if ok:
                    expected.append([a, b])
            assert item.answer == expected
            assert 0 < len(item.answer) < len(users) * (len(users) - 1) // 2
            assert all(a < b for a, b in item.answer)
            assert c1 in item.question
            assert "Answer with one pair per line as 'a,b'" in item.question
    assert seen_types == {"both", "cross", "both_either", "both_all"}


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("size", ["100", "500"])
def test_small_sizes_still_valid(task: str, size: str) -> None:
    for item in generate(task, size=size, n=3, seed=2):
        assert item.context and item.question
        if task == "sniah":
            assert item.context.count(item.answer) == 1
        elif task == "pairs":
            assert item.answer
