"""Error answers: short, stable messages that name the offending field.

This is the one place where what went wrong becomes an HTTP answer: the domain raises
``aijobs.errors.Refused`` and its kinds (422, 413, 429, 404, 409), storage errors become
503, and request validation a 422 with the field. Every answer is an
``aijobs.schemas.ErrorBody``, as the OpenAPI document says (``aijobs.api.openapi``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from aijobs.api.guards import STORE_UNAVAILABLE, BodyTooLarge
from aijobs.errors import Refused
from aijobs.schemas import JobKind

_KINDS = ", ".join(k.value for k in JobKind)
log = logging.getLogger(__name__)


def field_path(loc: Sequence[Any]) -> str:
    """``('body', 'generate', 'messages', 0, 'role')`` -> ``messages[0].role``."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    if parts and parts[0] in {k.value for k in JobKind}:
        parts = parts[1:]  # the discriminated union's tag
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and _is_type_tag(part):
            continue  # which member of a union pydantic tried: not a field
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "constrained-str"})


def _is_type_tag(part: str) -> bool:
    return part in _TYPE_TAGS or "[" in part or part.startswith(("function-", "lax-or-strict"))


def describe(error: Mapping[str, Any]) -> dict[str, str]:
    """One validation error as ``{"field", "message"}``."""
    kind = error.get("type", "")
    if kind in ("union_tag_not_found", "union_tag_invalid"):
        return {"field": "kind", "message": f"must be one of: {_KINDS}"}
    if kind == "json_invalid":
        return {"field": "body", "message": "the body is not valid JSON"}
    if kind == "extra_forbidden":
        return {"field": field_path(error["loc"]), "message": "unknown field"}
    return {"field": field_path(error["loc"]), "message": str(error.get("msg", "invalid"))}


def validation_response(errors: Sequence[dict[str, Any]]) -> JSONResponse:
    """422 with a one-line ``detail`` and the errors field by field."""
    detail, described = validation_detail(errors)
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": detail, "errors": described},
    )


def validation_detail(errors: Sequence[Mapping[str, Any]]) -> tuple[str, list[dict[str, str]]]:
    """A one-line ``detail`` of validation errors, and the errors field by field."""
    described = [describe(e) for e in errors]
    # A union reports every member's complaint; keep the most specific ones (a
    # complaint about `input[1]` makes the one about `input` as a whole noise).
    paths = [d["field"] for d in described]
    described = [
        d
        for d in described
        if not any(
            p != d["field"] and p.startswith((d["field"] + "[", d["field"] + ".")) for p in paths
        )
    ]
    detail = "; ".join(f"{d['field']}: {d['message']}" for d in described[:5])
    return detail, described


def refusal_response(exc: Refused) -> JSONResponse:
    """The answer to a refused request (also a WebSocket handshake's denial)."""
    headers = {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    return JSONResponse({"detail": exc.detail}, exc.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that shape error answers."""

    async def on_validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_response(list(exc.errors()))

    async def on_store_down(_request: Request, exc: SQLAlchemyError) -> JSONResponse:
        log.error("job store error: %s", type(exc).__name__)
        return JSONResponse({"detail": STORE_UNAVAILABLE}, 503)

    async def on_redis_down(_request: Request, exc: RedisError) -> JSONResponse:
        log.error("Redis error: %s", type(exc).__name__)
        return JSONResponse({"detail": "Redis is unavailable; try again"}, 503)

    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI answers a body it could not parse with a 400; one nested deeper than
        # the parser goes is bad input like any other: a 422 that says so.
        if isinstance(exc.__cause__, RecursionError):
            return validation_response(
                [{"type": "json_too_deep", "loc": ("body",), "msg": "nested too deeply"}]
            )
        if isinstance(exc.__cause__, UnicodeDecodeError):
            # Bytes that are not UTF-8 are not JSON either: the same 422 as any other
            # body the parser refused, not FastAPI's bare 400.
            return validation_response([{"type": "json_invalid", "loc": ("body",)}])
        if isinstance(exc.__cause__, BodyTooLarge):  # found while FastAPI read the body
            return JSONResponse({"detail": str(exc.__cause__)}, 413)
        return await http_exception_handler(request, exc)

    async def on_refused(_request: Request, exc: Refused) -> JSONResponse:
        return refusal_response(exc)

    app.add_exception_handler(Refused, on_refused)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, on_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(SQLAlchemyError, on_store_down)  # type: ignore[arg-type]
    app.add_exception_handler(RedisError, on_redis_down)  # type: ignore[arg-type]
