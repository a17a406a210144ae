"""Deterministic JSON values that satisfy a JSON Schema (OpenAI structured-outputs subset).

Supported: ``type`` (object, string, number, integer, boolean, null, array, and lists of
those such as ``["string", "null"]``), ``properties``/``required``/``additionalProperties``,
``enum``, ``const``, ``anyOf``/``oneOf``, ``allOf`` (merged shallowly), ``items`` and
``prefixItems``, ``minItems``/``maxItems``, ``minLength``/``maxLength``,
``minimum``/``maximum``/``exclusiveMinimum``/``exclusiveMaximum``/``multipleOf`` (loosely),
``format`` (date, date-time, time, email, uri, uuid, ipv4, hostname, duration) and ``$ref`` to
``#/$defs/...``, ``#/definitions/...`` or any other local JSON pointer. ``pattern`` is not
honoured. Recursive schemas are cut off by choosing ``null`` branches and minimal arrays once
the nesting gets deep.
"""

from __future__ import annotations

import copy
import json
import math
import random
import uuid
from collections.abc import Mapping
from typing import Any

from aijobs.devtools.simulator.text import VOCABULARY

_MAX_DEPTH = 10
_HARD_DEPTH = 100
_TYPE_ORDER = ("object", "array", "string", "integer", "number", "boolean", "null")


class SchemaError(ValueError):
    """The schema cannot be satisfied or uses an unresolvable ``$ref``."""


def build_value(schema: Mapping[str, Any], seed: int = 0) -> Any:
    """Return a JSON-ready value that satisfies ``schema``; the same inputs give the same value."""
    return _Builder(schema, random.Random(seed)).build(schema, 0)


def build_json_text(schema: Mapping[str, Any], seed: int = 0) -> str:
    """Return :func:`build_value` serialised compactly (as a model would answer)."""
    return json.dumps(build_value(schema, seed), ensure_ascii=False, separators=(",", ":"))


def violate(schema: Mapping[str, Any], value: Any) -> Any:
    """Return valid JSON that breaks ``schema`` (for ``schema_violation`` faults).

    For objects: drop the first required property, else add an unexpected property; for
    anything else: a value of the wrong type.
    """
    root = _Builder(schema, random.Random(0))
    resolved = root.resolve(schema)
    if isinstance(value, dict):
        broken = copy.deepcopy(value)
        required = [k for k in resolved.get("required", []) if k in broken]
        if required:
            del broken[required[0]]
            return broken
        broken["unexpected_property"] = True
        if resolved.get("additionalProperties") is False:
            return broken
        return [value]
    if isinstance(value, str):
        return 12345
    return "not the expected type"


class _Builder:
    def __init__(self, root: Mapping[str, Any], rng: random.Random) -> None:
        self.root = root
        self.rng = rng

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        seen = 0
        while "$ref" in schema:
            ref = schema["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#"):
                raise SchemaError(f"unsupported $ref {ref!r}")
            node: Any = self.root
            for raw in [p for p in ref[1:].split("/") if p]:
                part = raw.replace("~1", "/").replace("~0", "~")
                if isinstance(node, Mapping) and part in node:
                    node = node[part]
                elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                    node = node[int(part)]
                else:
                    raise SchemaError(f"unresolvable $ref {ref!r}")
            if not isinstance(node, Mapping):
                raise SchemaError(f"$ref {ref!r} is not a schema")
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**node, **siblings} if siblings else node
            seen += 1
            if seen > 64:
                raise SchemaError("$ref cycle")
        return schema

    def build(self, schema: Any, depth: int) -> Any:
        if schema is True or schema is None:
            return self.string({}, depth)
        if schema is False:
            raise SchemaError("false schema cannot be satisfied")
        if not isinstance(schema, Mapping):
            raise SchemaError(f"schema must be an object, got {type(schema).__name__}")
        if depth > _HARD_DEPTH:
            raise SchemaError("schema nests too deeply (non-terminating recursion?)")
        schema = self.resolve(schema)
        if "const" in schema:
            return copy.deepcopy(schema["const"])
        if "enum" in schema:
            options = list(schema["enum"])
            if not options:
                raise SchemaError("empty enum")
            return copy.deepcopy(options[self.rng.randrange(len(options))])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                branch = self.pick_branch(list(schema[key]), depth)
                rest = {k: v for k, v in schema.items() if k != key}
                return self.build({**rest, **self.resolve(branch)} if rest else branch, depth)
        if "allOf" in schema:
            return self.build(self.merge_all_of(schema), depth)
        kind = self.pick_type(schema, depth)
        return getattr(self, kind)(schema, depth)

    def merge_all_of(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = self.resolve(part)
            for key, val in part.items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **val}
                elif key == "required":
                    merged["required"] = list(dict.fromkeys([*merged.get("required", []), *val]))
                else:
                    merged.setdefault(key, val)
        return merged

    def pick_branch(self, branches: list[Any], depth: int) -> Any:
        if not branches:
            raise SchemaError("empty anyOf")
        resolved = [self.resolve(b) if isinstance(b, Mapping) else b for b in branches]
        if depth >= _MAX_DEPTH:
            for original, b in zip(branches, resolved, strict=True):
                if isinstance(b, Mapping) and _is_leaf(b):
                    return original
        for original, b in zip(branches, resolved, strict=True):
            if not (isinstance(b, Mapping) and b.get("type") == "null"):
                return original
        return branches[0]

    def pick_type(self, schema: Mapping[str, Any], depth: int) -> str:
        declared = schema.get("type")
        if declared is None:
            if "properties" in schema or "additionalProperties" in schema:
                return "object"
            if "items" in schema or "prefixItems" in schema:
                return "array"
            return "string"
        types = [declared] if isinstance(declared, str) else list(declared)
        unknown = [t for t in types if t not in _TYPE_ORDER]
        if unknown or not types:
            raise SchemaError(f"unsupported type {declared!r}")
        if depth >= _MAX_DEPTH and "null" in types:
            return "null"
        non_null = [t for t in types if t != "null"]
        return non_null[0] if non_null else "null"

    # --- one method per JSON type -------------------------------------------------------

    def object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        props: Mapping[str, Any] = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        out: dict[str, Any] = {}
        for name, sub in props.items():
            if depth >= _MAX_DEPTH and name not in required:
                continue
            out[name] = self.build(sub, depth + 1)
        for name in required:
            if name not in out:
                extra = schema.get("additionalProperties")
                out[name] = self.build(extra if isinstance(extra, Mapping) else {}, depth + 1)
        return out

    def array(self, schema: Mapping[str, Any], depth: int) -> list[Any]:
        lo = int(schema.get("minItems", 0))
        hi = schema.get("maxItems")
        prefix = list(schema.get("prefixItems") or [])
        want = lo if depth >= _MAX_DEPTH else max(lo, 2)
        if hi is not None:
            want = min(want, int(hi))
        if want < lo:
            raise SchemaError("minItems > maxItems")
        items = schema.get("items", {})
        out: list[Any] = []
        for i in range(want):
            sub = prefix[i] if i < len(prefix) else items
            if sub is False:
                break
            out.append(self.build(sub, depth + 1))
        return out

    def string(self, schema: Mapping[str, Any], depth: int) -> str:
        fmt = schema.get("format")
        text = self.formatted(fmt) if isinstance(fmt, str) else None
        if text is None:
            count = self.rng.randint(2, 5)
            text = " ".join(self.rng.choice(VOCABULARY) for _ in range(count))
        lo = int(schema.get("minLength", 0))
        hi = schema.get("maxLength")
        while len(text) < lo:
            text += " " + self.rng.choice(VOCABULARY)
        if len(text) < lo:
            text = text.ljust(lo, "x")
        if hi is not None and len(text) > int(hi):
            text = text[: int(hi)].rstrip() if int(hi) >= lo else text[: int(hi)]
            text = text.ljust(lo, "x")
        return text

    def formatted(self, fmt: str) -> str | None:
        day = self.rng.randint(1, 28)
        month = self.rng.randint(1, 12)
        hour = self.rng.randint(0, 23)
        minute = self.rng.randint(0, 59)
        return {
            "date": f"2024-{month:02d}-{day:02d}",
            "date-time": f"2024-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:00Z",
            "time": f"{hour:02d}:{minute:02d}:00",
            "email": f"{self.rng.choice(VOCABULARY)}{day}@example.com",
            "uri": f"https://example.com/{self.rng.choice(VOCABULARY)}",
            "uuid": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "ipv4": f"10.{month}.{day}.{minute}",
            "ipv6": f"fd00::{month:x}:{day:x}",
            "hostname": f"{self.rng.choice(VOCABULARY)}.example.com",
            "duration": f"PT{hour}H{minute}M",
        }.get(fmt)

    def number(self, schema: Mapping[str, Any], depth: int) -> float:
        lo, hi = _bounds(schema)
        lo_ex = "exclusiveMinimum" in schema and not isinstance(schema["exclusiveMinimum"], bool)
        hi_ex = "exclusiveMaximum" in schema and not isinstance(schema["exclusiveMaximum"], bool)
        jitter = round(self.rng.uniform(0, 10), 2)
        if lo is not None and hi is not None:
            value = (float(lo) + float(hi)) / 2
        elif hi is not None:
            value = float(hi) - (1.0 if hi_ex else 0.0) - jitter
        elif lo is not None:
            value = float(lo) + (1.0 if lo_ex else 0.0) + jitter
        else:
            value = jitter * 10
        step = schema.get("multipleOf")
        if isinstance(step, int | float) and step > 0:
            value = _snap_multiple(value, float(step), lo, hi)
        return value

    def integer(self, schema: Mapping[str, Any], depth: int) -> int:
        lo, hi = _bounds(schema)
        ilo = None if lo is None else _int_above(lo, _exclusive(schema, "exclusiveMinimum"))
        ihi = None if hi is None else _int_below(hi, _exclusive(schema, "exclusiveMaximum"))
        jitter = self.rng.randint(0, 10)
        if ilo is not None and ihi is not None:
            if ilo > ihi:
                raise SchemaError("no integer within bounds")
            value = ilo + jitter % (ihi - ilo + 1)
        elif ihi is not None:
            value = ihi - jitter
        elif ilo is not None:
            value = ilo + jitter
        else:
            value = 1 + jitter * 7
        step = schema.get("multipleOf")
        if isinstance(step, int) and step > 0 and value % step:
            up = value + (step - value % step)
            value = up if ihi is None or up <= ihi else value - value % step
        return value

    def boolean(self, schema: Mapping[str, Any], depth: int) -> bool:
        return self.rng.random() < 0.5

    def null(self, schema: Mapping[str, Any], depth: int) -> None:
        return None


def _is_leaf(schema: Mapping[str, Any]) -> bool:
    declared = schema.get("type")
    types = [declared] if isinstance(declared, str) else list(declared or [])
    return (bool(types) and not ({"object", "array"} & set(types))) or "null" in types


def _exclusive(schema: Mapping[str, Any], key: str) -> bool:
    return key in schema and not isinstance(schema[key], bool)


def _bounds(schema: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """Return the (lower, upper) bounds, inclusive or exclusive (Draft 2020-12 keywords)."""
    lo = schema.get("minimum")
    hi = schema.get("maximum")
    ex_lo = schema.get("exclusiveMinimum")
    ex_hi = schema.get("exclusiveMaximum")
    if isinstance(ex_lo, int | float) and not isinstance(ex_lo, bool):
        lo = ex_lo if lo is None else max(lo, ex_lo)
    if isinstance(ex_hi, int | float) and not isinstance(ex_hi, bool):
        hi = ex_hi if hi is None else min(hi, ex_hi)
    return lo, hi


def _int_above(bound: float, exclusive: bool) -> int:
    value = math.ceil(bound)
    return value + 1 if exclusive and value == bound else value


def _int_below(bound: float, exclusive: bool) -> int:
    value = math.floor(bound)
    return value - 1 if exclusive and value == bound else value


def _snap_multiple(value: float, step: float, lo: float | None, hi: float | None) -> float:
    snapped = math.floor(value / step) * step
    if lo is not None and snapped < lo:
        snapped += step
    if hi is not None and snapped > hi:
        snapped -= step
    return round(snapped, 10)
