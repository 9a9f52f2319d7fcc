"""Meta-tests of the plugin contract itself.

Every hookspec in :mod:`rlm.hookspecs` documents each parameter (``:param``),
its return contract (``:return:``) and when the kernel calls it; and every
hookspec is implemented with ``@hookimpl`` by at least one test under
``kernel/tests/`` (found by reading the test files, so a new hookspec without
a test fails here).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from rlm import hookspecs
from rlm.plugins import create_plugin_manager

TESTS_DIR = Path(__file__).resolve().parent
SPEC_MARK = f"{hookspecs.PROJECT_NAME}_spec"


def _specs() -> dict[str, object]:
    return {
        name: obj
        for name, obj in vars(hookspecs).items()
        if inspect.isfunction(obj) and hasattr(obj, SPEC_MARK)
    }


SPECS = _specs()


def test_hookspecs_are_found():
    assert "rlm_register_backends" in SPECS and "rlm_trajectory_event" in SPECS
    pm = create_plugin_manager(entry_points=False, default_plugins=False)
    with_spec = {name for name in dir(pm.hook) if getattr(getattr(pm.hook, name), "has_spec", lambda: False)()}
    assert with_spec == set(SPECS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hookspec_docstring_is_complete(name):
    spec = SPECS[name]
    doc = inspect.getdoc(spec)
    assert doc, f"{name} has no docstring"
    for param in inspect.signature(spec).parameters:
        assert re.search(rf":param {param}:", doc), f"{name}: no ':param {param}:'"
    assert ":return:" in doc, f"{name}: no ':return:' contract"
    assert re.search(r"\bCalled\b", doc), f"{name}: does not say when it is called"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_hookspec_is_implemented_in_a_test(name):
    pattern = re.compile(rf"@hookimpl(?:\([^)]*\))?\s*\n\s*def {name}\(")
    files = [p for p in TESTS_DIR.rglob("test_*.py") if p.resolve() != Path(__file__).resolve()]
    hits = [p.name for p in files if pattern.search(p.read_text(encoding="utf-8"))]
    assert hits, f"no test under kernel/tests implements {name} with @hookimpl"
