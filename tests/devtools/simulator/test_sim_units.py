"""Unit tests of the pure pieces: schema answers, text, config, header formatting, specs."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from aijobs.devtools.simulator import SimulatorConfig
from aijobs.devtools.simulator import text as txt
from aijobs.devtools.simulator.errors import format_reset, rate_limit_headers
from aijobs.devtools.simulator.faults import FaultQueue, FaultSpec
from aijobs.devtools.simulator.schema_answer import (
    SchemaError,
    build_json_text,
    build_value,
    violate,
)


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def check(value: Any, schema: dict[str, Any], root: dict[str, Any] | None = None) -> None:
    """Tiny JSON Schema checker for the strict-mode subset (raises AssertionError)."""
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if "const" in schema:
        assert value == schema["const"]
    if "enum" in schema:
        assert value in schema["enum"]
    if "anyOf" in schema:
        errors = 0
        for branch in schema["anyOf"]:
            try:
                check(value, branch, root)
            except AssertionError:
                errors += 1
        assert errors < len(schema["anyOf"]), f"{value!r} matches no anyOf branch"
        return
    types = schema.get("type")
    if types is None:
        return
    types = [types] if isinstance(types, str) else types
    python = {
        "object": dict,
        "array": list,
        "string": str,
        "boolean": bool,
        "null": type(None),
    }
    ok = [
        t
        for t in types
        if (t == "integer" and isinstance(value, int) and not isinstance(value, bool))
        or (t == "number" and isinstance(value, int | float) and not isinstance(value, bool))
        or (t in python and isinstance(value, python[t]))
    ]
    assert ok, f"{value!r} is not {types}"
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            assert name in value, f"missing {name}"
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(props)
        for name, sub in props.items():
            if name in value:
                check(value[name], sub, root)
    elif isinstance(value, list):
        assert len(value) >= schema.get("minItems", 0)
        assert len(value) <= schema.get("maxItems", len(value))
        for item in value:
            check(item, schema.get("items", {}), root)
    elif isinstance(value, str):
        assert len(value) >= schema.get("minLength", 0)
        assert len(value) <= schema.get("maxLength", len(value))
        if schema.get("format") == "date":
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", value)
        if schema.get("format") == "email":
            assert re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]+", value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema:
            assert value >= schema["minimum"]
        if "maximum" in schema:
            assert value <= schema["maximum"]
        if "exclusiveMinimum" in schema:
            assert value > schema["exclusiveMinimum"]
        if "exclusiveMaximum" in schema:
            assert value < schema["exclusiveMaximum"]


NODE_SCHEMA = {
    "type": "object",
    "$defs": {
        "Node": {
            "type": "object",
            "properties": {
                "label": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
            },
            "required": ["label", "children"],
            "additionalProperties": False,
        }
    },
    "properties": {"root": {"$ref": "#/$defs/Node"}},
    "required": ["root"],
    "additionalProperties": False,
}

SCHEMAS: list[dict[str, Any]] = [
    {"type": "string", "minLength": 40, "maxLength": 45},
    {"type": "string", "maxLength": 3},
    {"type": "integer", "minimum": 10, "maximum": 10},
    {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 2},
    {"type": "number", "minimum": -1.5, "maximum": -1.25},
    {"type": "number", "exclusiveMinimum": 100},
    {"type": ["string", "null"]},
    {"type": "null"},
    {"const": "fixed"},
    {"enum": [1, "two", None]},
    {"type": "array", "items": {"type": "boolean"}, "minItems": 5, "maxItems": 6},
    {"type": "array", "items": {"type": "integer"}, "maxItems": 0},
    {"anyOf": [{"type": "null"}, {"type": "string", "format": "date"}]},
    {"type": "string", "format": "email"},
    {
        "type": "object",
        "definitions": {"Tag": {"type": "string", "enum": ["x", "y"]}},
        "properties": {
            "tags": {"type": "array", "items": {"$ref": "#/definitions/Tag"}},
            "meta": {
                "type": "object",
                "properties": {"n": {"type": "integer"}, "ok": {"type": "boolean"}},
                "required": ["n", "ok"],
                "additionalProperties": False,
            },
        },
        "required": ["tags", "meta"],
        "additionalProperties": False,
    },
    NODE_SCHEMA,
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_built_values_satisfy_schema(schema: dict[str, Any]) -> None:
    for seed in range(5):
        value = build_value(schema, seed)
        check(value, schema)
        assert build_value(schema, seed) == value
        assert json.loads(build_json_text(schema, seed)) == value


def test_recursive_schema_terminates() -> None:
    value = build_value(NODE_SCHEMA, 1)
    depth = 0
    node = value["root"]
    while node["children"]:
        node = node["children"][0]
        depth += 1
    assert 1 <= depth <= 12


def test_violation_breaks_schema() -> None:
    schema = SCHEMAS[14]
    broken = violate(schema, build_value(schema))
    with pytest.raises(AssertionError):
        check(broken, schema)
    with pytest.raises(AssertionError):
        check(violate({"type": "string"}, "x"), {"type": "string"})


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "wat"},
        {"$ref": "#/$defs/Missing"},
        {"enum": []},
        {"type": "integer", "minimum": 3, "maximum": 2},
    ],
)
def test_unsatisfiable_schemas_raise(schema: dict[str, Any]) -> None:
    with pytest.raises(SchemaError):
        build_value(schema)


def test_text_tokens() -> None:
    messages = [{"role": "user", "content": "hello"}]
    seed = txt.prompt_seed(messages)
    assert seed == txt.prompt_seed([{"role": "user", "content": "hello"}])
    tokens = txt.generated_tokens(seed, 5)
    assert len(tokens) == 5 and not tokens[0].startswith(" ")
    assert all(t.startswith(" ") for t in tokens[1:])
    parts = [{"type": "text", "text": "a [[echo]]"}, {"type": "text", "text": "b"}]
    assert txt.is_echo([{"role": "user", "content": parts}])
    assert txt.echo_tokens([{"role": "user", "content": parts}]) == ["a", " b"]
    assert "".join(txt.json_pieces('{"k": "value"}', 3)) == '{"k": "value"}'


def test_config_from_env() -> None:
    config = SimulatorConfig.from_env(
        {
            "AIJOBS_SIM_LATENCY_MS": "25",
            "AIJOBS_SIM_TOKENS_PER_SECOND": "0",
            "AIJOBS_SIM_MAX_TOKENS": "7",
            "AIJOBS_SIM_RPM_LIMIT": "60",
            "AIJOBS_SIM_RPM_WINDOW_S": "1.5",
        }
    )
    assert config == SimulatorConfig(
        latency_ms=25, tokens_per_second=0, max_tokens_default=7, rpm_limit=60, rpm_window_s=1.5
    )
    assert SimulatorConfig.from_env({}) == SimulatorConfig()
    with pytest.raises(ValueError, match=r"AIJOBS|rpm_limit"):
        SimulatorConfig.from_env({"AIJOBS_SIM_RPM_LIMIT": "1.5"})
    with pytest.raises(ValueError):
        SimulatorConfig(latency_ms=-1)


def test_reset_header_format() -> None:
    assert format_reset(0.012) == "12ms"
    assert format_reset(1) == "1s"
    assert format_reset(8.64) == "8.64s"
    assert format_reset(360) == "6m0s"
    assert format_reset(3723.5) == "1h2m3.5s"
    headers = rate_limit_headers(0.2, 10)
    assert headers["retry-after"] == "1" and headers["retry-after-ms"] == "200"
    assert rate_limit_headers(1, 10, "none") == {}


def test_fault_queue_matching() -> None:
    queue = FaultQueue()
    queue.add(
        [
            FaultSpec.from_dict({"kind": "schema_violation"}),
            FaultSpec.from_dict({"kind": "cut", "model": "m2", "times": 2}),
        ]
    )
    assert queue.take("chat", "m1", None) is None
    assert queue.take("embeddings", "m2", None) is not None
    assert queue.take("chat", "m2", "json_object") is not None
    assert queue.take("chat", "m2", "json_schema") is not None  # the schema_violation
    assert len(queue) == 0
    with pytest.raises(ValueError):
        FaultSpec.from_dict({"kind": "cut", "times": 0})
    with pytest.raises(ValueError):
        FaultSpec.from_dict({"kind": "rate_limit", "headers": "some"})
