"""Meta-tests of the plugin contract itself.

Every hookspec in :mod:`rlm.hookspecs` documents each parameter (``:param``),
its return contract (``:return:``) and when the kernel calls it; and every
hookspec is implemented with ``@hookimpl`` by at least one real plugin: a
module under the ``src/`` tree of one of this repository's distributions (a
directory with a ``pyproject.toml``; the kernel's built-in plugins count, the
plugin template and test files do not).  The sources are parsed, not imported,
so a new hookspec that nothing ships fails here.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest
from rlm import hookspecs
from rlm.plugins import create_plugin_manager

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parents[1]
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


def _distributions() -> list[Path]:
    """The repository's distributions that ship code: ``<dir>/pyproject.toml`` and ``<dir>/src``
    (the plugin template, ``plugins/_template``, is an example to copy, not a plugin)."""
    found = []
    for pyproject in [*REPO.glob("*/pyproject.toml"), *REPO.glob("plugins/*/pyproject.toml")]:
        root = pyproject.parent
        if (root / "src").is_dir() and not root.name.startswith(("_", ".")):
            found.append(root)
    return sorted(found)


def _is_hookimpl(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
    return name == "hookimpl"


def _implementations() -> dict[str, list[str]]:
    """hook name -> the source files (relative to the repository) that implement it with @hookimpl."""
    spec_file = Path(inspect.getfile(hookspecs)).resolve()
    found: dict[str, list[str]] = {}
    for dist in _distributions():
        for source in sorted((dist / "src").rglob("*.py")):
            if source.resolve() == spec_file:
                continue
            tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                        _is_hookimpl(d) for d in node.decorator_list):
                    found.setdefault(node.name, []).append(str(source.relative_to(REPO)))
    return found


IMPLEMENTATIONS = _implementations()


def test_the_distributions_and_their_plugins_are_found():
    names = {d.relative_to(REPO).as_posix() for d in _distributions()}
    assert {"kernel", "rlm-env-local", "rlm-backend-litellm"} <= names
    assert "plugins/_template" not in names
    assert "kernel/src/rlm/builtin/tools.py" in IMPLEMENTATIONS["rlm_register_tools"]
    assert all("/tests/" not in f for files in IMPLEMENTATIONS.values() for f in files)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_hookspec_is_implemented_by_a_real_plugin(name):
    assert IMPLEMENTATIONS.get(name), (
        f"no plugin under the repository's src/ trees implements {name} with @hookimpl "
        "(an implementation in a test or in plugins/_template does not count)")
