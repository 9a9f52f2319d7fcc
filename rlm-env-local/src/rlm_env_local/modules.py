"""The import allowlist and the module proxies code receives instead of real modules.

``import json`` inside the REPL gets a fresh module object holding only the
public API of ``json`` (its ``__all__``, or its public names), with nested
modules replaced by their proxies when allowed and dropped otherwise, and
with a few dangerous members removed or replaced by guarded versions (see
:data:`RULES`).  No proxy holds a reference to the real module, so no chain of
public attributes leads to ``os``, ``sys``, ``builtins``, ``importlib`` or
files.  Proxies are read-only (``_write_`` refuses modules).  The gate and its
rules are immutable once built and cannot be copied, and the guarded
replacements keep no public (or ``__wrapped__``) link to the real function
they guard.  Runs inside the worker process.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import types
from collections.abc import Callable, Iterable
from typing import Any

from rlm_repl.repl_server import Sealed

from rlm_env_local.allowlist import check_extra_module
from rlm_env_local.guards import (
    SandboxViolation,
    check_writable,
    guarded_getattr,
    is_user_class,
    is_user_function,
    mask_metaclass,
)

#: Builtins a module must never hand out, by identity.
_FORBIDDEN_OBJECTS = {id(o) for o in (
    builtins.eval, builtins.exec, builtins.compile, builtins.open, builtins.__import__, builtins.getattr,
    builtins.setattr, builtins.delattr, builtins.globals, builtins.locals, builtins.vars, builtins.input,
    builtins.breakpoint, builtins.type,
)}
_DANGEROUS_FUNCTION_MODULES = frozenset({
    "os", "posix", "nt", "sys", "subprocess", "builtins", "importlib", "_io", "io", "socket", "shutil",
    "ctypes", "inspect", "gc", "marshal", "pickle", "_pickle", "signal", "_thread", "threading",
    "runpy", "pty", "_posixsubprocess", "_imp", "importlib._bootstrap",
})


class _Frozen(Sealed):
    """Base of the gate's objects: attributes are set once, in ``__init__``; no copies."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name!r} "
                             "(the import allowlist is fixed when the worker starts)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}")


class Rule(_Frozen):
    """How one module is exposed: ``only`` (exact names) or its public API minus ``exclude``;
    ``replace`` maps names to functions ``(real_value) -> exposed_value``.  Immutable."""

    __slots__ = ("exclude", "only", "replace")

    def __init__(self, *, only: Iterable[str] | None = None, exclude: Iterable[str] = (),
                 replace: dict[str, Callable[[Any], Any]] | None = None) -> None:
        object.__setattr__(self, "only", tuple(only) if only is not None else None)
        object.__setattr__(self, "exclude", frozenset(exclude))
        object.__setattr__(self, "replace", types.MappingProxyType(dict(replace or {})))


def _named_like(fn: Callable[..., Any], real: Any) -> Callable[..., Any]:
    """Give the guarded ``fn`` the name and doc of ``real`` -- but no ``__wrapped__`` link to it."""
    for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
        try:
            setattr(fn, attr, getattr(real, attr))
        except (AttributeError, TypeError):
            pass
    return fn


# --- guarded replacements ----------------------------------------------------------------------


def _safe_update_wrapper(real: Callable[..., Any]) -> Callable[..., Any]:
    assigned_default = functools.WRAPPER_ASSIGNMENTS
    updated_default = functools.WRAPPER_UPDATES

    def update_wrapper(wrapper: Any, wrapped: Any, assigned: Any = assigned_default,
                       updated: Any = updated_default) -> Any:
        if not set(assigned) <= set(assigned_default) or not set(updated) <= set(updated_default):
            raise SandboxViolation("functools.update_wrapper/wraps: only the default assigned= and "
                                   "updated= attributes are allowed in the sandbox")
        if isinstance(wrapped, type):
            raise SandboxViolation("functools.update_wrapper/wraps cannot wrap a class in the sandbox (it would "
                                   "copy the class's __dict__, raw methods included); wrap a function")
        check_writable(wrapper)
        return real(wrapper, wrapped, assigned, updated)

    return update_wrapper


def _safe_wraps(update_wrapper: Callable[..., Any]) -> Callable[[Any], Any]:
    def wraps(wrapped: Any, assigned: Any = functools.WRAPPER_ASSIGNMENTS,
              updated: Any = functools.WRAPPER_UPDATES) -> Any:
        return functools.partial(update_wrapper, wrapped=wrapped, assigned=assigned, updated=updated)

    return wraps


def _user_class_decorator(real: Callable[..., Any], what: str) -> Callable[..., Any]:
    """Wrap a decorator that modifies its argument: only what the REPL defined may be decorated."""

    def check(target: Any) -> None:
        if isinstance(target, type) and not is_user_class(target):
            raise SandboxViolation(f"{what} may only decorate classes defined in the REPL")
        if isinstance(target, (types.FunctionType, types.BuiltinFunctionType)) and not is_user_function(target):
            raise SandboxViolation(f"{what} may only decorate functions defined in the REPL")
        if isinstance(target, types.ModuleType):
            raise SandboxViolation(f"{what} cannot decorate a module")

    def decorator(cls: Any = None, /, **kwargs: Any) -> Any:
        if cls is None:
            def apply(target: Any) -> Any:
                check(target)
                return real(target, **kwargs)
            return apply
        check(cls)
        return real(cls, **kwargs)

    return _named_like(decorator, real)


def _safe_attrgetter(_real: Any) -> Callable[..., Any]:
    def attrgetter(*names: str) -> Callable[[Any], Any]:
        paths = [n.split(".") for n in names]

        def get(obj: Any) -> Any:
            values = []
            for path in paths:
                value = obj
                for part in path:
                    value = guarded_getattr(value, part)
                values.append(value)
            return values[0] if len(values) == 1 else tuple(values)

        return get

    return attrgetter


def _safe_methodcaller(_real: Any) -> Callable[..., Any]:
    def methodcaller(name: str, /, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        def call(obj: Any) -> Any:
            return guarded_getattr(obj, name)(*args, **kwargs)

        return call

    return methodcaller


def _masked(real: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return mask_metaclass(real(*args, **kwargs))

    return _named_like(call, real)


_update_wrapper = _safe_update_wrapper(functools.update_wrapper)

TYPING_SUBSET = (
    "AbstractSet", "Annotated", "Any", "AnyStr", "Callable", "ChainMap", "ClassVar", "Collection",
    "Container", "Counter", "DefaultDict", "Deque", "Dict", "Final", "FrozenSet", "Generator", "Generic",
    "Hashable", "IO", "ItemsView", "Iterable", "Iterator", "KeysView", "List", "Literal", "LiteralString",
    "Mapping", "MappingView", "Match", "MutableMapping", "MutableSequence", "MutableSet", "NamedTuple",
    "Never", "NewType", "NoReturn", "NotRequired", "Optional", "OrderedDict", "ParamSpec", "Pattern",
    "Protocol", "Required", "Reversible", "Self", "Sequence", "Set", "Sized", "SupportsAbs",
    "SupportsFloat", "SupportsIndex", "SupportsInt", "SupportsRound", "TYPE_CHECKING", "Text", "TextIO",
    "BinaryIO", "Tuple", "Type", "TypeAlias", "TypeGuard", "TypeVar", "TypedDict", "Union", "ValuesView",
    "assert_never", "cast", "final", "get_args", "get_origin", "is_typeddict", "overload",
    "runtime_checkable",
)

#: Every importable module and how it is exposed (read-only).
RULES: types.MappingProxyType[str, Rule] = types.MappingProxyType({
    "json": Rule(), "re": Rule(), "math": Rule(), "cmath": Rule(), "datetime": Rule(),
    "collections": Rule(), "collections.abc": Rule(), "itertools": Rule(),
    "functools": Rule(
        exclude=("singledispatch", "singledispatchmethod"),
        replace={"update_wrapper": lambda _real: _update_wrapper,
                 "wraps": lambda _real: _safe_wraps(_update_wrapper),
                 "total_ordering": lambda real: _user_class_decorator(real, "functools.total_ordering")}),
    "statistics": Rule(), "csv": Rule(), "decimal": Rule(), "fractions": Rule(), "numbers": Rule(),
    "string": Rule(exclude=("Formatter",)), "textwrap": Rule(), "random": Rule(), "secrets": Rule(),
    "hashlib": Rule(), "base64": Rule(), "binascii": Rule(), "zlib": Rule(),
    "dataclasses": Rule(exclude=("make_dataclass",),
                        replace={"dataclass": lambda real: _user_class_decorator(real, "dataclasses.dataclass")}),
    "typing": Rule(only=TYPING_SUBSET, replace={
        "get_origin": _masked,
        "final": lambda real: _user_class_decorator(real, "typing.final"),
        "runtime_checkable": lambda real: _user_class_decorator(real, "typing.runtime_checkable")}),
    "abc": Rule(only=("ABC", "abstractmethod"),
                replace={"abstractmethod": lambda real: _user_class_decorator(real, "abc.abstractmethod")}),
    "difflib": Rule(), "unicodedata": Rule(),
    "urllib": Rule(only=()), "urllib.parse": Rule(),
    "time": Rule(only=("sleep", "time", "perf_counter", "monotonic")),
    "copy": Rule(), "heapq": Rule(), "bisect": Rule(),
    "operator": Rule(replace={"attrgetter": _safe_attrgetter, "methodcaller": _safe_methodcaller}),
    "enum": Rule(exclude=("EnumType", "EnumMeta", "global_enum", "global_enum_repr", "global_flag_repr",
                          "global_str", "pickle_by_global_name", "pickle_by_enum_name")),
    "html": Rule(), "pprint": Rule(), "array": Rule(), "struct": Rule(), "keyword": Rule(),
    "io": Rule(only=("StringIO", "BytesIO", "SEEK_SET", "SEEK_CUR", "SEEK_END", "UnsupportedOperation")),
    "contextlib": Rule(only=("contextmanager", "suppress", "closing", "nullcontext", "ExitStack",
                             "ContextDecorator", "AbstractContextManager")),
    "uuid": Rule(only=("UUID", "uuid3", "uuid4", "uuid5", "NAMESPACE_DNS", "NAMESPACE_URL", "NAMESPACE_OID",
                       "NAMESPACE_X500")),
})


def is_forbidden_value(value: Any) -> bool:
    """Whether a module member must not reach code (dangerous builtins, metaclasses, os functions)."""
    if id(value) in _FORBIDDEN_OBJECTS:
        return True
    if isinstance(value, type):
        return issubclass(value, type)
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType)):
        return getattr(value, "__module__", None) in _DANGEROUS_FUNCTION_MODULES
    return False


def _frozen(value: Any) -> Any:
    """Module-level containers are handed out as read-only copies (``keyword.kwlist``...)."""
    if type(value) is list:
        return tuple(value)
    if type(value) in (set, frozenset):
        return frozenset(value)
    if type(value) is dict:
        return types.MappingProxyType(dict(value))
    if type(value) is bytearray:
        return bytes(value)
    return value


class ModuleGate(_Frozen):
    """Builds and caches the proxies; :meth:`importer` makes the REPL's ``__import__``.

    Immutable once built: ``rules`` is a read-only mapping of immutable :class:`Rule`
    objects; only the private proxy cache grows."""

    __slots__ = ("_proxies", "rules")

    def __init__(self, extra_modules: Iterable[str] = ()) -> None:
        rules = dict(RULES)
        for name in extra_modules:
            check_extra_module(name)
            parts = name.split(".")
            for i in range(1, len(parts)):
                rules.setdefault(".".join(parts[:i]), Rule(only=()))
            rules.setdefault(name, Rule())
        object.__setattr__(self, "rules", types.MappingProxyType(rules))
        object.__setattr__(self, "_proxies", {})

    def allowed(self) -> list[str]:
        return sorted(self.rules)

    def proxy(self, name: str) -> types.ModuleType:
        """The proxy of the allowed module ``name`` (built on first use)."""
        cached = self._proxies.get(name)
        if cached is not None:
            return cached
        rule = self.rules[name]
        proxy = types.ModuleType(name)
        self._proxies[name] = proxy  # before filling: cycles between allowed modules
        try:
            real = importlib.import_module(name)
            if rule.only is not None:
                names: Iterable[str] = rule.only
            else:
                names = getattr(real, "__all__", None) or [n for n in dir(real) if not n.startswith("_")]
            for attr in names:
                if attr.startswith("_") or attr in rule.exclude or not hasattr(real, attr):
                    continue
                value = getattr(real, attr)
                if attr in rule.replace:
                    value = rule.replace[attr](value)
                elif isinstance(value, types.ModuleType):
                    if value.__name__ not in self.rules:
                        continue
                    value = self.proxy(value.__name__)
                elif is_forbidden_value(value):
                    continue
                else:
                    value = _frozen(value)
                setattr(proxy, attr, value)
            proxy.__doc__ = real.__doc__
            prefix = name + "."
            for child in self.rules:
                if child.startswith(prefix) and "." not in child[len(prefix):]:
                    setattr(proxy, child[len(prefix):], self.proxy(child))
        except BaseException:
            self._proxies.pop(name, None)
            raise
        return proxy

    def importer(self) -> Callable[..., types.ModuleType]:
        """The REPL's ``__import__``: a plain function (not a bound method, so nothing that
        copies or walks it reaches the gate) that calls :meth:`import_`."""
        import_ = self.import_

        def guarded_import(name: str, globals_: Any = None, locals_: Any = None, fromlist: Any = (),
                           level: int = 0) -> types.ModuleType:
            return import_(name, globals_, locals_, fromlist, level)

        return guarded_import

    def import_(self, name: str, globals: Any = None, locals: Any = None, fromlist: Any = (),
                level: int = 0) -> types.ModuleType:
        """Allowed modules only, as proxies."""
        if level != 0:
            raise ImportError("relative imports are not allowed in the sandbox")
        if isinstance(name, str):
            name = str.__str__(name)  # exact str: no overridden __eq__/__hash__
        if not isinstance(name, str) or name not in self.rules:
            shown = ", ".join(n for n in self.allowed() if n != "urllib")
            raise ImportError(f"import of {name!r} is not allowed in the sandbox; allowed modules: {shown}",
                              name=name if isinstance(name, str) else None)
        if fromlist:
            return self.proxy(name)
        parts = name.split(".")
        for i in range(1, len(parts)):
            self.proxy(".".join(parts[:i]))  # each parent must be allowed too (checked by RULES keys)
        return self.proxy(parts[0])
