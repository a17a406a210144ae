"""A job's events as Server-Sent Events, resumable by event id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import StateDep, TenantDep
from workers.events.follow import StoredOutcome, follow_job
from workers.schemas import JobStatus

router = APIRouter(prefix="/v1/jobs", tags=["events"])

_RETRY_MS = 2000
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


def parse_cursor(after: int | None, last_event_id: str | None) -> int:
    """The event id to resume after: the Last-Event-ID header wins over ``?after=``."""
    if last_event_id is not None and last_event_id.strip():
        value = last_event_id.strip()
        if not value.isdigit():
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                "Last-Event-ID: must be an event id (a non-negative integer)",
            )
        return int(value)
    return after or 0


@router.get("/{job_id}/events", response_class=StreamingResponse)
async def job_events(
    job_id: str,
    request: Request,
    state: StateDep,
    tenant: TenantDep,
    after: Annotated[int | None, Query(ge=0, description="resume after this event id")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Server-Sent Events: everything after the cursor, then live, until ``done``."""
    cursor = parse_cursor(after, last_event_id)
    job = await run_in_threadpool(state.repo.get, job_id, tenant=tenant)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "job not found")

    async def load_outcome() -> StoredOutcome | None:
        row = await run_in_threadpool(state.repo.get, job_id)
        if row is None or not JobStatus(row.status).terminal:
            return None
        return StoredOutcome(row.status, row.result, row.error, row.last_event_id)

    async def stream() -> AsyncIterator[bytes]:
        yield f"retry: {_RETRY_MS}\n\n".encode()
        events = follow_job(
            state.redis,
            state.hub,
            job_id,
            after=cursor,
            load_outcome=load_outcome,
            idle_s=state.settings.sse_keepalive_s,
        )
        async for event in events:
            if event is None:
                yield b": keep-alive\n\n"
            else:
                yield f"id: {event.id}\nevent: {event.event}\ndata: {event.data}\n\n".encode()

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_HEADERS)
