"""Unit tests of the worker-side pieces, in-process: compile policy, guards, module proxies,
and (in a subprocess, since audit hooks cannot be removed) the audit hook."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types

import pytest

from rlm_env_local import guards
from rlm_env_local.modules import RULES, ModuleGate, is_forbidden_value
from rlm_env_local.policy import CellSyntaxError, compile_cell


# --- policy --------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [
    "_x = 1", "x.__dict__", "exec('1')", "from __future__ import annotations", "async def f():\n    pass",
    "class A:\n    def __del__(self):\n        pass", "class A(metaclass=type):\n    pass",
    "def f():\n    x = 1\n    def g():\n        nonlocal x", "x.gi_frame",
])
def test_policy_refuses(code):
    with pytest.raises(CellSyntaxError, match="SyntaxError"):
        compile_cell(code, "<cell test>")


@pytest.mark.parametrize("code", [
    "x: int = 1", "class A:\n    def __repr__(self):\n        return 'A'\n    def __len__(self):\n        return 0",
    "class B(A):\n    def __init__(self):\n        super().__init__()", "f.__name__", "print(x.__class__.__name__)",
])
def test_policy_allows(code):
    compile_cell(code, "<cell test>")


def test_syntax_error_names_the_line():
    with pytest.raises(CellSyntaxError, match="line 2"):
        compile_cell("x = 1\ndef (:", "<cell test>")


# --- guards --------------------------------------------------------------------------------


def test_safe_type():
    assert guards.SafeType(3) is int
    assert guards.SafeType(int) is guards.SafeType
    assert isinstance(int, guards.SafeType) and not isinstance(3, guards.SafeType)
    assert issubclass(type, guards.SafeType)
    with pytest.raises(guards.SandboxViolation):
        guards.SafeType("X", (), {})
    import enum

    class Color(enum.Enum):
        RED = 1

    assert guards.safe_type(Color) is guards.SafeType  # no metaclass handed out
    assert guards.mask_metaclass(enum.EnumMeta) is guards.SafeType


def test_getattr_guard():
    with pytest.raises(AttributeError):
        guards.guarded_getattr(len, "__self__")
    with pytest.raises(AttributeError):
        guards.guarded_getattr((x for x in ()), "gi_frame")
    with pytest.raises(guards.SandboxViolation):
        guards.guarded_getattr("{0}", "format")
    with pytest.raises(TypeError):
        guards.guarded_getattr(1, type("S", (str,), {})("real"))  # only exact str names
    assert guards.guarded_getattr(1, "__class__") is int
    assert guards.guarded_getattr(int, "__class__") is guards.SafeType
    assert guards.guarded_getattr(1, "missing", "default") == "default"
    assert guards.guarded_hasattr(1, "real") and not guards.guarded_hasattr(1, "__class__x")


def test_write_guard():
    cls = guards.class_factory("User", (), {})
    guards.guarded_setattr(cls, "attr", 1)
    guards.guarded_setattr(cls(), "attr", 2)
    guards.guarded_write({})
    for target in (json, json.JSONEncoder, json.dumps, len, guards.SafeType):
        with pytest.raises(guards.SandboxViolation):
            guards.guarded_write(target)
    with pytest.raises(AttributeError):
        guards.guarded_setattr(cls, "__init__", None)


def test_inplacevar():
    assert guards.guarded_inplacevar("+=", 1, 2) == 3
    items = [1]
    assert guards.guarded_inplacevar("+=", items, [2]) is items and items == [1, 2]
    with pytest.raises(SyntaxError):
        guards.guarded_inplacevar("=", 1, 2)


# --- module proxies ------------------------------------------------------------------------


def _reachable_problems(gate: ModuleGate) -> list[tuple[str, ...]]:
    proxies = {id(gate.proxy(name)) for name in gate.rules}
    problems: list[tuple[str, ...]] = []
    for name in gate.rules:
        for attr, value in vars(gate.proxy(name)).items():
            if attr.startswith("__"):
                continue
            if isinstance(value, types.ModuleType) and id(value) not in proxies:
                problems.append((name, attr, "real module"))
            if is_forbidden_value(value):
                problems.append((name, attr, "forbidden"))
            for inner in dir(value):
                if inner.startswith("_"):
                    continue
                try:
                    member = getattr(value, inner)
                except Exception:  # noqa: BLE001
                    continue
                if isinstance(member, types.ModuleType) and id(member) not in proxies:
                    problems.append((name, attr, inner, "real module"))
                elif is_forbidden_value(member):
                    problems.append((name, attr, inner, "forbidden"))
    return problems


def test_no_public_chain_from_an_allowed_module_to_os_sys_or_builtins():
    assert _reachable_problems(ModuleGate()) == []


def test_proxies_hold_only_the_public_api():
    gate = ModuleGate()
    time_proxy = gate.proxy("time")
    assert sorted(k for k in vars(time_proxy) if not k.startswith("__")) == [
        "monotonic", "perf_counter", "sleep", "time"]
    assert gate.proxy("json") is not json
    assert not hasattr(gate.proxy("json"), "decoder")
    assert not hasattr(gate.proxy("string"), "Formatter")
    assert not hasattr(gate.proxy("functools"), "singledispatch")
    assert gate.import_("collections.abc").abc is gate.proxy("collections.abc")
    assert gate.import_("urllib.parse").parse.quote("a b") == "a%20b"
    for name in ("os", "sys", "subprocess", "importlib", "builtins", "pickle", "marshal", "posixpath"):
        with pytest.raises(ImportError, match="not allowed"):
            gate.import_(name)


def test_module_level_containers_are_read_only_copies():
    gate = ModuleGate()
    import keyword

    assert gate.proxy("keyword").kwlist == tuple(keyword.kwlist)
    assert isinstance(gate.proxy("hashlib").algorithms_available, frozenset)


def test_allowlist_covers_the_documented_modules():
    for name in ("json", "re", "math", "datetime", "collections", "itertools", "functools", "statistics", "csv",
                 "decimal", "fractions", "string", "textwrap", "random", "hashlib", "base64", "dataclasses",
                 "typing", "difflib", "unicodedata", "urllib.parse", "time", "copy", "heapq", "bisect", "operator",
                 "enum"):
        assert name in RULES


def test_safe_operator_helpers():
    gate = ModuleGate()
    operator = gate.proxy("operator")

    class Obj:
        value = 3

    assert operator.attrgetter("value")(Obj()) == 3
    with pytest.raises(AttributeError):
        operator.attrgetter("__class__.__bases__")(Obj())
    assert operator.methodcaller("upper")("a") == "A"
    with pytest.raises(guards.SandboxViolation):
        operator.methodcaller("format", 1)("{0.__class__}")


# --- the audit hook (second line of defence) -----------------------------------------------


def test_audit_hook_blocks_what_the_guards_should_never_let_through(tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (tmp_path / "secret.txt").write_text("s")
    script = textwrap.dedent(f"""
        import json, os, sys
        from rlm_env_local.audit import AuditPolicy, install
        policy = AuditPolicy(read_roots=[{str(allowed)!r}], write_roots=[], lib_roots=[sys.prefix, sys.base_prefix])
        install(policy)
        results = {{}}
        def attempt(name, fn):
            try:
                fn()
                results[name] = "allowed"
            except (PermissionError, ImportError) as exc:
                results[name] = "blocked"
        attempt("os.system", lambda: os.system("true"))
        attempt("fork", lambda: os.fork())
        attempt("read outside", lambda: open({str(tmp_path / "secret.txt")!r}).read())
        attempt("write outside", lambda: open({str(tmp_path / "pwned")!r}, "w"))
        attempt("import ctypes", lambda: __import__("ctypes"))
        attempt("import socket", lambda: __import__("socket"))
        attempt("putenv", lambda: os.putenv("X", "1"))
        policy.take_user_switch()(True)
        def frame():
            try:
                1 / 0
            except ZeroDivisionError as exc:
                return exc.__traceback__.tb_frame
        attempt("tb_frame in user mode", frame)
        g = (x for x in [1])
        attempt("gi_frame in user mode", lambda: g.gi_frame)
        attempt("function.__new__ in user mode", lambda: type(frame)(frame.__code__, {{}}))
        sys.__stdout__.write(json.dumps(results))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    expected_blocked = ["os.system", "fork", "read outside", "write outside", "import ctypes", "import socket",
                        "putenv", "tb_frame in user mode", "gi_frame in user mode", "function.__new__ in user mode"]
    assert {k: results[k] for k in expected_blocked} == dict.fromkeys(expected_blocked, "blocked")
    assert not (tmp_path / "pwned").exists()
