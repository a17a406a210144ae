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
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jsonschema_rs

from aijobs.errors import InvalidInput
from aijobs.jsonsize import deeper_than

MAX_PROPERTIES = 5000
MAX_DEPTH = 10
MAX_ENUM_VALUES = 1000
#: Nesting of the schema as JSON (any key), checked before anything walks it.
MAX_JSON_DEPTH = 40
#: Nodes of the schema with every $ref written out: validation visits about this many
#: per value node, so a chain of anyOf/$ref that doubles at each step is refused here.
MAX_EXPANDED_NODES = 20_000
#: Patterns run on Rust's regex engine (no backtracking: linear time, whatever the
#: pattern and the text); this bounds one compiled pattern's size.
PATTERN_SIZE_LIMIT = 1 << 20
_REGEX = jsonschema_rs.RegexOptions(size_limit=PATTERN_SIZE_LIMIT)

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


class SchemaRejected(InvalidInput):
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
    if deeper_than(schema, MAX_JSON_DEPTH):
        raise SchemaRejected("schema", f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        jsonschema_rs.meta.validate(schema)
    except jsonschema_rs.ValidationError as exc:
        where = _where(exc.instance_path)
        raise SchemaRejected(f"schema{where}", f"not a valid JSON Schema: {exc.message}") from None
    for path, pattern in _patterns(schema, "schema"):
        _check_pattern(path, pattern)
    expanded = _expanded_nodes(schema)
    if expanded > MAX_EXPANDED_NODES:
        raise SchemaRejected(
            "schema",
            f"too large once its $refs are written out ({expanded} nodes or more; at most "
            f"{MAX_EXPANDED_NODES}): validating against it would take too long",
        )
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
    """Why ``value`` does not satisfy ``schema`` (one line), or None if it does.

    On Rust's validator with linear-time patterns; the schema was bounded at submit.
    """
    validator = _validator(json.dumps(schema, sort_keys=True, separators=(",", ":")))
    errors = list(validator.iter_errors(value))
    if not errors:
        return None
    # The deepest error is the most specific (an anyOf's branches say less than the
    # property inside that failed).
    error = max(errors, key=lambda e: len(e.instance_path))
    message = error.message if len(error.message) <= 300 else error.message[:299] + "…"
    return f"${_where(error.instance_path)}: {message}"


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    return jsonschema_rs.validator_for(json.loads(schema_json), pattern_options=_REGEX)


def _where(path: Any) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def _patterns(node: Any, path: str) -> list[tuple[str, str]]:
    """Every ``pattern`` in the schema, with where it is (iteratively: any depth)."""
    found: list[tuple[str, str]] = []
    stack = [(node, path)]
    while stack:
        current, where = stack.pop()
        if isinstance(current, dict):
            pattern = current.get("pattern")
            if isinstance(pattern, str):
                found.append((f"{where}.pattern", pattern))
            stack.extend((v, f"{where}.{k}") for k, v in current.items())
        elif isinstance(current, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(current))
    return found


def _check_pattern(path: str, pattern: str) -> None:
    try:
        jsonschema_rs.validator_for({"type": "string", "pattern": pattern}, pattern_options=_REGEX)
    except (jsonschema_rs.ValidationError, ValueError) as exc:
        detail = str(exc).splitlines()[0][:200]
        raise SchemaRejected(
            path,
            "this pattern cannot be checked in linear time (look-around and back-references "
            f"are not supported), or is too large: {detail}",
        ) from None


def _expanded_nodes(schema: dict[str, Any]) -> int:
    """How many nodes the schema has with its local $refs written out (recursion counted
    once), stopping as soon as the count passes the limit."""
    sizes: dict[str, int] = {}
    open_refs: set[str] = set()

    def size_of_ref(ref: str) -> int:
        if ref in sizes:
            return sizes[ref]
        if ref in open_refs:
            return 1  # recursion: bounded by the value's own depth, not the schema's
        target = _target(ref, schema)
        if target is None:
            return 1
        open_refs.add(ref)
        sizes[ref] = size(target)
        open_refs.discard(ref)
        return sizes[ref]

    def size(node: Any) -> int:
        total = 0
        stack = [node]
        while stack:
            current = stack.pop()
            total += 1
            if total > MAX_EXPANDED_NODES:
                return total
            if isinstance(current, dict):
                ref = current.get("$ref")
                if isinstance(ref, str):
                    total += size_of_ref(ref)
                stack.extend(v for k, v in current.items() if k not in ("$defs", "definitions"))
            elif isinstance(current, list):
                stack.extend(current)
        return total

    return size(schema)


def _target(ref: str, root: dict[str, Any]) -> Any:
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return None
    return node
