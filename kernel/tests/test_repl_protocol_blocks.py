"""Code blocks and FINAL markers in the paper-style protocol's text, including replies whose fences a
small model left out."""

from __future__ import annotations

import pytest
from rlm.repl_protocol import code_blocks, find_final, strip_code

UNFENCED = 'repl\nimport csv\nwith open("sales.csv") as f:\n    rows = list(csv.DictReader(f))\nFINAL(len(rows) - 1)'


def test_fenced_blocks_in_order():
    text = "First:\n```repl\nx = 1\n```\nthen\n```python\nprint(x)\n```\n"
    assert code_blocks(text) == ["x = 1", "print(x)"]


def test_a_reply_without_fences_that_starts_with_the_tag_is_one_block():
    assert code_blocks(UNFENCED) == [UNFENCED.split("\n", 1)[1]]
    # its FINAL is code, to be run, not a literal answer "len(rows) - 1"
    assert find_final(UNFENCED) is None
    assert strip_code(UNFENCED) == ""


def test_the_tag_must_stand_alone_and_the_rest_must_read_as_python():
    assert code_blocks("python is a language I like.\nIt has many users") == []
    assert code_blocks("repl\nthe answer is forty") == []
    assert code_blocks("The answer:\nrepl\nx = 1") == []
    prose = "FINAL(42)"
    assert code_blocks(prose) == [] and find_final(prose).value == "42"


def test_a_reply_with_fences_is_never_read_as_unfenced():
    text = "repl\nx = 1\n```json\n{\"a\": 1}\n```"
    assert code_blocks(text) == []


@pytest.mark.parametrize(("marker", "answer"), [
    ('FINAL("""a "quoted" word""")', 'a "quoted" word'),
    ("FINAL('''x''')", "x"),
    ('FINAL("""x""")', "x"),
    ('FINAL("x")', "x"),
    ("FINAL('x')", "x"),
    ("FINAL(x)", "x"),
    ('FINAL("")', ""),
    ("FINAL('')", ""),
    ('FINAL("""""")', ""),
    ('FINAL("""multi\nline""")', "multi\nline"),
    ('FINAL("it\'s")', "it's"),
    ("FINAL(\"x')", "\"x'"),  # mismatched quotes: kept as written
])
def test_final_quotes_are_stripped_once_triple_quotes_included(marker, answer):
    found = find_final(f"Done.\n{marker}\n")
    assert found is not None and found.kind == "final"
    assert found.value == answer


def test_a_block_missing_only_its_opening_fence_is_code_and_its_final_is_not_prose():
    text = ('repl\nwith open("notes.txt") as f:\n    words = f.read().split()\n    for word in words:\n'
            '        FINAL(word)\n        break\n```\nFINAL(Cygnus)')
    assert code_blocks(text) == ['with open("notes.txt") as f:\n    words = f.read().split()\n    for word in words:\n'
                                 '        FINAL(word)\n        break']
    marker = find_final(text)
    assert marker is not None and marker.value == "Cygnus"  # not 'word)\n  break\n```\nFINAL(Cygnus'
