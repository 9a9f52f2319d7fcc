"""Compiling user code: RestrictedPython's transformer, widened a little, plus notebook display.

:func:`compile_cell` parses one execution's code, runs the restricting
transformer over it (attribute access becomes ``_getattr_``, writes
``_write_``, iteration ``_getiter_``...), then rewrites a trailing expression
statement into ``_rlm_display_(expr)`` so its value is shown as in a notebook.
``restricted=False`` (a test-only switch of the REPL) skips the transformer.

Compared with RestrictedPython's own policy this one also allows annotated
assignments (``x: int = 1``, needed by dataclasses), the common magic methods
in class bodies (``__repr__``, ``__len__``, ``__enter__``...), reading a
handful of harmless dunder attributes (``super().__init__``, ``f.__name__``)
and augmented assignment of items and attributes (``counts[key] += 1``,
``self.total += x``: everyday code that RestrictedPython refuses, rewritten
into the guarded reads and writes it already allows); it refuses
``from __future__`` imports.  Runs inside the worker process.
"""

from __future__ import annotations

import ast

from RestrictedPython.transformer import INSPECT_ATTRIBUTES, IOPERATOR_TO_STR, RestrictingNodeTransformer
from rlm_repl.repl_server import DISPLAY_HOOK, CellSyntaxError, display_last, parse_cell

#: Dunder attributes code may read (``_getattr_`` allows exactly these too).
SAFE_DUNDER_ATTRS = frozenset({"__init__", "__name__", "__qualname__", "__doc__", "__class__"})

#: Magic methods a class body may define.  Left out on purpose: ``__getattribute__``,
#: ``__del__``, ``__reduce__``/``__reduce_ex__``, ``__init_subclass__``, ``__set_name__``,
#: ``__class_getitem__``, descriptors (``__get__``/``__set__``) and ``__new__``.
ALLOWED_MAGIC_METHODS = frozenset({
    "__init__", "__post_init__", "__repr__", "__str__", "__format__", "__hash__", "__bool__",
    "__len__", "__contains__", "__iter__", "__next__", "__reversed__", "__getitem__", "__setitem__",
    "__delitem__", "__missing__", "__getattr__", "__call__", "__enter__", "__exit__",
    "__lt__", "__le__", "__eq__", "__ne__", "__gt__", "__ge__",
    "__add__", "__radd__", "__iadd__", "__sub__", "__rsub__", "__isub__", "__mul__", "__rmul__",
    "__imul__", "__matmul__", "__rmatmul__", "__truediv__", "__rtruediv__", "__itruediv__",
    "__floordiv__", "__rfloordiv__", "__ifloordiv__", "__mod__", "__rmod__", "__imod__",
    "__pow__", "__rpow__", "__ipow__", "__divmod__", "__rdivmod__", "__lshift__", "__rlshift__",
    "__rshift__", "__rrshift__", "__and__", "__rand__", "__iand__", "__or__", "__ror__", "__ior__",
    "__xor__", "__rxor__", "__ixor__", "__neg__", "__pos__", "__abs__", "__invert__",
    "__int__", "__float__", "__complex__", "__index__", "__round__", "__trunc__", "__floor__",
    "__ceil__", "__copy__", "__deepcopy__", "__getstate__", "__setstate__",
})



class CellPolicy(RestrictingNodeTransformer):
    """RestrictedPython's policy with the additions described in the module docstring."""

    def check_name(self, node: ast.AST, name: str | None, allow_magic_methods: bool = False) -> None:
        if (name is not None and allow_magic_methods and name in ALLOWED_MAGIC_METHODS
                and getattr(node, "col_offset", 0) != 0):
            return
        super().check_name(node, name, allow_magic_methods=False)

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if node.attr in SAFE_DUNDER_ATTRS and isinstance(node.ctx, ast.Load):
            value = self.visit(node.value)
            call = ast.Call(func=ast.Name("_getattr_", ast.Load()), args=[value, ast.Constant(node.attr)],
                            keywords=[])
            return ast.copy_location(call, node)
        return super().visit_Attribute(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        """``x: int = 1`` and ``self.x: int = 1``: targets are checked like assignments."""
        return self.node_contents_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST | list[ast.stmt]:
        """``obj[key] op= value`` and ``obj.attr op= value``, with the guards of a read and a write.

        ``obj`` and ``key`` are evaluated once, into names user code cannot spell (they start with
        ``_``), as Python does; then ``_write_(obj)[key] = _inplacevar_(op, _getitem_(obj, key), value)``
        (``_getattr_``/``_write_(obj).attr`` for an attribute, whose name is checked as in any access).
        """
        target = node.target
        if not isinstance(target, ast.Subscript | ast.Attribute):
            return super().visit_AugAssign(node)
        self._aug_count = getattr(self, "_aug_count", 0) + 1
        obj_name = f"_rlm_aug{self._aug_count}_obj"
        statements: list[ast.stmt] = [
            ast.Assign(targets=[ast.Name(obj_name, ast.Store())], value=self.visit(target.value))]
        if isinstance(target, ast.Subscript):
            key_name = f"_rlm_aug{self._aug_count}_key"
            statements.append(ast.Assign(targets=[ast.Name(key_name, ast.Store())], value=self.visit(target.slice)))
            current: ast.expr = ast.Call(func=ast.Name("_getitem_", ast.Load()),
                                         args=[ast.Name(obj_name, ast.Load()), ast.Name(key_name, ast.Load())],
                                         keywords=[])
            store: ast.expr = ast.Subscript(
                value=ast.Call(func=ast.Name("_write_", ast.Load()), args=[ast.Name(obj_name, ast.Load())],
                               keywords=[]),
                slice=ast.Name(key_name, ast.Load()), ctx=ast.Store())
        else:
            # the attribute name gets the checks of any attribute access (no _private, no inspect names)
            check = ast.Attribute(value=ast.copy_location(ast.Name("rlm_aug_check", ast.Load()), target),
                                  attr=target.attr, ctx=ast.Store())
            self.visit(ast.copy_location(check, target))
            current = ast.Call(func=ast.Name("_getattr_", ast.Load()),
                               args=[ast.Name(obj_name, ast.Load()), ast.Constant(target.attr)], keywords=[])
            store = ast.Attribute(
                value=ast.Call(func=ast.Name("_write_", ast.Load()), args=[ast.Name(obj_name, ast.Load())],
                               keywords=[]),
                attr=target.attr, ctx=ast.Store())
        result = ast.Call(func=ast.Name("_inplacevar_", ast.Load()),
                          args=[ast.Constant(IOPERATOR_TO_STR[type(node.op)]), current, self.visit(node.value)],
                          keywords=[])
        statements.append(ast.Assign(targets=[store], value=result))
        for statement in statements:
            ast.copy_location(statement, node)
            ast.fix_missing_locations(statement)
        return statements

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        if node.module == "__future__":
            self.error(node, "from __future__ imports are not allowed in the sandbox.")
        return super().visit_ImportFrom(node)


def compile_cell(source: str, filename: str, *, restricted: bool = True) -> object:
    """A code object for ``source``, restricted unless told otherwise; its trailing expression
    is displayed (:func:`rlm_repl.repl_server.display_last`)."""
    tree = parse_cell(source, filename)
    if restricted:
        errors: list[str] = []
        tree = CellPolicy(errors, [], {}).visit(tree)
        if errors:
            raise CellSyntaxError("SyntaxError: the sandbox refused this code:\n" + "\n".join(errors))
    return compile(display_last(tree), filename, "exec", dont_inherit=True)


__all__ = ["ALLOWED_MAGIC_METHODS", "DISPLAY_HOOK", "INSPECT_ATTRIBUTES", "SAFE_DUNDER_ATTRS", "CellSyntaxError",
           "compile_cell"]
