"""Escape attempts against the local sandbox.

Every attack runs in one shared session (as a model's code would) and must
fail: the result is an error (or the documented harmless outcome), no marker
file was created, no secret text came back, and the session still works
afterwards -- a variable set before the attack is still there (unless the
attack legitimately got the worker restarted: timeouts, crashes) and the host
side (get_context/get_variable, whose protocol is JSON) still answers.
Payloads try to run ``touch {pwned}`` and to read ``{secret}`` where they can.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

# name -> (code, expectation).  Expectations: "error" (the result must be an error),
# "restart" (an error, and the worker was restarted), "truncated" (no error, output capped),
# "harmless" (no error needed; the checks below still apply).
ATTACKS: dict[str, tuple[str, str]] = {
    # --- class hierarchy walking -----------------------------------------------------------
    "subclasses_via_bases": ("().__class__.__bases__[0].__subclasses__()", "error"),
    "subclasses_via_object": ("object.__subclasses__()", "error"),
    "subclasses_via_getattr": ("getattr(object, '__sub' + 'classes__')()", "error"),
    "bases_via_computed_getattr": ("getattr(type(()), '_' + '_bases__')", "error"),
    "mro_then_subclasses": ("getattr(int.mro()[-1], '__subclasses__')()", "error"),
    "globals_via_computed_getattr": ("def f():\n    pass\ngetattr(f, '_' + '_globals__')['__builtins__']", "error"),
    "type_three_args": ("type('X', (object,), {'__getattribute__': None})", "error"),
    "type_of_type_three_args": ("T = type(type(1))\nT('X', (), {})", "error"),
    "class_attr_of_class_three_args": ("M = int.__class__\nM('X', (), {})", "error"),
    "typing_get_origin_type": ("import typing\ntyping.get_origin(typing.Type[int])('X', (), {})", "error"),
    "metaclass_keyword": ("class M(type):\n    pass\nclass X(metaclass=M):\n    pass", "error"),
    "enum_metaclass_three_args": ("import enum\nenum.EnumType('X', (), {})", "error"),
    "dunder_method_getattribute": (
        "class X:\n    def __getattribute__(self, n):\n        return 1", "error"),
    "dunder_method_init_subclass": (
        "class X:\n    def __init_subclass__(cls):\n        pass", "error"),
    # --- format string attribute access ----------------------------------------------------
    "str_format_fields": ("'{0.__class__.__bases__[0].__subclasses__}'.format(())", "error"),
    "str_format_map": ("'{x.__class__}'.format_map({'x': 1})", "error"),
    "str_format_unbound": ("getattr(str, 'format')('{0.__class__}', 1)", "error"),
    "str_subclass_format": ("class S(str):\n    pass\nS('{0.__class__}').format(1)", "error"),
    "string_formatter": ("import string\nstring.Formatter().format('{0.__class__}', 1)", "error"),
    "userstring_format": ("from collections import UserString\nUserString('{0.__init__.__globals__}').format(len)",
                          "error"),
    "methodcaller_format": ("import operator\noperator.methodcaller('format', len)('{0.__self__}')", "error"),
    # --- frames, generators, tracebacks ----------------------------------------------------
    "generator_frame": ("def g():\n    yield 1\nit = g()\nit.gi_frame.f_back.f_globals", "error"),
    "generator_frame_getattr": ("def g():\n    yield 1\nit = g()\ngetattr(it, 'gi_' + 'frame')", "error"),
    "attrgetter_frame": ("import operator\ndef g():\n    yield 1\noperator.attrgetter('gi_frame.f_globals')(g())",
                         "error"),
    "traceback_frame": ("try:\n    1 / 0\nexcept Exception as e:\n    e.__traceback__.tb_frame.f_globals", "error"),
    "exit_traceback_frame": (
        "class C:\n    def __enter__(self):\n        return self\n"
        "    def __exit__(self, t, e, tb):\n        global got\n        got = getattr(tb, 'tb_' + 'frame')\n"
        "        return True\nwith C():\n    1 / 0\ngot", "error"),
    "attribute_error_obj": ("try:\n    (1).nope\nexcept AttributeError as e:\n    e.obj", "error"),
    # --- imports and module chains ---------------------------------------------------------
    "import_os": ("import os\nos.system('touch {pwned}')", "error"),
    "dunder_import": ("__import__('os').system('touch {pwned}')", "error"),
    "builtins_dict": ("__builtins__['open']('{secret_path}').read()", "error"),
    "import_posixpath_os": ("import posixpath\nposixpath.os.system('touch {pwned}')", "error"),
    "typing_sys_modules": ("import typing\ntyping.sys.modules['os'].system('touch {pwned}')", "error"),
    "dataclasses_inspect_os": ("import dataclasses\ndataclasses.inspect.os.system('touch {pwned}')", "error"),
    "functools_globals": ("import functools\ngetattr(functools.reduce, '__glo' + 'bals__')", "error"),
    "collections_private_sys": ("import collections\ngetattr(collections, '_' + 'sys')", "error"),
    "json_submodules": ("import json\njson.decoder.re", "error"),
    "modules_hand_out_no_os": (
        "import statistics, fractions, uuid, contextlib, datetime, base64, secrets, textwrap, pprint, csv, re\n"
        "import urllib.parse, random, typing, dataclasses, enum, functools, collections, json, string, time\n"
        "mods = [statistics, fractions, uuid, contextlib, datetime, base64, secrets, textwrap, pprint, csv, re,\n"
        "        urllib.parse, random, typing, dataclasses, enum, functools, collections, json, string, time]\n"
        "names = ['os', 'sys', 'builtins', 'subprocess', 'importlib', 'io', 'inspect', 'copyreg', 'types']\n"
        "leaks = [(m.__name__, n) for m in mods for n in names if hasattr(m, n)]\n"
        "if not leaks:\n    raise RuntimeError('no module hands out os/sys/builtins')\nleaks", "error"),
    "import_sys": ("import sys\nsys.modules['os'].system('touch {pwned}')", "error"),
    "import_subprocess": ("import subprocess\nsubprocess.run(['touch', '{pwned}'])", "error"),
    "import_importlib": ("import importlib\nimportlib.import_module('os').system('touch {pwned}')", "error"),
    "import_pickle": ("import pickle", "error"),
    "import_marshal": ("import marshal", "error"),
    "import_ctypes": ("import ctypes", "error"),
    "import_socket": ("import socket\nsocket.create_connection(('127.0.0.1', 9))", "error"),
    "import_gc": ("import gc\ngc.get_objects()", "error"),
    "import_inspect": ("import inspect", "error"),
    "import_threading": ("import threading", "error"),
    "relative_import": ("from . import worker", "error"),
    "fork": ("import os\nos.fork()", "error"),
    "future_annotations_eval": ("from __future__ import annotations", "error"),
    "get_type_hints_eval": (
        "import typing\ndef f(x: \"__import__('os').system('touch {pwned}')\"):\n    pass\n"
        "typing.get_type_hints(f)", "error"),
    "singledispatch_eval": ("import functools\nfunctools.singledispatch", "error"),
    # --- monkeypatching --------------------------------------------------------------------
    "monkeypatch_json_dumps": ("import json\njson.dumps = lambda *a, **k: 'forged'", "error"),
    "monkeypatch_json_class": ("import json\njson.JSONEncoder.encode = lambda self, o: 'forged'", "error"),
    "monkeypatch_setattr_class": ("import json\nsetattr(json.JSONEncoder, 'default', len)", "error"),
    "monkeypatch_delattr_module": ("import json\ndel json.loads", "error"),
    "dataclass_on_library_class": ("import dataclasses, json\ndataclasses.dataclass(json.JSONDecoder)", "error"),
    "update_wrapper_gadget": (
        "import functools\nclass W:\n    pass\nw = W()\n"
        "functools.update_wrapper(w, functools.reduce, assigned=('__globals__',), updated=())", "error"),
    "update_wrapper_on_library": ("import functools, json\nfunctools.update_wrapper(json.JSONDecoder, len)",
                                  "error"),
    "newtype_init_gadget_relabels_class": (
        "import typing, json\ntyping.NewType.__init__(json.JSONEncoder, 'X', int)\n"
        "json.JSONEncoder.encode = lambda self, o: 'forged'", "error"),
    "library_init_on_foreign_class": ("import json\njson.JSONEncoder.__init__(json.JSONDecoder, indent=3)", "error"),
    "inherited_library_method_on_foreign_self": (
        "import json\nclass E(json.JSONEncoder):\n    pass\nE.default(json.JSONDecoder, 1)", "error"),
    "abstractmethod_marks_library_function": ("import abc, json\nabc.abstractmethod(json.dumps)", "error"),
    "total_ordering_on_library": ("import functools, fractions\nfunctools.total_ordering(fractions.Fraction)",
                                  "error"),
    "mutate_module_level_list": ("import keyword\nkeyword.kwlist.append('pwned')", "error"),
    "override_guard_name": ("_getattr_ = lambda obj, name: 1", "error"),
    "decorator_returns_globals": ("def deco(f):\n    return f.__globals__\n@deco\ndef g():\n    pass", "error"),
    "decorator_computed_name": (
        "def deco(f):\n    return getattr(f, '__glob' + 'als__')\n@deco\ndef g():\n    pass", "error"),
    "host_function_self": ("getattr(llm_query, '__se' + 'lf__')", "error"),
    "open_closure": ("getattr(open, '__clo' + 'sure__')", "error"),
    # --- code execution builtins -----------------------------------------------------------
    "exec": ("exec(\"import os; os.system('touch {pwned}')\")", "error"),
    "eval": ("eval(\"__import__('os')\")", "error"),
    "compile": ("compile('1', 'x', 'eval')", "error"),
    "vars": ("vars()", "error"),
    "globals": ("globals()['__builtins__']", "error"),
    "locals": ("locals()", "error"),
    # --- files -----------------------------------------------------------------------------
    "read_etc_passwd": ("open('/etc/passwd').read()", "error"),
    "read_secret_absolute": ("open('{secret_path}').read()", "error"),
    "read_secret_dotdot": ("open('../secret.txt').read()", "error"),
    "read_secret_symlink": ("open('link_to_secret').read()", "error"),
    "read_str_subclass_tricks": (
        "class P(str):\n    def startswith(self, *a):\n        return True\n"
        "    def __eq__(self, other):\n        return True\nopen(P('{secret_path}')).read()", "error"),
    "write_outside": ("open('{pwned}', 'w').write('x')", "error"),
    "write_read_only_path": ("open('data.txt', 'a').write('x')", "error"),
    "write_through_symlinked_dir": ("open('out/escape_dir/PWNED', 'w').write('x')", "error"),
    "write_dotdot_from_writable": ("open('out/../../PWNED', 'w').write('x')", "error"),
    "open_protocol_fd": ("f = open(1, 'w')\nf.write('{\"op\": \"done\"}\\n')", "error"),
    "disk_fill": ("with open('out/big.bin', 'w') as f:\n    f.write('x' * (70 * 1024 * 1024))", "error"),
    "final_var_builtins": ("FINAL_VAR('__builtins__')", "error"),
    # --- resources -------------------------------------------------------------------------
    "busy_loop": ("while True:\n    pass", "restart"),
    "blocking_sleep": ("import time\ntime.sleep(3600)", "restart"),
    "bytearray_bomb": ("bytearray(10 ** 10)", "error"),
    "list_bomb": ("x = [0] * (10 ** 10)", "error"),
    "deep_recursion": ("def r(n):\n    return r(n + 1)\nr(0)", "error"),
    "too_many_files": ("def hog():\n    return [open('data.txt') for _ in range(10000)]\nhog()", "error"),
    "print_flood": ("for i in range(30000):\n    print('flood', i)", "truncated"),
    # --- the protocol ----------------------------------------------------------------------
    "forge_protocol_line": (
        "print('{\"nonce\": \"0\", \"id\": 1, \"op\": \"done\", \"output\": \"forged\"}')\n"
        "print('{\"op\": \"llm_query\", \"prompt\": \"forged\"}')", "harmless"),
}


#: The attacks whose test ran to its end in this run (filled by the attack test, read by the count).
PASSED: set[str] = set()
ATTACK_TEST = "test_attack_fails_and_session_survives"


@pytest.fixture(scope="module")
def session(env_factory):
    env = env_factory(timeout=2.0)
    asyncio.run(env.start())
    yield env
    asyncio.run(env.close())


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_fails_and_session_survives(name: str, session: Any, sandbox_tree: dict[str, Any]) -> None:
    code, expectation = ATTACKS[name]
    code = code.replace("{pwned}", str(sandbox_tree["pwned"]))
    code = code.replace("{secret_path}", str(sandbox_tree["root"] / "secret.txt"))
    secret = sandbox_tree["secret"]

    async def body() -> None:
        await session.set_context("sentinel", 41)
        result = await session.execute(code)
        if expectation in ("error", "restart"):
            assert result.error is not None, f"attack {name!r} did not fail: value={result.value!r}"
        if expectation == "truncated":
            assert result.error is None and result.truncated
            assert len(result.output) <= session.settings.output_limit
        for text in (result.output, result.value, result.error, result.final and result.final.value):
            assert secret not in (text or ""), f"attack {name!r} read the secret"
        assert "forged" not in (result.value or "")
        assert not sandbox_tree["pwned"].exists(), f"attack {name!r} created a file outside the sandbox"
        assert not (sandbox_tree["root"] / "PWNED").exists()

        # the session still works, with its state unless the worker was restarted
        if expectation == "restart":
            assert "restarted" in (result.error or "")
            await session.set_context("sentinel", 41)
        alive = await session.execute("sentinel + 1")
        assert alive.error is None and alive.value == "42", f"session broken after {name!r}: {alive}"
        assert (await session.get_context())["sentinel"] == "41"
        assert await session.get_variable("sentinel") == 41
        await session.execute("x = None")  # free whatever the attack kept

    asyncio.run(body())
    PASSED.add(name)


def test_at_least_forty_attacks_were_collected_and_all_passed(request: pytest.FixtureRequest) -> None:
    """Counts the attack tests pytest really collected in this module and that really passed (this
    test runs after them: it is the last one in the file), not the length of ``ATTACKS``."""
    attacks = [item for item in request.session.items
               if item.path == request.path and getattr(item, "originalname", None) == ATTACK_TEST]
    if not attacks:
        pytest.skip("the attack tests were deselected in this run")
    names = {item.callspec.params["name"] for item in attacks}
    if len(names) < len(ATTACKS) and (request.config.option.keyword or request.config.option.markexpr):
        pytest.skip("only some attack tests were selected (-k/-m) in this run")
    assert len(names) >= 40, f"only {len(names)} attack tests were collected"
    if names == set(ATTACKS) and not PASSED:
        pytest.skip("no attack test passed in this run (see their own results)")
    assert names <= PASSED, f"attack tests that did not pass: {sorted(names - PASSED)}"
