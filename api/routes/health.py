"""Liveness and readiness."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from aijobs.api.deps import StateDep
from aijobs.api.openapi import errors

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """The process is up."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """What the API depends on, each `ok` or why not."""

    status: Literal["ok", "unavailable"]
    redis: str = Field(description="`ok`, or `unavailable: <error>`")
    database: str = Field(description="`ok`, or `unavailable: <error>`")


@router.get("/healthz", operation_id="getHealth", response_model=Health, responses=errors(413))
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    operation_id="getReadiness",
    response_model=Readiness,
    responses={
        503: {"model": Readiness, "description": "Redis or the database does not answer."},
        **errors(413),
    },
)
async def readyz(state: StateDep) -> JSONResponse:
    """Redis and the database answer."""
    checks: dict[str, str] = {}
    try:
        await state.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    try:
        await run_in_threadpool(state.repo.db.ping)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", **checks}, 200 if ready else 503
    )
