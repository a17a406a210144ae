"""The API app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from aijobs import __version__
from aijobs.api.errors import install_error_handlers
from aijobs.api.guards import RequestGuard
from aijobs.api.routes import console, events, health, jobs, metrics
from aijobs.api.state import ApiState
from aijobs.settings import Settings


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
        lifespan=lifespan,
    )
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
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
            expose_headers=["Location", "Idempotent-Replayed", "Retry-After"],
            max_age=600,
        )
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(jobs.router)
    app.include_router(events.router)
    app.include_router(console.router)
    return app
