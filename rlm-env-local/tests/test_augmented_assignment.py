"""Augmented assignment of items and attributes (``counts[k] += 1``, ``self.n += 1``) works in the
sandbox, evaluates its target once, and keeps every guard a plain read and write have.

Issue 19: the embedded model's group-by code (``totals[region] += revenue``) was refused by
RestrictedPython's policy, and the model could not find another way.
"""

from __future__ import annotations

import asyncio
import ast
from typing import Any

import pytest

from rlm_env_local.policy import CellPolicy, CellSyntaxError, compile_cell


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


CELL = """
import csv, io
rows = list(csv.DictReader(io.StringIO("region,units\\nEast,3\\nWest,4\\nEast,5\\n")))
totals = {}
for row in rows:
    totals.setdefault(row["region"], 0)
    totals[row["region"]] += int(row["units"])
lst = [1, 2, 3]
lst[1:2] += [9, 9]
grid = {(0, 1): 1}
grid[0, 1] *= 7
calls = []
def key():
    calls.append(1)
    return "East"
totals[key()] -= 1
class Counter:
    def __init__(self):
        self.n = 0
    def add(self, k):
        self.n += k
        return self
counter = Counter().add(2).add(3)
print(totals, lst, grid, len(calls), counter.n)
"""


def test_items_slices_and_attributes_in_the_real_sandbox(env_factory):
    async def body():
        env = env_factory()
        try:
            result = await env.execute(CELL)
        finally:
            await env.close()
        assert result.error is None, result.error
        assert result.output.strip() == "{'East': 7, 'West': 4} [1, 2, 9, 9, 3] {(0, 1): 7} 1 5"

    _run(body())


def test_guards_still_hold_for_the_rewritten_writes(env_factory):
    async def body():
        env = env_factory()
        try:
            module_write = await env.execute("import math\nmath.pi += 1")
            after = await env.execute("import math\nprint(math.pi)")
        finally:
            await env.close()
        assert module_write.error is not None  # the write guard refuses module attributes
        assert after.output.strip() == "3.141592653589793"

    _run(body())


@pytest.mark.parametrize("code", ["x._secret += 1", "x.__class__ += 1", "f.gi_frame += 1", "x[_y] += 1"])
def test_names_are_checked_as_in_any_access(code):
    with pytest.raises(CellSyntaxError, match="SyntaxError"):
        compile_cell(code, "<cell test>")


def test_the_rewrite_evaluates_target_and_key_once_and_guards_both_sides():
    tree = CellPolicy([], [], {}).visit(ast.parse("d[f()] += g()"))
    text = ast.unparse(tree)
    assert text.count("f()") == 1 and text.count("g()") == 1
    assert "_write_(_rlm_aug1_obj)[_rlm_aug1_key]" in text and "_getitem_(_rlm_aug1_obj, _rlm_aug1_key)" in text
    assert "_inplacevar_('+='" in text
