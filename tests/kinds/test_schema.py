"""What strict mode accepts, how schemas are normalised, and how answers are checked."""

from __future__ import annotations

from typing import Any

import pytest

from aijobs.kinds.schema import (
    SchemaRejected,
    prepare_schema,
    strip_optional_nulls,
    validation_error,
)

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "email": {"type": "string", "format": "email"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
        "address": {"$ref": "#/$defs/address"},
    },
    "required": ["name"],
    "$defs": {
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "zip": {"type": ["string", "null"]}},
            "required": ["city", "zip"],
            "additionalProperties": False,
        }
    },
}


def test_optional_properties_become_required_and_nullable() -> None:
    prepared = prepare_schema(PERSON)
    strict = prepared.strict
    assert strict["additionalProperties"] is False
    assert set(strict["required"]) == {"name", "age", "email", "tags", "address"}
    assert strict["properties"]["age"] == {
        "anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]
    }
    assert strict["properties"]["name"] == {"type": "string"}
    assert PERSON["required"] == ["name"]  # the submitted schema is left as it was
    assert any("age" in note for note in prepared.notes)


def test_nulls_for_optional_properties_are_removed_so_the_answer_fits() -> None:
    answer: dict[str, Any] = {
        "name": "Ada", "age": None, "email": None, "tags": None,
        "address": {"city": "London", "zip": None},
    }  # fmt: skip
    cleaned = strip_optional_nulls(answer, PERSON)
    assert cleaned == {"name": "Ada", "address": {"city": "London", "zip": None}}
    assert validation_error(cleaned, PERSON) is None


def test_validation_error_names_the_place() -> None:
    assert validation_error({"name": 3}, PERSON) == '$.name: 3 is not of type "string"'
    assert '"name" is a required property' in (validation_error({}, PERSON) or "")


@pytest.mark.parametrize(
    ("schema", "path", "phrase"),
    [
        ({"type": "array", "items": {"type": "string"}}, "schema", "root must be an object"),
        ({"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}]}}},
         "schema.properties.a.oneOf", "use anyOf"),
        ({"type": "object", "properties": {"a": {"type": "string", "minLength": 2}}},
         "schema.properties.a.minLength", "pattern"),
        ({"type": "object", "properties": {"a": {"type": "string"}},
          "additionalProperties": True}, "schema.additionalProperties", "must be false"),
        ({"type": "object"}, "schema", "must list its properties"),
        ({"type": "object", "properties": {"a": {"type": "strin"}}}, "schema.properties.a.type",
         "not a valid JSON Schema"),
        ({"type": "object", "properties": {"a": {"$ref": "https://x/y.json"}}},
         "schema.properties.a.$ref", "inside the schema"),
        ("nope", "schema", "JSON Schema object"),
    ],
)  # fmt: skip
def test_what_strict_mode_cannot_take_is_refused_with_a_reason(
    schema: Any, path: str, phrase: str
) -> None:
    with pytest.raises(SchemaRejected) as caught:
        prepare_schema(schema)
    assert caught.value.path == path
    assert phrase in caught.value.reason


def test_depth_and_size_limits() -> None:
    node: dict[str, Any] = {"type": "string"}
    for _ in range(12):
        node = {"type": "object", "properties": {"x": node}, "required": ["x"]}
    with pytest.raises(SchemaRejected, match="deeper than"):
        prepare_schema(node)
    wide = {"type": "object", "properties": {"e": {"enum": list(range(1001))}}}
    with pytest.raises(SchemaRejected, match="enum values"):
        prepare_schema(wide)


def test_annotations_are_dropped() -> None:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
              "properties": {"a": {"type": "string", "default": "x", "description": "kept"}},
              "required": ["a"], "additionalProperties": False}  # fmt: skip
    strict = prepare_schema(schema).strict
    assert "$schema" not in strict
    assert strict["properties"]["a"] == {"type": "string", "description": "kept"}
