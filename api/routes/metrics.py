"""Prometheus metrics of this API process."""

from __future__ import annotations

import hmac
import os
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Response, status
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from redis.exceptions import RedisError

from aijobs.api.auth import bearer_key
from aijobs.api.deps import StateDep
from aijobs.api.openapi import errors
from aijobs.metrics import QUEUE_DEPTH

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    operation_id="getMetrics",
    response_class=Response,
    responses={
        200: {
            "description": "The Prometheus text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **errors(401, 413, s401="`AIJOBS_METRICS_TOKEN` is set and the scrape lacks it."),
    },
    openapi_extra={"security": [{}, {"MetricsToken": []}]},
)
def metrics(
    state: StateDep, authorization: Annotated[str | None, Header(include_in_schema=False)] = None
) -> Response:
    """Prometheus text format: jobs, queue depth, readers, and the process.

    With ``AIJOBS_METRICS_TOKEN`` set, a scrape must carry it as a bearer token.
    """
    wanted = state.settings.metrics_token
    if wanted is not None:
        given = bearer_key(authorization) or ""
        if not hmac.compare_digest(given.encode(), wanted.get_secret_value().encode()):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "metrics need the token of AIJOBS_METRICS_TOKEN",
                headers={"WWW-Authenticate": "Bearer"},
            )
    try:
        waiting = state.queue.waiting()
    except RedisError:
        waiting = {}  # a scrape must not fail because Redis blinked; the gauge keeps its last
    for kind, depth in waiting.items():
        QUEUE_DEPTH.labels(kind).set(depth)
    return Response(generate_latest(_registry()), media_type=CONTENT_TYPE_LATEST)


def _registry() -> CollectorRegistry:
    """This process's metrics; under ``aijobs api --workers N``, all N processes' summed."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry
