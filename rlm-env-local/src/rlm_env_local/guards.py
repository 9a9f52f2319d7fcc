"""The runtime guards RestrictedPython's rewritten code calls, and what they allow.

- :func:`guarded_getattr` (``_getattr_``, also the REPL's ``getattr``): refuses
  underscore names (bar a few harmless dunders), frame/code/generator/traceback
  internals, ``str.format``/``format_map`` and ``string.Formatter`` (their
  ``{0.__class__}`` fields read attributes unguarded), ``AttributeError.obj``;
  ``__class__`` answers like the REPL's ``type()``.  A library method read
  without its class (``Lib.method``, ``Lib.prop.fget``, ``partial.func``,
  ``super(Base, Cls).method``) comes back checked: it only accepts instances
  of its class as ``self``.
- :func:`guarded_write` (``_write_``): refuses writing into modules, into classes
  and functions the REPL did not define; user objects, containers and
  library instances (``decimal.getcontext().prec = 5``) may be changed.
- :data:`SafeType`: the REPL's ``type``: one-argument form only, and it never
  hands out the real ``type`` or another metaclass (whose 3-argument call would
  build classes from arbitrary namespaces).
- :data:`class_factory` (``__metaclass__``): every ``class`` statement goes
  through it, which records the class as the user's.

Runs inside the worker process.
"""

from __future__ import annotations

import collections
import operator
import string
import sys
import types
import weakref
from typing import Any

from rlm_env_local.policy import INSPECT_ATTRIBUTES, SAFE_DUNDER_ATTRS

#: ``__name__`` of the REPL's globals, hence ``__module__`` of what the user defines.
REPL_MODULE = "__rlm_repl__"

#: Public attributes refused on every object, on top of RestrictedPython's list.
BLOCKED_ATTRS = INSPECT_ATTRIBUTES | frozenset({
    "f_locals", "f_globals", "f_builtins", "f_back", "f_code", "tb_frame", "tb_next",
    "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code",
    "ag_await", "co_code", "func_globals", "func_code",
})

_user_classes: weakref.WeakSet[type] = weakref.WeakSet()
_MISSING = object()


class SandboxViolation(PermissionError):
    """Code tried something the sandbox does not allow."""


SandboxViolation.__module__ = "builtins"  # tracebacks show "SandboxViolation: ..."
_FORMATTING = (str, collections.UserString)
_FORMATTER_METHODS = frozenset({"format", "vformat", "get_field", "get_value", "format_field", "convert_field"})


# --- type() --------------------------------------------------------------------------------


class _TypeMeta(type):
    """Metaclass of :class:`SafeType`: ``type(x)`` works, ``type(name, bases, ns)`` does not."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs:
            return safe_type(args[0])
        raise SandboxViolation("type() with 3 arguments is not allowed in the sandbox; "
                               "define the class with a class statement")

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, type)

    def __subclasscheck__(cls, sub: Any) -> bool:
        return isinstance(sub, type) and issubclass(sub, type)


class SafeType(metaclass=_TypeMeta):
    """Stands for ``type`` in the REPL (isinstance/issubclass checks behave as with ``type``)."""


SafeType.__name__ = SafeType.__qualname__ = "type"
SafeType.__module__ = "builtins"


def mask_metaclass(value: Any) -> Any:
    """``value``, or :class:`SafeType` when it is ``type`` itself or another metaclass."""
    if isinstance(value, type) and issubclass(value, type):
        return SafeType
    return value


def safe_type(obj: Any) -> Any:
    """``type(obj)``, except that metaclasses come back as :class:`SafeType`."""
    return mask_metaclass(type(obj))


# --- classes defined by the user -------------------------------------------------------------


def _derive_metaclass(bases: tuple[Any, ...]) -> type:
    meta: type = type
    for base in bases:
        base_meta = type(base)
        if issubclass(meta, base_meta):
            continue
        if issubclass(base_meta, meta):
            meta = base_meta
            continue
        raise TypeError("metaclass conflict: the metaclasses of the bases are unrelated")
    return meta


class _ClassFactory:
    """``__metaclass__`` of every class statement: builds with the bases' metaclass, records it."""

    def __prepare__(self, name: str, bases: tuple[Any, ...], **kwargs: Any) -> Any:
        meta = _derive_metaclass(bases)
        prepare = getattr(meta, "__prepare__", None)
        return prepare(name, bases, **kwargs) if prepare is not None else {}

    def __call__(self, name: str, bases: tuple[Any, ...], namespace: Any, **kwargs: Any) -> type:
        meta = _derive_metaclass(bases)
        cls = meta(name, bases, namespace, **kwargs)
        _user_classes.add(cls)
        return cls

    def __repr__(self) -> str:
        return "<class factory>"


class_factory = _ClassFactory()


def is_user_class(cls: Any) -> bool:
    """Whether the REPL defined ``cls`` (class statement, namedtuple, Enum(...) called from it)."""
    if not isinstance(cls, type):
        return False
    if cls in _user_classes:
        return True
    return cls.__dict__.get("__module__") == REPL_MODULE


def is_user_function(fn: Any) -> bool:
    return isinstance(fn, types.FunctionType) and fn.__globals__.get("__name__") == REPL_MODULE


def _describe(obj: Any) -> str:
    if isinstance(obj, types.ModuleType):
        return f"module {obj.__name__!r}"
    if isinstance(obj, type):
        return f"class {obj.__qualname__!r}"
    return f"{type(obj).__name__} {getattr(obj, '__qualname__', '')!r}".rstrip(" '")


# --- writes ------------------------------------------------------------------------------------


def check_writable(obj: Any) -> None:
    """Raise :class:`SandboxViolation` unless code may set attributes/items of ``obj``."""
    if isinstance(obj, types.ModuleType):
        raise SandboxViolation(f"cannot modify {_describe(obj)}: modules are read-only in the sandbox")
    if isinstance(obj, type):
        if not is_user_class(obj):
            raise SandboxViolation(f"cannot modify {_describe(obj)}: only classes defined in the REPL "
                                   "may be changed (subclass it instead)")
        return
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodType,
                        types.BuiltinMethodType, types.WrapperDescriptorType, types.MethodWrapperType,
                        types.MethodDescriptorType, types.ClassMethodDescriptorType,
                        types.GetSetDescriptorType, types.MemberDescriptorType, types.CodeType,
                        types.FrameType, types.TracebackType, types.MappingProxyType, property,
                        classmethod, staticmethod)):
        if is_user_function(obj):
            return
        raise SandboxViolation(f"cannot modify {_describe(obj)}: it was not defined in the REPL")


def guarded_write(obj: Any) -> Any:
    """``_write_``: ``obj`` itself when code may write into it."""
    check_writable(obj)
    return obj


def _check_write_name(name: Any) -> None:
    _check_name(name)
    if name.startswith("_"):
        raise AttributeError(f'"{name}" is an invalid attribute name because it starts with "_"')


def guarded_setattr(obj: Any, name: str, value: Any) -> None:
    """The REPL's ``setattr``."""
    _check_write_name(name)
    check_writable(obj)
    setattr(obj, name, value)


def guarded_delattr(obj: Any, name: str) -> None:
    """The REPL's ``delattr``."""
    _check_write_name(name)
    check_writable(obj)
    delattr(obj, name)


# --- reads -------------------------------------------------------------------------------------


def _check_name(name: Any) -> None:
    if type(name) is not str:
        raise TypeError("attribute name must be a str")
    if name.startswith("_") and name not in SAFE_DUNDER_ATTRS:
        raise AttributeError(f'"{name}" is an invalid attribute name because it starts with "_"')
    if name in BLOCKED_ATTRS:
        raise AttributeError(f'"{name}" is a restricted name, that is forbidden to access in the sandbox')


def guarded_getattr(obj: Any, name: str, default: Any = _MISSING) -> Any:
    """``_getattr_`` and the REPL's ``getattr``."""
    _check_name(name)
    if name in ("format", "format_map") and (
            isinstance(obj, _FORMATTING) or (isinstance(obj, type) and issubclass(obj, _FORMATTING))):
        raise SandboxViolation(f"str.{name}() is not allowed in the sandbox (its fields can read "
                               "attributes); use f-strings or % formatting")
    if name in _FORMATTER_METHODS and (isinstance(obj, string.Formatter) or (
            isinstance(obj, type) and issubclass(obj, string.Formatter))):
        raise SandboxViolation("string.Formatter is not allowed in the sandbox")
    if name == "obj" and isinstance(obj, AttributeError):
        raise AttributeError('"obj" of AttributeError is not available in the sandbox')
    if name == "__class__":
        return safe_type(obj)
    try:
        value = getattr(obj, name)
    except AttributeError:
        if default is _MISSING:
            raise
        return default
    if isinstance(value, types.FunctionType) and not is_user_function(value):
        if isinstance(obj, type):
            return _unbound_method(obj, name, value)
        owner = _method_owner(value)
        if owner is not None:
            return _unbound_method(owner, value.__name__, value)
    return value


def _method_owner(fn: types.FunctionType) -> type | None:
    """The class a library function is a method of (found through its ``__qualname__``),
    or None for plain functions."""
    path = fn.__qualname__.split(".")[:-1]
    if not path or "<locals>" in path:
        return None
    owner: Any = sys.modules.get(fn.__module__)
    for part in path:
        owner = getattr(owner, part, None)
    return owner if isinstance(owner, type) else None


def _unbound_method(owner: type, name: str, fn: types.FunctionType) -> Any:
    """A library method of ``owner``: checked so that ``self`` is an instance of the class
    (``Base.__init__(self)`` works; ``Lib.__init__(OtherLibClass)`` cannot write into other
    classes).  Staticmethods are returned as they are."""
    for klass in owner.__mro__:
        raw = klass.__dict__.get(name, _MISSING)
        if raw is not _MISSING:
            if isinstance(raw, staticmethod):
                return fn
            break

    def method(self: Any, /, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(self, owner):
            raise TypeError(f"{owner.__qualname__}.{name}() must be called with a {owner.__qualname__} "
                            f"instance as first argument, not {type(self).__name__}")
        check_writable(self)
        return fn(self, *args, **kwargs)

    method.__name__ = fn.__name__
    method.__qualname__ = fn.__qualname__
    method.__doc__ = fn.__doc__
    return method


def guarded_hasattr(obj: Any, name: str) -> bool:
    """The REPL's ``hasattr``: False for what :func:`guarded_getattr` refuses."""
    try:
        guarded_getattr(obj, name)
    except (AttributeError, SandboxViolation):
        return False
    return True


def guarded_dir(*args: Any) -> list[str]:
    """The REPL's ``dir(obj)``: public names only."""
    if len(args) != 1:
        raise TypeError("dir() takes exactly one argument in the sandbox")
    return sorted(n for n in dir(args[0]) if not n.startswith("_"))


def guarded_getitem(obj: Any, key: Any) -> Any:
    return obj[key]


def guarded_getiter(obj: Any) -> Any:
    return iter(obj)


def guarded_apply(func: Any, *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


_INPLACE = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "<<=": operator.ilshift,
    ">>=": operator.irshift, "&=": operator.iand, "|=": operator.ior, "^=": operator.ixor,
    "@=": operator.imatmul,
}


def guarded_inplacevar(op: str, target: Any, value: Any) -> Any:
    """``_inplacevar_``: ``x += y`` and friends on names."""
    try:
        fn = _INPLACE[op]
    except KeyError:
        raise SyntaxError(f"unsupported augmented assignment {op}") from None
    return fn(target, value)
