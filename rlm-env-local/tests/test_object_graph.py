"""Object-graph attacks: reaching the sandbox's own machinery through what the REPL hands out.

The REPL gives user code objects (host functions, module proxies, guard
functions, library objects); library helpers that copy or walk object graphs
(``copy.deepcopy`` and its memo, ``dataclasses.asdict``, ``functools.partial``,
``super()``, exceptions, descriptors...) must not lead from them to the import
gate, the audit policy, the real builtins or the REPL object, and nothing
reached may widen the session's rights.

Each attack runs in the real worker, in one shared session, with a helper
``abuse(objects)`` defined first that tries every known widening on whatever
the attack got (reassigning roots, leaving user mode, adding modules to the
allowlist, raising the output cap).  After it, follow-up cells try to *use*
the rights: read the secret, create the canary, import ``sys``, print past the
output cap, and check ``json`` was not monkeypatched; all must fail or behave,
and the session must still compute.  In-process tests check that the policy
objects are immutable, that the host functions hold nothing but their channel,
and that no chain of public attributes, container items or copy states from
anything user code can name reaches the machinery.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import signal
import sys
import types
from typing import Any

import pytest

from rlm_env_local import guards
from rlm_env_local.audit import AuditPolicy
from rlm_env_local.modules import RULES, ModuleGate, Rule
from rlm_env_local.sandbox import Outcome, Output, Repl
from rlm_testing.environment_suite import FakeHostCallbacks

#: Defined before every attack: tries each known widening on the objects it is given.
ABUSE = '''
def abuse(objects):
    objects = list(objects)
    for o in list(objects):
        for name in ('audit', 'gate', 'rules', 'builtins', 'globals', 'host', 'output', 'stream', 'func', 'args',
                     'keywords', 'fget', 'fset', 'obj'):
            try:
                objects.append(getattr(o, name))
            except BaseException:
                pass
    for o in objects:
        for name, value in (('read_roots', ('/',)), ('write_roots', ('/',)), ('user_mode', False),
                            ('limit', 10 ** 9), ('restricted', False)):
            try:
                setattr(o, name, value)
            except BaseException:
                pass
        try:
            o.take_user_switch()(False)
        except BaseException:
            pass
        try:
            if 'json' in o:
                o['sys'] = o['json']
                o['os'] = o['json']
        except BaseException:
            pass
    return len(objects)

memo_seen = None

class Spy:
    def __deepcopy__(self, memo):
        global memo_seen
        memo_seen = memo
        return self
    def __copy__(self):
        return self

def memo_objects(*roots):
    """Everything deepcopy's memo exposed while copying ``roots`` (a Spy after each root)."""
    global memo_seen
    seen = []
    for root in roots:
        for order in ([root, Spy()], [Spy(), root]):
            memo_seen = None
            try:
                copy.deepcopy(order)
            except BaseException:
                pass
            if memo_seen is not None:
                seen.extend(memo_seen.values())
                for kept in memo_seen.values():
                    if type(kept) is list:
                        seen.extend(kept)
    return seen

import copy
'''

HELPERS = "[llm_query, llm_query_batched, FINAL, FINAL_VAR, open, getattr, setattr, type, dir, hasattr]"

# name -> (code, expectation): "error" (the cell must fail) or "any" (it may succeed harmlessly).
ATTACKS: dict[str, tuple[str, str]] = {
    # --- copy / deepcopy and its memo ----------------------------------------------------------
    "deepcopy_memo_of_llm_query": (
        "got = memo_objects(llm_query)\nabuse(got)\n"
        "any(type(x).__name__ in ('Repl', 'ModuleGate', 'AuditPolicy', 'Rule') for x in got)", "any"),
    "deepcopy_memo_of_every_helper": (f"got = memo_objects(*{HELPERS})\nabuse(got)", "any"),
    "deepcopy_memo_issue_example": (
        "got = None\nclass S:\n    def __deepcopy__(self, memo):\n        global got\n        got = memo[id(memo)]\n"
        "        return self\ncopy.deepcopy([llm_query, S()])\nabuse(got)\n"
        "repl = [x for x in got if type(x).__name__ == 'Repl'][0]\nrepl.audit.read_roots = ('/',)", "error"),
    "deepcopy_memo_after_failed_copy_of_gate": (
        "try:\n    copy.deepcopy([Spy(), llm_query])\nexcept Exception:\n    pass\n"
        "keep = memo_seen[id(memo_seen)] if memo_seen else []\n"
        "rules = [x for x in keep if type(x) is dict and 'json' in x][0]\nrules['sys'] = rules['json']\n"
        "import sys\nsys.modules['builtins'].getattr(llm_query, '__self__').audit", "error"),
    "deepcopy_memo_of_module_proxies": (
        "import json, functools, operator, dataclasses, typing, enum, pprint, string, collections\n"
        "got = memo_objects(json, functools, operator, dataclasses, typing, enum, pprint, string, collections)\n"
        "abuse(got)", "any"),
    "copy_copy_of_helpers": (
        f"got = [copy.copy(h) for h in {HELPERS}]\nabuse(got)\ngetattr(got[0], '__se' + 'lf__')", "error"),
    "deepcopy_pprint_stream_output": (
        "import pprint\ngot = memo_objects(pprint.PrettyPrinter())\nabuse(got)\n"
        "[x for x in got if type(x).__name__ in ('Output', 'Stream')][0].limit = 10 ** 9", "error"),
    "copy_reduce_ex_of_helper": (
        "import operator\noperator.methodcaller('__reduce_ex__', 4)(llm_query)", "error"),
    "class_with_reduce_ex": (
        "class R:\n    def __reduce_ex__(self, protocol):\n        return (getattr, (llm_query, '__self__'))\n"
        "copy.copy(R())", "error"),
    "getstate_setstate_spy": (
        "class G:\n    def __getstate__(self):\n        return {'h': llm_query, 'o': open}\n"
        "    def __setstate__(self, state):\n        global st\n        st = state\n"
        "copy.deepcopy(G())\nabuse(list(st.values()) + memo_objects(st))\ngetattr(st['h'], '__self__')", "error"),
    # --- gc, pickle ----------------------------------------------------------------------------
    "gc_referents_of_helper": ("import gc\ngc.get_referents(llm_query)", "error"),
    "pickle_helper": ("import pickle\npickle.dumps(llm_query)", "error"),
    "copyreg_reconstructor": ("import copyreg\ncopyreg.dispatch_table", "error"),
    # --- functools -------------------------------------------------------------------------------
    "partial_func_args_keywords": (
        "import functools\np = functools.partial(llm_query, 'a', k=open)\nabuse([p.func, p.args, p.keywords])\n"
        "abuse(memo_objects(p))\ngetattr(p.func, '__self__')", "error"),
    "partialmethod_func": (
        "import functools\npm = functools.partialmethod(FINAL)\nabuse([pm.func] + memo_objects(pm))\n"
        "getattr(pm.func, '__self__')", "error"),
    "wraps_partial_func": (
        "import functools\nw = functools.wraps(llm_query)\nabuse([w.func, w.args, w.keywords] + memo_objects(w))\n"
        "class W:\n    pass\nx = W()\nw.func(x, FINAL)\nabuse(memo_objects(x))\n"
        "getattr(x, '__wrap' + 'ped__')", "error"),
    "update_wrapper_copies_class_dict": (
        "import functools, typing, json\nclass W:\n    pass\nw = W()\nfunctools.update_wrapper(w, typing.NewType)\n"
        "w.__init__(json.JSONEncoder, 'X', int)\njson.JSONEncoder.encode = lambda self, o: 'forged'", "error"),
    "update_wrapper_from_helper": (
        "import functools\ndef f():\n    pass\nfunctools.update_wrapper(f, llm_query)\nabuse(memo_objects(f))\n"
        "getattr(f, '__wrap' + 'ped__')", "error"),
    "reduce_with_getattr": ("import functools\nfunctools.reduce(getattr, ['__self__', 'audit'], llm_query)", "error"),
    "lru_cache_of_helper": (
        "import functools\nc = functools.lru_cache(maxsize=None)(FINAL_VAR)\nabuse(memo_objects(c))\n"
        "c.cache_parameters()\ngetattr(c, '__wrap' + 'ped__')", "error"),
    "cached_property_func": (
        "import functools\nclass C:\n    x = functools.cached_property(llm_query)\n"
        "abuse([C.x, C.x.func] + memo_objects(C.x))\ngetattr(C.x.func, '__self__')", "error"),
    # --- operator --------------------------------------------------------------------------------
    "attrgetter_self": ("import operator\noperator.attrgetter('__self__.audit')(llm_query)", "error"),
    "attrgetter_closure": ("import operator\noperator.attrgetter('__closure__')(open)", "error"),
    "methodcaller_getattribute": (
        "import operator\noperator.methodcaller('__getattribute__', '__self__')(llm_query)", "error"),
    "itemgetter_on_memo": (
        "import operator\ngot = memo_objects(llm_query, open)\n"
        "abuse([operator.itemgetter('__builtins__')(x) for x in got if type(x) is dict])\n"
        "getattr(llm_query, '__glob' + 'als__')", "error"),
    # --- formatting --------------------------------------------------------------------------
    "str_format_self": ("'{0.__self__.audit}'.format(llm_query)", "error"),
    "string_formatter_get_field": (
        "import string\nstring.Formatter().get_field('0.__self__', [llm_query], {})", "error"),
    "format_map_globals": ("'{0.__globals__}'.format_map({'0': FINAL})", "error"),
    "fstring_repr_of_helpers": (f"text = f'{{{HELPERS}!r}}'\n'Repl' in text or 'bound method' in text", "any"),
    # --- super() -----------------------------------------------------------------------------
    "super_type_type_gadget": (
        "import typing, json\nclass N(typing.NewType):\n    pass\n"
        "super(N, N).__init__(json.JSONEncoder, 'X', int)\n"
        "json.JSONEncoder.encode = lambda self, o: 'forged'", "error"),
    "super_attributes": (
        "class A:\n    def f(self):\n        return super()\ns = A().f()\n"
        "abuse([s] + memo_objects(s))\ngetattr(s, '__self_cl' + 'ass__')", "error"),
    # --- exceptions ------------------------------------------------------------------------------
    "exception_from_helper": (
        "try:\n    FINAL_VAR(3)\nexcept TypeError as e:\n    err = e\n"
        "abuse([err, err.args] + memo_objects(err))\ngetattr(err, '__con' + 'text__')", "error"),
    "exception_traceback_of_helper_error": (
        "class C:\n    def __enter__(self):\n        return self\n"
        "    def __exit__(self, t, e, tb):\n        global got\n        got = (e, tb)\n        return True\n"
        "with C():\n    llm_query(3)\nabuse(list(got) + memo_objects(*got))\ngetattr(got[1], 'tb_' + 'next')", "error"),
    "final_exit_caught": (
        "try:\n    FINAL('x')\nexcept BaseException as e:\n    fe = e\n"
        "abuse([fe, type(fe), fe.args] + memo_objects(fe))\ngetattr(fe, '__trace' + 'back__')", "error"),
    "attribute_error_of_helper": (
        "try:\n    llm_query.nope\nexcept AttributeError as e:\n    err = e\n"
        "abuse([err.name, err.args] + memo_objects(err))\nerr.obj", "error"),
    "import_error_of_gate": (
        "try:\n    import os\nexcept ImportError as e:\n    err = e\n"
        "abuse([err.name, err.path, err.args] + memo_objects(err))\ngetattr(err, '__con' + 'text__')", "error"),
    # --- descriptors -------------------------------------------------------------------------
    "property_fget_of_library_class": (
        "import fractions, json\nfractions.Fraction.numerator.fget(json.JSONEncoder)", "error"),
    "property_wrapping_helpers": (
        "class C:\n    p = property(llm_query, FINAL, FINAL_VAR)\n"
        "abuse([C.p.fget, C.p.fset, C.p.fdel] + memo_objects(C.p))\ngetattr(C.p.fget, '__self__')", "error"),
    "classmethod_staticmethod_of_helpers": (
        "class C:\n    a = classmethod(llm_query)\n    b = staticmethod(FINAL)\n"
        "abuse([C.a, C.b] + memo_objects(C.a, C.b))\ngetattr(C.a, '__func__')", "error"),
    # --- each helper's public surface --------------------------------------------------------------
    "public_attributes_of_helpers": (
        f"got = [getattr(h, n) for h in {HELPERS} for n in dir(h)]\nabuse(got + memo_objects(*got))\n"
        "getattr(llm_query, '__globals__')", "error"),
    "print_to_spy_file": (
        "seen = []\nclass F:\n    def write(self, s):\n        seen.append(s)\nprint(llm_query, open, file=F())\n"
        "abuse(seen)\n'Repl' in ''.join(seen)", "any"),
    "open_defaults_and_closure": ("getattr(open, '__kwdef' + 'aults__')", "error"),
    "final_var_of_private_names": ("FINAL_VAR('__builtins__')", "error"),
    # --- dataclasses ---------------------------------------------------------------------------
    "dataclasses_asdict_memo": (
        "import dataclasses\n@dataclasses.dataclass\nclass D:\n    h: object\n    s: object\n"
        "d = dataclasses.asdict(D(llm_query, Spy()))\nabuse(list(memo_seen.values()) if memo_seen else [])\n"
        "getattr(d['h'], '__self__')", "error"),
    "dataclasses_field_renamed": (
        "import dataclasses\n@dataclasses.dataclass\nclass D:\n    h: object\n"
        "f = dataclasses.fields(D)[0]\nf.name = '__class__'\ngot = dataclasses.asdict(D(llm_query))\n"
        "abuse(list(got.values()) + memo_objects(*got.values()))\n"
        "dataclasses.replace(D(FINAL))", "error"),
    "dataclasses_fields_replace_helpers": ("import dataclasses\ndataclasses.fields(llm_query)", "error"),
    # --- pprint, reprlib -------------------------------------------------------------------------
    "pprint_of_helpers": (f"import pprint\ntext = pprint.pformat({HELPERS})\n'bound method' in text", "any"),
    "reprlib_import": ("import reprlib\nreprlib.aRepr", "error"),
    # --- enum, typing ----------------------------------------------------------------------------
    "enum_members_holding_helpers": (
        "import enum\nclass E(enum.Enum):\n    A = (llm_query,)\n    B = (open,)\n"
        "abuse([E.A.value, E.B.value] + memo_objects(E.A, E))\ngetattr(E.A.value[0], '__self__')", "error"),
    "enum_functional_api": (
        "import enum\nE = enum.Enum('E', {'a': 1})\nabuse(memo_objects(E.a))\n"
        "getattr(E, '_member' + '_map_')", "error"),
    "typing_args_of_helpers": (
        "import typing\nt = typing.Annotated[int, llm_query, FINAL]\ngot = list(typing.get_args(t))\n"
        "abuse(got + memo_objects(t))\ngetattr(got[1], '__self__')", "error"),
    "typing_get_origin_type": ("import typing\ntyping.get_origin(typing.Type[int])('X', (), {})", "error"),
}

FOLLOW_UPS: dict[str, str] = {
    "read the secret": "open('{secret_path}').read()",
    "create the canary": "open('{pwned}', 'w').write('x')",
    "import sys": "import sys\nsys.modules",
    "print past the cap": "print('y' * 20000)",
    "json is intact": "import json\njson.dumps([1])",
}


@pytest.fixture(scope="module")
def session(env_factory):
    env = env_factory(FakeHostCallbacks(), timeout=5.0)
    asyncio.run(env.start())
    yield env
    asyncio.run(env.close())


def test_there_are_at_least_thirty_attacks():
    assert len(ATTACKS) >= 30


def _fill(code: str, tree: dict[str, Any]) -> str:
    return code.replace("{pwned}", str(tree["pwned"])).replace("{secret_path}", str(tree["root"] / "secret.txt"))


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_object_graph_attack_gains_nothing(name: str, session: Any, sandbox_tree: dict[str, Any]) -> None:
    code, expectation = ATTACKS[name]
    secret = sandbox_tree["secret"]

    def assert_clean(result: Any, what: str) -> None:
        for text in (result.output, result.value, result.error, result.final and result.final.value):
            assert secret not in (text or ""), f"{what} read the secret"
        assert "Repl object" not in (result.value or "") and "bound method Repl" not in (result.value or "")
        assert not sandbox_tree["pwned"].exists(), f"{what} created the canary file"

    async def body() -> None:
        prelude = await session.execute(ABUSE)
        assert prelude.error is None, prelude.error
        result = await session.execute(_fill(code, sandbox_tree))
        if expectation == "error":
            assert result.error is not None, f"attack {name!r} did not fail: value={result.value!r}"
        else:
            assert result.value in (None, "False") or result.value.isdigit(), f"{name!r} leaked: {result.value!r}"
        assert_clean(result, f"attack {name!r}")

        follow = {what: await session.execute(_fill(cell, sandbox_tree)) for what, cell in FOLLOW_UPS.items()}
        for what, res in follow.items():
            assert_clean(res, f"{what!r} after {name!r}")
        for what in ("read the secret", "create the canary", "import sys"):
            assert follow[what].error is not None, f"after {name!r}, {what!r} succeeded"
        capped = follow["print past the cap"]
        assert capped.truncated and len(capped.output) <= session.settings.output_limit, \
            f"after {name!r} the output cap was lifted"
        assert follow["json is intact"].value == "'[1]'", f"after {name!r} json was tampered with"

        await session.execute("x = 6*7")
        alive = await session.execute("x")
        assert alive.error is None and alive.value == "42", f"session broken after {name!r}: {alive}"

    asyncio.run(body())


# --- in-process checks ---------------------------------------------------------------------------


def test_audit_policy_is_immutable():
    policy = AuditPolicy(read_roots=["/tmp"], write_roots=[], lib_roots=[])
    roots = policy.read_roots
    for name, value in (("read_roots", ("/",)), ("write_roots", ("/",)), ("user_mode", False), ("other", 1)):
        with pytest.raises(AttributeError, match="immutable"):
            setattr(policy, name, value)
    with pytest.raises(AttributeError, match="immutable"):
        del policy.read_roots
    assert policy.read_roots == roots
    with pytest.raises(TypeError, match="cannot be copied"):
        copy.deepcopy(policy)
    with pytest.raises(TypeError, match="cannot be copied"):
        copy.copy(policy)
    switch = policy.take_user_switch()
    switch(True)
    assert policy.user_mode is True
    with pytest.raises(RuntimeError, match="already handed out"):
        policy.take_user_switch()
    switch(False)
    assert policy.user_mode is False


def test_module_gate_and_rules_are_immutable():
    gate = ModuleGate(["colorsys"])
    assert isinstance(gate.rules, types.MappingProxyType) and isinstance(RULES, types.MappingProxyType)
    with pytest.raises(TypeError):
        gate.rules["os"] = Rule()  # type: ignore[index]
    with pytest.raises(TypeError):
        RULES["os"] = Rule()  # type: ignore[index]
    with pytest.raises(AttributeError, match="immutable"):
        gate.rules = {}  # type: ignore[misc]
    rule = gate.rules["functools"]
    for name, value in (("only", None), ("exclude", frozenset()), ("replace", {})):
        with pytest.raises(AttributeError, match="immutable"):
            setattr(rule, name, value)
    with pytest.raises(TypeError):
        rule.replace["wraps"] = lambda real: real  # type: ignore[index]
    for target in (gate, rule):
        with pytest.raises(TypeError, match="cannot be copied"):
            copy.deepcopy(target)
    with pytest.raises(ImportError, match="not allowed"):
        gate.import_("os")


def _repl(**overrides: Any) -> Repl:
    values: dict[str, Any] = {
        "gate": ModuleGate(), "audit": AuditPolicy(read_roots=["/tmp"], write_roots=[], lib_roots=[]),
        "host": lambda op, payload: {"ok": True, "value": "answer"}, "has_callbacks": True,
        "read_roots": ["/tmp"], "write_roots": [], "workdir": "/tmp", "output_limit": 1000}
    values.update(overrides)
    return Repl(**values)


def test_host_functions_are_closures_over_their_channel_only():
    repl = _repl()
    namespace = repl.globals["__builtins__"]
    gate_and_co = (Repl, ModuleGate, AuditPolicy, Rule, Output, types.ModuleType, types.MethodType)
    for name in ("llm_query", "llm_query_batched", "FINAL", "FINAL_VAR", "open", "__import__", "_rlm_display_"):
        fn = namespace[name]
        assert type(fn) is types.FunctionType, f"{name} must be a plain function, not {type(fn).__name__}"
        for cell in fn.__closure__ or ():
            held = cell.cell_contents
            assert not isinstance(held, gate_and_co) or (name == "__import__" and callable(held)), (name, held)
            assert held is not namespace and held is not builtins.__dict__, f"{name} holds the builtins"
    for name in ("llm_query", "llm_query_batched", "FINAL", "FINAL_VAR", "_rlm_display_"):
        held = [c.cell_contents for c in namespace[name].__closure__ or ()]
        assert all(isinstance(h, (types.FunctionType, Outcome, dict, bool, int)) for h in held), (name, held)
    with pytest.raises(TypeError, match="cannot be copied"):
        copy.deepcopy(repl)


#: How many steps the reachability walk follows (it found everything within 9 when written).
WALK_DEPTH = 16


def _reachable_from_user_code(repl: Repl, gate: ModuleGate) -> tuple[list[tuple[str, str]], int]:
    """Walk from every builtin and module proxy (and from a no-argument instance of every
    library class reached) along guarded public attributes, container items and
    ``__reduce_ex__`` states -- what deepcopy's memo exposes -- for :data:`WALK_DEPTH` steps.
    Returns what was found that belongs to the machinery, and how many objects were walked."""
    namespace = repl.globals["__builtins__"]
    proxies = {id(gate.proxy(n)) for n in gate.rules}
    machinery = (Repl, ModuleGate, AuditPolicy, Rule, Output, Outcome)
    special = {id(builtins): "the real builtins module", id(namespace): "the REPL's builtins",
               id(builtins.__dict__): "the real builtins", id(repl.globals): "the user globals",
               id(type): "type", id(gate.rules): "the gate's rules", id(sys): "sys"}
    scalars = (int, float, complex, str, bytes, bool, type(None))
    atomic = (type, types.FunctionType, types.BuiltinFunctionType, int, float, str, bytes, bool, type(None),
              complex, range, property, types.WrapperDescriptorType, types.MethodDescriptorType,
              types.MethodWrapperType, list, tuple, dict, set, frozenset)
    seen: dict[int, Any] = {}
    found: list[tuple[str, str]] = []
    classes: list[tuple[str, type]] = []

    def walk(frontier: list[tuple[str, Any]]) -> None:
        for _depth in range(WALK_DEPTH):  # bounded: ``ChainMap().parents`` is a new object each time
            following: list[tuple[str, Any]] = []
            for path, obj in frontier:
                if id(obj) in seen:
                    continue
                seen[id(obj)] = obj  # keeps it alive: ids stay unique
                if isinstance(obj, machinery) or id(obj) in special or (
                        isinstance(obj, types.ModuleType) and id(obj) not in proxies):
                    found.append((path, special.get(id(obj), type(obj).__name__)))
                    continue
                if isinstance(obj, scalars):  # leaves: ``(0.0).imag`` is a new float each time
                    continue
                if isinstance(obj, types.FunctionType) and not guards.is_user_function(obj) \
                        and guards._method_owner(obj) is not None:
                    found.append((path, f"unchecked library method {obj.__qualname__}"))
                if isinstance(obj, type):
                    classes.append((path, obj))
                if isinstance(obj, (list, tuple, set, frozenset)):
                    following += [(f"{path}[{i}]", v) for i, v in enumerate(obj)]
                elif isinstance(obj, (dict, types.MappingProxyType)):
                    following += [(f"{path}[{k!r}]", v) for k, v in list(obj.items())]
                    following += [(f"{path}<key>", k) for k in obj]
                if isinstance(obj, types.ModuleType):
                    following += [(f"{path}.{k}", v) for k, v in vars(obj).items() if not k.startswith("_")]
                    continue
                for attr in guards.guarded_dir(obj):
                    try:
                        following.append((f"{path}.{attr}", guards.guarded_getattr(obj, attr)))
                    except BaseException:  # noqa: BLE001 - refused or raising: not reachable this way
                        pass
                if not isinstance(obj, atomic):
                    try:
                        reduced = type(obj).__reduce_ex__(obj, 4)
                    except BaseException:  # noqa: BLE001 - not copyable: copy stops here
                        reduced = None
                    if isinstance(reduced, tuple):
                        following += [(f"{path}<reduce {i}>", v) for i, v in enumerate(reduced[1:3])]
            frontier = following

    walk([(f"builtins[{k!r}]", v) for k, v in namespace.items()] + [(n, gate.proxy(n)) for n in gate.rules])
    instances: list[tuple[str, Any]] = []
    for path, cls in classes:
        if issubclass(cls, BaseException) or guards.is_user_class(cls):
            continue
        signal.alarm(2)
        try:
            instances.append((f"{path}()", cls()))
        except BaseException:  # noqa: BLE001 - needs arguments, abstract...
            pass
        finally:
            signal.alarm(0)
    walk(instances)
    return found, len(seen)


def test_nothing_reachable_from_user_code_leads_to_the_machinery():
    gate = ModuleGate()
    repl = _repl(gate=gate)
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = repl.stream  # as in the worker: library objects keep sys.stdout
    try:
        found, walked = _reachable_from_user_code(repl, gate)
    finally:
        sys.stdout, sys.stderr = saved
    assert walked > 5000  # the walk really covered the modules
    assert found == []


def test_library_methods_read_without_their_class_are_checked():
    import fractions
    import functools
    import json

    getter = guards.guarded_getattr(guards.guarded_getattr(fractions.Fraction, "numerator"), "fget")
    assert getter(fractions.Fraction(3, 4)) == 3
    with pytest.raises(TypeError, match="must be called with a Fraction instance"):
        getter(json.JSONEncoder)
    func = guards.guarded_getattr(functools.partial(json.JSONEncoder.encode), "func")
    with pytest.raises(TypeError, match="JSONEncoder instance"):
        func(json.JSONDecoder, 1)
    assert guards.guarded_getattr(functools.partial(json.dumps), "func") is json.dumps  # plain functions as they are


def test_unrestricted_repl_runs_plain_python():
    """The test-only switch: no RestrictedPython, no guards, no gate -- real builtins plus the host functions."""
    repl = _repl(audit=None, restricted=False)
    result = repl.run("import os\n_hidden = type(os).__name__\nx = [1].__class__.__mro__\n(_hidden, llm_query('q'))")
    assert result["error"] is None, result["error"]
    assert result["value"] == "('module', 'answer')"
    assert repl.run("print('hi')\nFINAL_VAR('x')")["final"]["variable"] == "x"
    assert repl.run("FINAL(6 * 7)")["final"]["value"] == "42"
    assert "SyntaxError" in repl.run("def (:")["error"]
    restricted = _repl()
    assert restricted.run("import os")["error"] is not None
    assert "invalid attribute name" in restricted.run("[1].__class__.__mro__")["error"]
