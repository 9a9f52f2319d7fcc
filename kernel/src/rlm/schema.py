"""JSON Schema validation of tool arguments and structured outputs, done by ``jsonschema``.

:func:`validate` checks a value against a schema with the validator class the
schema's ``$schema`` names (Draft 2020-12 when it names none) and raises
:class:`SchemaError` at the most relevant failure, in one short line that says
where (a JSON pointer into the value) and why; excerpts of the value are capped
at :data:`EXCERPT_CHARS` characters.  The schema itself is checked first: an
invalid one raises :class:`InvalidSchemaError` (a :class:`SchemaError`) naming
the problem.  References resolve only inside the schema (and to the JSON
Schema meta-schemas shipped with ``jsonschema``): a remote ``$ref`` is never
fetched, it is an error.  ``format`` is an annotation, as the 2020-12 draft
says, and is not asserted.

``jsonschema`` is imported on first use, so that ``import rlm`` and
``rlm --help`` stay light.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

#: The most characters of a value (or of a schema fragment) quoted in a message.
EXCERPT_CHARS = 200
#: The most characters of a whole message.
MESSAGE_CHARS = 600

_KINDS = (("boolean", bool), ("null", type(None)), ("integer", int), ("number", float), ("string", str),
          ("array", list), ("object", dict))


class SchemaError(ValueError):
    """The value does not match the schema; ``path`` says where (a JSON pointer), ``reason`` why."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path or '/'}: {message}")
        self.path = path or "/"
        self.reason = message


class InvalidSchemaError(SchemaError):
    """The schema itself is not a valid JSON Schema; ``path`` points into the schema."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(path, message)
        self.args = (f"invalid schema at {self.path}: {message}",)


def validate(value: Any, schema: Mapping[str, Any] | bool) -> None:
    """Raise :class:`SchemaError` where ``value`` breaks ``schema`` (the most relevant place)."""
    validator = _validator(schema)
    from referencing.exceptions import Unresolvable

    try:
        errors = list(validator.iter_errors(value))
    except Unresolvable as exc:
        ref = getattr(exc, "ref", None)
        raise InvalidSchemaError("/", f"cannot resolve $ref {_short(ref if ref is not None else str(exc))} "
                                      "(references resolve only inside the schema; remote ones are not fetched)") from None
    if not errors:
        return
    from jsonschema.exceptions import relevance

    error = max(errors, key=relevance)
    raise SchemaError(_pointer(error.absolute_path), _one_line(_reason(error)))


def check(schema: Mapping[str, Any] | bool) -> None:
    """Raise :class:`InvalidSchemaError` when ``schema`` itself is not a valid JSON Schema."""
    _validator(schema)


def _validator(schema: Mapping[str, Any] | bool) -> Any:
    """A checked validator for ``schema``, cached by the schema's JSON text."""
    try:
        key = json.dumps(schema, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidSchemaError("/", f"not JSON: {_short(str(exc))}") from None
    return _build(key)


@functools.lru_cache(maxsize=256)
def _build(key: str) -> Any:
    # Built from a copy (the JSON text), so a caller changing its schema later cannot change a cached validator.
    schema = json.loads(key)
    # REGISTRY holds the meta-schemas and retrieves nothing (jsonschema's default registry fetches URLs)
    from jsonschema import Draft202012Validator
    from jsonschema.validators import validator_for
    from jsonschema_specifications import REGISTRY

    if not isinstance(schema, (dict, bool)):
        raise InvalidSchemaError("/", f"a schema is an object or a boolean, not {_kind(schema)} {_short(schema)}")
    cls = Draft202012Validator
    if isinstance(schema, dict) and "$schema" in schema:
        named = validator_for(schema, default=None) if isinstance(schema["$schema"], str) else None
        if named is None:
            raise InvalidSchemaError("/$schema", f"unknown JSON Schema dialect {_short(schema['$schema'])}")
        cls = named
    from jsonschema.exceptions import relevance

    problems = list(cls(cls.META_SCHEMA, registry=REGISTRY).iter_errors(schema))
    if problems:
        problem = max(problems, key=relevance)
        raise InvalidSchemaError(_pointer(problem.absolute_path), _one_line(_reason(problem)))
    return cls(schema, registry=REGISTRY)


def _reason(error: Any) -> str:
    """Why ``error`` (a ``jsonschema.ValidationError``) failed, in our own short words."""
    keyword, expected, value = error.validator, error.validator_value, error.instance
    if keyword == "type":
        names = expected if isinstance(expected, list) else [expected]
        return f"expected {' or '.join(map(str, names))}, got {_kind(value)} {_short(value)}"
    if keyword == "required" and isinstance(value, dict):
        missing = [key for key in expected if key not in value]
        if len(missing) == 1:
            return f"missing required property {missing[0]!r}"
        return f"missing required properties {_short(missing)[1:-1]}"
    if keyword in ("additionalProperties", "unevaluatedProperties") and isinstance(value, dict):
        schema = error.schema if isinstance(error.schema, Mapping) else {}
        extra = [key for key in value if key not in schema.get("properties", {})
                 and not any(_search(p, key) for p in schema.get("patternProperties", {}))]
        if extra and keyword == "additionalProperties":
            return f"unexpected propert{'y' if len(extra) == 1 else 'ies'} {_short(extra)[1:-1]}"
    if keyword == "enum":
        return f"{_short(value)} is not one of {_short(expected)}"
    if keyword == "const":
        return f"must be {_short(expected)}, got {_short(value)}"
    if keyword == "not":
        return f"{_short(value)} must not match {_short(expected)}"
    if keyword == "anyOf":
        if error.context and all(e.validator == "type" and not e.relative_path for e in error.context):
            names = [n for e in error.context for n in (e.validator_value if isinstance(e.validator_value, list)
                                                        else [e.validator_value])]
            return f"expected {' or '.join(map(str, dict.fromkeys(names)))}, got {_kind(value)} {_short(value)}"
        return f"{_short(value)} matches none of the allowed shapes (anyOf){_closest(error)}"
    if keyword == "oneOf":
        failed = {e.relative_schema_path[0] for e in error.context if e.relative_schema_path}
        matched = len(expected) - len(failed)
        return f"must match exactly one shape (oneOf), matched {matched}{_closest(error) if not matched else ''}"
    if keyword == "multipleOf":
        return f"{_short(value)} is not a multiple of {expected}"
    if keyword == "minimum":
        return f"{_short(value)} is less than the minimum {expected}"
    if keyword == "maximum":
        return f"{_short(value)} is more than the maximum {expected}"
    if keyword == "exclusiveMinimum":
        return f"{_short(value)} must be more than {expected}"
    if keyword == "exclusiveMaximum":
        return f"{_short(value)} must be less than {expected}"
    if keyword == "minLength":
        return f"shorter than {expected} characters: {_short(value)}"
    if keyword == "maxLength":
        return f"longer than {expected} characters: {_short(value)}"
    if keyword == "pattern":
        return f"{_short(value)} does not match pattern {expected!r}"
    if keyword == "minItems" and isinstance(value, list):
        return f"needs at least {expected} items, has {len(value)}"
    if keyword == "maxItems" and isinstance(value, list):
        return f"allows at most {expected} items, has {len(value)}"
    if keyword == "uniqueItems":
        return "items must be unique"
    if keyword == "minProperties" and isinstance(value, dict):
        return f"needs at least {expected} propert{'y' if expected == 1 else 'ies'}, has {len(value)}"
    if keyword == "maxProperties" and isinstance(value, dict):
        return f"allows at most {expected} propert{'y' if expected == 1 else 'ies'}, has {len(value)}"
    if keyword is None and error.schema is False:
        # jsonschema (4.26) drops the path of a ``false`` subschema's error: the excerpt says which value
        return f"no value is allowed here, got {_short(value)}"
    return _short_text(str(error.message))  # the library's words, capped: they quote the value in full


def _closest(error: Any) -> str:
    """The most relevant failure among an ``anyOf``/``oneOf``'s alternatives, as a suffix."""
    from jsonschema.exceptions import best_match

    sub = best_match(error.context)
    if sub is None:
        return ""
    where = "" if list(sub.absolute_path) == list(error.absolute_path) else _pointer(sub.absolute_path) + ": "
    return f"; closest: {where}{_reason(sub)}"


def _search(pattern: str, key: str) -> bool:
    try:
        return re.search(pattern, key) is not None
    except re.error:
        return False


def _pointer(parts: Any) -> str:
    """A JSON pointer (RFC 6901) for a path of keys and indexes; ``/`` for the whole value."""
    text = "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)
    return text or "/"


def _kind(value: Any) -> str:
    for name, cls in _KINDS:
        if isinstance(value, cls):
            return name
    return type(value).__name__


def _short(value: Any) -> str:
    return _short_text(repr(value))


def _short_text(text: str) -> str:
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS - 3] + "..."


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS - 3] + "..."
