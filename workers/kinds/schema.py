"""JSON Schemas for structured output: what strict mode accepts, and checking the answer.

OpenAI's strict structured outputs accept a subset of JSON Schema. A schema is checked
when the job is submitted, so a job that could never run is refused with a reason
instead of failing later. Where the meaning is kept, the schema is normalised:

- an object without ``additionalProperties`` gets ``false`` (a stricter answer still
  validates against the submitted schema);
- a property left out of ``required`` becomes required and nullable; a ``null`` the model
  gives for it is removed from the answer, so the result validates against the schema
  as submitted;
- annotations strict mode rejects (``default``, ``examples``, ``$comment``, ``$schema``,
  ``$id``) are dropped.

Everything else strict mode cannot express is refused with the path and the reason.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match

MAX_PROPERTIES = 5000
MAX_DEPTH = 10
MAX_ENUM_VALUES = 1000

_DROPPED = frozenset({"default", "examples", "$comment", "$schema", "$id"})
_UNSUPPORTED = {
    "allOf": "use anyOf, or merge the schemas",
    "oneOf": "use anyOf",
    "not": "strict mode has no negation",
    "if": "strict mode has no conditionals",
    "then": "strict mode has no conditionals",
    "else": "strict mode has no conditionals",
    "dependentRequired": "make the properties required (nullable if optional)",
    "dependentSchemas": "strict mode has no dependent schemas",
    "patternProperties": "list the properties",
    "unevaluatedProperties": "use additionalProperties: false",
    "unevaluatedItems": "strict mode cannot check it",
    "propertyNames": "list the properties",
    "minProperties": "strict mode cannot check it",
    "maxProperties": "strict mode cannot check it",
    "contains": "strict mode cannot check it",
    "minContains": "strict mode cannot check it",
    "maxContains": "strict mode cannot check it",
    "uniqueItems": "strict mode cannot check it",
    "prefixItems": "use items",
    "minLength": "use pattern",
    "maxLength": "use pattern",
}
_DEF_KEYS = ("$defs", "definitions")


class SchemaRejected(ValueError):
    """Raised when strict mode cannot accept a schema; ``path`` points into the schema."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class PreparedSchema:
    """A submitted schema, its strict-mode form, and what normalising changed."""

    original: dict[str, Any]
    strict: dict[str, Any]
    notes: tuple[str, ...]


def prepare_schema(schema: Any) -> PreparedSchema:
    """Check ``schema`` for strict mode and return its normalised form.

    Raises ``SchemaRejected`` (path under ``schema``) when it cannot be used.
    """
    if not isinstance(schema, dict):
        raise SchemaRejected("schema", "must be a JSON Schema object")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.path)
        raise SchemaRejected(f"schema{where}", f"not a valid JSON Schema: {exc.message}") from None
    if schema.get("type") != "object":
        raise SchemaRejected("schema", "the root must be an object (type: object)")
    walker = _Normaliser()
    strict = walker.normalise(copy.deepcopy(schema), "schema", depth=0)
    if walker.properties > MAX_PROPERTIES:
        raise SchemaRejected("schema", f"more than {MAX_PROPERTIES} properties in all")
    if walker.enum_values > MAX_ENUM_VALUES:
        raise SchemaRejected("schema", f"more than {MAX_ENUM_VALUES} enum values in all")
    return PreparedSchema(schema, strict, tuple(walker.notes))


class _Normaliser:
    def __init__(self) -> None:
        self.properties = 0
        self.enum_values = 0
        self.notes: list[str] = []

    def normalise(self, node: Any, path: str, depth: int) -> Any:
        if not isinstance(node, dict):
            return node
        if depth > MAX_DEPTH:
            raise SchemaRejected(path, f"nested deeper than {MAX_DEPTH} levels")
        for key in list(node):
            if key in _DROPPED:
                del node[key]
                self.notes.append(f"{path}.{key}: dropped")
            elif key in _UNSUPPORTED:
                raise SchemaRejected(
                    f"{path}.{key}", f"strict mode does not support it ({_UNSUPPORTED[key]})"
                )
        ref = node.get("$ref")
        if ref is not None and not (
            isinstance(ref, str) and ref.startswith(("#/$defs/", "#/definitions/", "#"))
        ):
            raise SchemaRejected(f"{path}.$ref", "only references inside the schema work")
        if "enum" in node:
            self.enum_values += len(node["enum"])
        for defs_key in _DEF_KEYS:
            for name, sub in (node.get(defs_key) or {}).items():
                node[defs_key][name] = self.normalise(sub, f"{path}.{defs_key}.{name}", depth)
        for i, branch in enumerate(node.get("anyOf") or []):
            node["anyOf"][i] = self.normalise(branch, f"{path}.anyOf[{i}]", depth + 1)
        if "items" in node:
            if not isinstance(node["items"], dict):
                raise SchemaRejected(f"{path}.items", "must be one schema")
            node["items"] = self.normalise(node["items"], f"{path}.items", depth + 1)
        if _is_object(node):
            self._object(node, path, depth)
        return node

    def _object(self, node: dict[str, Any], path: str, depth: int) -> None:
        properties = node.get("properties")
        if not isinstance(properties, dict) or not properties:
            raise SchemaRejected(path, "an object must list its properties")
        extra = node.get("additionalProperties")
        if extra is None:
            node["additionalProperties"] = False
            self.notes.append(f"{path}: additionalProperties set to false")
        elif extra is not False:
            raise SchemaRejected(
                f"{path}.additionalProperties",
                "must be false (strict mode cannot accept other properties)",
            )
        self.properties += len(properties)
        required = list(node.get("required") or [])
        for name, sub in properties.items():
            sub = self.normalise(sub, f"{path}.properties.{name}", depth + 1)
            if name not in required:
                required.append(name)
                if not _accepts_null(sub):
                    sub = {"anyOf": [sub, {"type": "null"}]}
                self.notes.append(f"{path}.properties.{name}: optional, made required and nullable")
            properties[name] = sub
        node["required"] = required


def _is_object(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    return kind == "object" or (isinstance(kind, list) and "object" in kind)


def _accepts_null(node: Any) -> bool:
    if not isinstance(node, dict):
        return False
    kind = node.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    return any(_accepts_null(b) for b in node.get("anyOf") or [])


def strip_optional_nulls(
    value: Any, schema: dict[str, Any], root: dict[str, Any] | None = None
) -> Any:
    """Remove ``null``s the model gave for optional properties that do not accept null."""
    root = root if root is not None else schema
    schema = _resolve(schema, root)
    if isinstance(value, dict) and isinstance(schema.get("properties"), dict):
        required = set(schema.get("required") or [])
        for name, sub in schema["properties"].items():
            if name not in value:
                continue
            if (
                value[name] is None
                and name not in required
                and not _accepts_null(_resolve(sub, root))
            ):
                del value[name]
            else:
                value[name] = strip_optional_nulls(value[name], sub, root)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [strip_optional_nulls(v, schema["items"], root) for v in value]
    return value


def _resolve(node: Any, root: dict[str, Any]) -> dict[str, Any]:
    seen = 0
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) and seen < 32:
        ref = node["$ref"]
        if ref == "#":
            return root
        target: Any = root
        for part in ref.removeprefix("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        node = target
        seen += 1
    return node if isinstance(node, dict) else {}


def validation_error(value: Any, schema: dict[str, Any]) -> str | None:
    """Why ``value`` does not satisfy ``schema`` (one line), or None if it does."""
    error = best_match(Draft202012Validator(schema).iter_errors(value))
    if error is None:
        return None
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    message = error.message if len(error.message) <= 300 else error.message[:299] + "…"
    return f"{'$' + where}: {message}"
