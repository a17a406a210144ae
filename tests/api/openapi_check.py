"""Holds live answers to an OpenAPI document: the answer's status must be documented for
its operation, its body must match the documented schema (an event stream: every frame
and every frame's JSON data), and its required headers must be there."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from openapi_schema_validator import OAS31Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from aijobs.sse import SseDecoder, iter_lines

_URI = "urn:aijobs:openapi"
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def _pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def _media(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


@dataclass(frozen=True)
class Operation:
    """One documented method on one path."""

    method: str
    path: str
    pattern: re.Pattern[str]
    spec: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.spec["operationId"])


@dataclass
class Seen:
    """An answer the document was held to."""

    operation: str
    status: str
    what: str
    problems: list[str] = field(default_factory=list)


class DocumentCheck:
    """Checks answers against ``document`` and remembers each one it saw."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.registry = Registry().with_resource(_URI, DRAFT202012.create_resource(document))
        self.operations: list[Operation] = []
        for path, item in document["paths"].items():
            regex = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$"
            for method in _METHODS:
                if method in item:
                    self.operations.append(Operation(method, path, re.compile(regex), item[method]))
        self.seen: list[Seen] = []

    # -- what the document says

    def documented(self) -> set[tuple[str, str]]:
        """Every (operation id, status) the document lists."""
        return {(op.id, status) for op in self.operations for status in op.spec["responses"]}

    def operation(self, method: str, path: str) -> Operation:
        for op in self.operations:
            if op.method == method.lower() and op.pattern.match(path):
                return op
        raise AssertionError(f"{method} {path} is not in the document")

    def problems_at(self, instance: Any, pointer: str) -> list[str]:
        """Where ``instance`` breaks the schema at ``pointer`` in the document."""
        schema = {"$ref": f"{_URI}#{quote(pointer, safe='/~')}"}
        validator = OAS31Validator(
            schema, registry=self.registry, format_checker=OAS31Validator.FORMAT_CHECKER
        )
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:300]}"
            for e in validator.iter_errors(instance)
        ]

    # -- answers

    def check(self, response: httpx.Response, what: str = "") -> Seen:
        """Hold a read answer (its whole body) to the document."""
        op, status, answer, seen = self._start(response, what)
        if answer is None:
            return seen
        content = answer.get("content")
        body = response.read()
        if not content:
            if body:
                seen.problems.append(f"a body where none is documented: {body[:200]!r}")
            return seen
        media = self._media_of(response, content, seen)
        if media is None:
            return seen
        base = _pointer("paths", op.path, op.method, "responses", status, "content", media)
        if media == "application/json":
            try:
                instance = json.loads(body)
            except ValueError:
                seen.problems.append(f"not JSON: {body[:200]!r}")
                return seen
            seen.problems += self.problems_at(instance, base + "/schema")
        elif media == "text/event-stream":
            seen.problems += self._frames(iter_lines(iter([body])), base)
        return seen

    def check_stream(self, response: httpx.Response, what: str = "") -> Seen:
        """Hold an open event stream to the document, reading it to its end."""
        op, status, answer, seen = self._start(response, what)
        if answer is None:
            return seen
        content = answer.get("content") or {}
        media = self._media_of(response, content, seen)
        if media != "text/event-stream":
            seen.problems.append(f"{media} where a stream was expected")
            response.read()
            return seen
        base = _pointer("paths", op.path, op.method, "responses", status, "content", media)
        seen.problems += self._frames(iter_lines(response.iter_bytes()), base)
        return seen

    def _start(
        self, response: httpx.Response, what: str
    ) -> tuple[Operation, str, dict[str, Any] | None, Seen]:
        request = response.request
        op = self.operation(request.method, request.url.path)
        status = str(response.status_code)
        seen = Seen(op.id, status, what or f"{request.method} {request.url.path}")
        self.seen.append(seen)
        answer = op.spec["responses"].get(status)
        if answer is None:
            seen.problems.append(f"status {status} is not documented for {op.id}")
            response.read()
            return op, status, None, seen
        for name, header in (answer.get("headers") or {}).items():
            if header.get("required") and name not in response.headers:
                seen.problems.append(f"the required header {name} is missing")
        return op, status, answer, seen

    def _media_of(
        self, response: httpx.Response, content: dict[str, Any], seen: Seen
    ) -> str | None:
        media = _media(response.headers.get("content-type", ""))
        if media not in {_media(m) for m in content}:
            seen.problems.append(f"content type {media!r}; documented: {sorted(content)}")
            response.read()
            return None
        return next(m for m in content if _media(m) == media)

    def _frames(self, lines: Iterator[bytes], base: str) -> list[str]:
        """Problems of each event frame against ``x-itemSchema`` and its data's schema."""
        item_pointer = base + "/x-itemSchema"
        branches: Any = self.document
        for part in item_pointer.strip("/").split("/"):
            branches = branches.get(part.replace("~1", "/").replace("~0", "~"), {})
        if not branches.get("oneOf"):
            return ["no x-itemSchema (one schema per event type) is documented"]
        by_event = {b["properties"]["event"]["const"]: i for i, b in enumerate(branches["oneOf"])}
        problems: list[str] = []
        decoder = SseDecoder()
        frames = 0
        for line in lines:
            message = decoder.feed(line)
            if message is None:
                continue
            frames += 1
            frame = {"event": message.event, "data": message.data}
            if message.id is not None:
                frame["id"] = message.id
            label = f"event {message.id} ({message.event})"
            problems += [f"{label}: {p}" for p in self.problems_at(frame, item_pointer)]
            if message.event not in by_event:
                continue
            data_pointer = f"{item_pointer}/oneOf/{by_event[message.event]}"
            data_pointer += "/properties/data/contentSchema"
            try:
                data = json.loads(message.data)
            except ValueError:
                problems.append(f"{label}: data is not JSON: {message.data[:200]!r}")
                continue
            problems += [f"{label} data: {p}" for p in self.problems_at(data, data_pointer)]
        if not frames:
            problems.append("an event stream without an event")
        return problems
