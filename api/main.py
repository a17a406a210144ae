"""The API app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from aijobs import __version__
from aijobs.api.errors import install_error_handlers
from aijobs.api.guards import RequestGuard
from aijobs.api.openapi import install_openapi
from aijobs.api.routes import (
    batch,
    console,
    events,
    health,
    job_actions,
    jobs,
    metrics,
    usage,
)
from aijobs.api.state import ApiState
from aijobs.settings import Settings

_DESCRIPTION = """\
Submit generate, extract and embed jobs, read them, and follow their events live.

Every `/v1` request carries `Authorization: Bearer <key>`. Every error answer is an
`ErrorBody`: `{"detail": "..."}`, a line that names the field where there is one, plus
`"errors": [{"field", "message"}]` when the request failed validation.
"""

_TAGS = [
    {
        "name": "jobs",
        "description": "Submit (one, or a batch), read, list, cancel, retry and delete jobs.",
    },
    {
        "name": "events",
        "description": "A job's events as Server-Sent Events, resumable by event id. "
        "`GET /v1/jobs/{job_id}/ws` serves the same events over a WebSocket (same key or "
        'event token, `?after=`), as JSON messages `{"id", "event", "data"}`.',
    },
    {"name": "health", "description": "Liveness, readiness and Prometheus metrics."},
]

#: Schemes the routes' dependencies do not declare (FastAPI finds ``HTTPBearer`` itself).
_SECURITY_SCHEMES = {
    "EventToken": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "A job's event token (`POST /v1/jobs/{job_id}/token`), for browsers.",
    },
    "MetricsToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "`AIJOBS_METRICS_TOKEN`, when set.",
    },
}


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API for ``settings`` (read from the environment when not given)."""
    settings = settings or Settings()
    settings.require_redis_url()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.aijobs = await ApiState.open(settings)
        try:
            yield
        finally:
            await app.state.aijobs.close()

    app = FastAPI(
        title="aijobs",
        version=__version__,
        summary="Background AI jobs with resumable token streams.",
        description=_DESCRIPTION,
        openapi_tags=_TAGS,
        lifespan=lifespan,
    )
    install_openapi(app, _SECURITY_SCHEMES)
    install_error_handlers(app)
    app.add_middleware(
        RequestGuard,
        max_body_bytes=settings.max_body_bytes,
        max_jobs_body_bytes=settings.max_jobs_body_bytes,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
            expose_headers=["Location", "Idempotent-Replayed", "Retry-After"],
            max_age=600,
        )
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(batch.router)  # before jobs: /v1/jobs/batch is no job id
    app.include_router(jobs.router)
    app.include_router(job_actions.router)
    app.include_router(usage.router)
    app.include_router(events.router)
    app.include_router(console.router)
    return app
