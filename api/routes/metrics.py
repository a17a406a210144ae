"""Prometheus metrics of this API process."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
def metrics() -> Response:
    """Prometheus text format: jobs, queue depth, readers, and the process."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
