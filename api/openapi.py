"""The OpenAPI document: every status a route can answer, with the body it answers.

Routes declare their error answers with ``errors(...)``, so the document shows the API's
own error body (``ErrorBody``) under every status it is sent with, the guard's answers
(401, 413, 429 before a route runs) included. ``install_openapi`` then drops what FastAPI
adds on its own: a 422 with its ``HTTPValidationError``, which this API never sends (its
422 is an ``ErrorBody``) and which a route without validated input cannot answer at all.
``tests/api/test_openapi.py`` holds the document to the live answers, both ways.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

from aijobs.schemas import ErrorBody

Responses = dict[int | str, dict[str, Any]]

_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
_CHALLENGE = {
    "WWW-Authenticate": {"description": "`Bearer`", "required": True, "schema": {"type": "string"}}
}

#: What each error status means on any route; a route may say it more precisely.
_MEANING: dict[int, str] = {
    401: "No API key, or not a live one (`Authorization: Bearer <key>`); checked before "
    "the body is read.",
    402: "The tenant's USD budget for the day or month is spent (`detail` names it and "
    "when it resets); nothing was queued.",
    404: "No such job for this caller: another tenant's job is answered exactly as an unknown id.",
    409: "The Idempotency-Key was used before with a different request.",
    413: "The request body is larger than `AIJOBS_MAX_BODY_BYTES` (an embed job's "
    "submission: `AIJOBS_MAX_JOBS_BODY_BYTES`); refused as soon as it passes the limit.",
    422: "Invalid input: `detail` names the field; a request that failed validation also "
    "has `errors`, field by field.",
    429: "Too many failed key checks from this address; `Retry-After` says when to try again.",
    503: "The job store or Redis is unavailable; try again.",
}
_HEADERS: dict[int, dict[str, Any]] = {401: _CHALLENGE, 429: _RETRY_AFTER}

#: The answers of a route under /v1 that no route code decides: the key is checked (401,
#: 429 for an address that keeps failing), the body bounded (413), the store read (503).
V1_GUARD = (401, 413, 429, 503)


def errors(*statuses: int, **meanings: str) -> Responses:
    """``responses=`` for these error statuses, each with ``ErrorBody``; a keyword
    ``s429="..."`` says what that status means on this route."""
    answers: Responses = {}
    for status in sorted(set(statuses)):
        answer: dict[str, Any] = {
            "model": ErrorBody,
            "description": meanings.get(f"s{status}", _MEANING[status]),
        }
        if status in _HEADERS:
            answer["headers"] = copy.deepcopy(_HEADERS[status])
        answers[status] = answer
    return answers


def event_stream_content(item_schema: dict[str, Any], example: str) -> dict[str, Any]:
    """The ``content`` of a Server-Sent Events answer. The frame's grammar goes in
    ``x-itemSchema``: OpenAPI 3.2 names it ``itemSchema``, a field a 3.1 document may
    not carry."""
    return {
        "text/event-stream": {
            "schema": {"type": "string", "description": "a stream of Server-Sent Events"},
            "x-itemSchema": item_schema,
            "example": example,
        }
    }


def _default_validation(answer: dict[str, Any]) -> bool:
    """True for the 422 FastAPI adds by itself (its ``HTTPValidationError`` body)."""
    schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
    return str(schema.get("$ref", "")).endswith("/HTTPValidationError")


def prune_default_validation(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` without FastAPI's own 422 answers and their schemas."""
    for item in document.get("paths", {}).values():
        for operation in item.values():
            answers = operation.get("responses", {}) if isinstance(operation, dict) else {}
            if "422" in answers and _default_validation(answers["422"]):
                del answers["422"]
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return document


def install_openapi(app: FastAPI, security_schemes: dict[str, Any]) -> None:
    """Serve the pruned document (built once, on first request), with ``security_schemes``
    added to the ones FastAPI found in the routes' dependencies."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = prune_default_validation(build())
            components = document.setdefault("components", {})
            components.setdefault("securitySchemes", {}).update(security_schemes)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
