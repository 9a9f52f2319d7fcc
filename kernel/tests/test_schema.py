"""rlm.schema: JSON Schema validation through ``jsonschema``, with short, bounded messages."""

from __future__ import annotations

import socket

import pytest
from rlm import schema
from rlm.schema import InvalidSchemaError, SchemaError, validate


def _error(value, spec) -> SchemaError:
    with pytest.raises(SchemaError) as info:
        validate(value, spec)
    return info.value


@pytest.mark.parametrize(("spec", "good", "bad", "reason"), [
    ({"not": {"type": "integer"}}, "x", 1, "must not match"),
    ({"if": {"type": "integer"}, "then": {"minimum": 10}, "else": {"type": "string"}}, 12, 5, "less than the minimum 10"),
    ({"if": {"type": "integer"}, "then": {"minimum": 10}, "else": {"type": "string"}}, "s", [], "expected string"),
    ({"patternProperties": {"^x_": {"type": "string"}}}, {"x_a": "s", "y": 1}, {"x_a": 1}, "expected string"),
    ({"multipleOf": 3}, 9, 7, "not a multiple of 3"),
    ({"type": "object", "minProperties": 1}, {"a": 1}, {}, "needs at least 1 property, has 0"),
    ({"type": "object", "maxProperties": 1}, {"a": 1}, {"a": 1, "b": 2}, "allows at most 1 property, has 2"),
    ({"enum": [1]}, 1, True, "True is not one of [1]"),
    ({"const": 0}, 0, False, "must be 0, got False"),
    ({"type": "integer"}, 3, True, "expected integer, got boolean True"),
    ({"type": "integer"}, 3.0, 3.5, "expected integer, got number 3.5"),
    ({"dependentRequired": {"a": ["b"]}}, {"a": 1, "b": 2}, {"a": 1}, "'b'"),
    ({"type": "array", "uniqueItems": True}, [1, 2], [1, 1], "items must be unique"),
    ({"type": "string", "pattern": "^a"}, "ab", "ba", "does not match pattern '^a'"),
])
def test_keywords_are_enforced(spec, good, bad, reason):
    validate(good, spec)
    error = _error(bad, spec)
    assert reason in error.reason and reason in str(error)


def test_boolean_is_not_a_number_in_enum_or_const():
    validate(1, {"enum": [1]})
    validate(0, {"const": 0})
    assert _error(True, {"enum": [1]}).path == "/"
    assert _error(False, {"const": 0}).path == "/"
    validate(False, {"enum": [False, None]})


def test_nested_paths_are_named():
    spec = {"type": "object", "properties": {"a": {"type": "object", "properties": {
        "b": {"type": "array", "items": {"type": "integer"}}}}}}
    error = _error({"a": {"b": [1, "x"]}}, spec)
    assert (error.path, error.reason) == ("/a/b/1", "expected integer, got string 'x'")
    assert str(error) == "/a/b/1: expected integer, got string 'x'"


def test_pointer_escapes_and_required_and_additional():
    spec = {"type": "object", "properties": {"a/b": {"type": "string"}, "n": {}}, "required": ["n"],
            "additionalProperties": False}
    assert str(_error({"a/b": 1, "n": 1}, spec)) == "/a~1b: expected string, got integer 1"
    assert str(_error({}, spec)) == "/: missing required property 'n'"
    assert str(_error({"n": 1, "zz": 2}, spec)) == "/: unexpected property 'zz'"


def test_any_of_of_types_and_one_of():
    assert _error("x", {"anyOf": [{"type": "integer"}, {"type": "null"}]}).reason == \
        "expected integer or null, got string 'x'"
    error = _error({"a": "x"}, {"anyOf": [{"required": ["b"]}, {"properties": {"a": {"type": "integer"}}}]})
    assert "matches none of the allowed shapes (anyOf)" in error.reason
    assert "matched 2" in _error(3, {"oneOf": [{"type": "integer"}, {"minimum": 0}]}).reason


def test_local_refs_and_the_dialect_named_by_dollar_schema():
    spec = {"$defs": {"n": {"type": "integer"}}, "type": "object", "properties": {"x": {"$ref": "#/$defs/n"}}}
    validate({"x": 1}, spec)
    assert _error({"x": "1"}, spec).path == "/x"
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "definitions": {"s": {"type": "string"}},
              "$ref": "#/definitions/s"}
    validate("ok", draft7)
    # draft 7: "$ref" beside other keywords wins; 2020-12 would also apply "type"
    validate("ok", {"$schema": "http://json-schema.org/draft-07/schema#", "definitions": {"s": {}},
                    "$ref": "#/definitions/s", "type": "integer"})
    with pytest.raises(SchemaError):
        validate("ok", {"$defs": {"s": {}}, "$ref": "#/$defs/s", "type": "integer"})


def test_an_invalid_schema_is_a_clear_error():
    with pytest.raises(InvalidSchemaError) as info:
        validate(1, {"type": "object", "properties": {"a": {"type": "integr"}}})
    error = info.value
    assert isinstance(error, SchemaError) and error.path == "/properties/a/type"
    assert str(error).startswith("invalid schema at /properties/a/type: ") and "'integr'" in str(error)
    with pytest.raises(InvalidSchemaError, match="minimum"):
        validate(1, {"minimum": "zero"})
    with pytest.raises(InvalidSchemaError, match="unknown JSON Schema dialect"):
        validate(1, {"$schema": "https://example.com/my-dialect", "type": "integer"})
    with pytest.raises(InvalidSchemaError, match="a schema is an object or a boolean"):
        validate(1, ["type", "integer"])  # type: ignore[arg-type]


def test_a_remote_ref_is_refused_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("validation tried the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(InvalidSchemaError, match="cannot resolve \\$ref 'https://example.com/s.json'"):
        validate({"a": 1}, {"properties": {"a": {"$ref": "https://example.com/s.json"}}})
    with pytest.raises(InvalidSchemaError, match="cannot resolve"):
        validate(1, {"$ref": "#/$defs/missing"})


def test_boolean_schemas():
    validate({"anything": [1]}, True)
    assert _error(1, False).reason.startswith("no value is allowed here")


def test_large_instances_are_excerpted():
    big = "x" * 10_000
    error = _error(big, {"type": "integer"})
    assert len(str(error)) < schema.EXCERPT_CHARS + 60 and "..." in str(error) and "\n" not in str(error)
    error = _error({"k": big}, {"type": "object", "properties": {"k": {"maxLength": 3}}})
    assert error.path == "/k" and len(str(error)) < schema.EXCERPT_CHARS + 60
    error = _error(list(range(5000)), {"type": "array", "maxItems": 2})
    assert error.reason == "allows at most 2 items, has 5000"
    error = _error([big] * 20, {"anyOf": [{"type": "object"}, {"type": "array", "items": {"type": "integer"}}]})
    assert len(str(error)) <= schema.MESSAGE_CHARS
    multiline = "line\n" * 50
    assert "\n" not in str(_error(multiline, {"const": "other"}))


def test_the_schema_the_caller_changes_later_is_the_one_used():
    spec = {"type": "integer"}
    validate(1, spec)
    spec["type"] = "string"
    validate("now a string", spec)
    assert _error(1, spec).reason.startswith("expected string")


def test_importing_the_module_does_not_import_jsonschema(run_python):
    result = run_python("import sys, rlm.schema; print('jsonschema' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("False")
