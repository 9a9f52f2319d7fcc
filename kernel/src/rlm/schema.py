"""A small JSON Schema validator for structured outputs (no dependency).

Covers what response formats use: type (incl. lists of types), properties,
required, additionalProperties, items, prefixItems, enum, const, anyOf,
oneOf, allOf, minimum/maximum (and exclusive), minLength/maxLength,
pattern, minItems/maxItems, uniqueItems, and local ``$ref`` to ``#/$defs``.
Errors say where (a JSON pointer) and why.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool)
    or isinstance(v, float) and v.is_integer(),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


class SchemaError(ValueError):
    """The value does not match the schema; ``path`` says where."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path or '/'}: {message}")
        self.path = path or "/"
        self.reason = message


def validate(value: Any, schema: Mapping[str, Any]) -> None:
    """Raise :class:`SchemaError` at the first place ``value`` breaks ``schema``."""
    _check(value, schema, "", schema)


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if not ref:
        return schema
    if not ref.startswith("#/"):
        raise SchemaError("", f"unsupported $ref {ref!r} (only local references)")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return _resolve(node, root)


def _check(value: Any, schema: Mapping[str, Any] | bool, path: str, root: Mapping[str, Any]) -> None:
    if schema is True or schema == {}:
        return
    if schema is False:
        raise SchemaError(path, "no value is allowed here")
    assert isinstance(schema, Mapping)
    schema = _resolve(schema, root)
    expected = schema.get("type")
    if expected is not None:
        names = expected if isinstance(expected, list) else [expected]
        if not any(_TYPES.get(n, lambda v: True)(value) for n in names):
            raise SchemaError(path, f"expected {' or '.join(names)}, got {_kind(value)} {_short(value)}")
    if "const" in schema and value != schema["const"]:
        raise SchemaError(path, f"must be {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaError(path, f"{_short(value)} is not one of {schema['enum']!r}")
    for sub in schema.get("allOf", ()):
        _check(value, sub, path, root)
    if "anyOf" in schema:
        if not any(_passes(value, sub, path, root) for sub in schema["anyOf"]):
            raise SchemaError(path, f"{_short(value)} matches none of the allowed shapes (anyOf)")
    if "oneOf" in schema:
        matches = sum(_passes(value, sub, path, root) for sub in schema["oneOf"])
        if matches != 1:
            raise SchemaError(path, f"must match exactly one shape (oneOf), matched {matches}")
    if isinstance(value, dict):
        _check_object(value, schema, path, root)
    elif isinstance(value, list):
        _check_array(value, schema, path, root)
    elif isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            raise SchemaError(path, f"shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise SchemaError(path, f"longer than {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise SchemaError(path, f"{_short(value)} does not match pattern {schema['pattern']!r}")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(value, schema, path)


def _passes(value: Any, schema: Any, path: str, root: Mapping[str, Any]) -> bool:
    try:
        _check(value, schema, path, root)
    except SchemaError:
        return False
    return True


def _check_object(value: dict, schema: Mapping[str, Any], path: str, root: Mapping[str, Any]) -> None:
    props = schema.get("properties", {})
    for key in schema.get("required", ()):
        if key not in value:
            raise SchemaError(path, f"missing required property {key!r}")
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        sub_path = f"{path}/{key}"
        if key in props:
            _check(item, props[key], sub_path, root)
        elif extra is False:
            raise SchemaError(path, f"unexpected property {key!r}")
        elif isinstance(extra, Mapping):
            _check(item, extra, sub_path, root)


def _check_array(value: list, schema: Mapping[str, Any], path: str, root: Mapping[str, Any]) -> None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        raise SchemaError(path, f"needs at least {schema['minItems']} items, has {len(value)}")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        raise SchemaError(path, f"allows at most {schema['maxItems']} items, has {len(value)}")
    prefix = schema.get("prefixItems", ())
    for index, item in enumerate(value):
        if index < len(prefix):
            _check(item, prefix[index], f"{path}/{index}", root)
        elif "items" in schema:
            _check(item, schema["items"], f"{path}/{index}", root)
    if schema.get("uniqueItems"):
        seen: list[Any] = []
        for item in value:
            if item in seen:
                raise SchemaError(path, f"items must be unique; {_short(item)} repeats")
            seen.append(item)


def _check_number(value: float, schema: Mapping[str, Any], path: str) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        raise SchemaError(path, f"{value} is less than the minimum {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        raise SchemaError(path, f"{value} is more than the maximum {schema['maximum']}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        raise SchemaError(path, f"{value} must be more than {schema['exclusiveMinimum']}")
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        raise SchemaError(path, f"{value} must be less than {schema['exclusiveMaximum']}")


def _kind(value: Any) -> str:
    for name in ("boolean", "null", "integer", "number", "string", "array", "object"):
        if _TYPES[name](value) and not (name == "integer" and isinstance(value, float)):
            return name
    return type(value).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
