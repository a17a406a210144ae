"""A job's events, resumable by event id: Server-Sent Events and WebSocket."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, HTTPException, Query, WebSocket, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from api.deps import StateDep, TenantDep, bearer_key, tenant_for_key
from api.sse import EventStreamResponse
from api.state import ApiState
from workers import metrics
from workers.events.follow import StoredOutcome, follow_job
from workers.events.protocol import Event
from workers.schemas import JobStatus

router = APIRouter(prefix="/v1/jobs", tags=["events"])
log = logging.getLogger(__name__)

_RETRY_MS = 2000
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


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


async def job_events(
    state: ApiState, job_id: str, after: int, transport: str
) -> AsyncIterator[Event | None]:
    """The job's events after ``after`` (``None`` on quiet spells), until ``done``."""

    async def load_outcome() -> StoredOutcome | None:
        row = await run_in_threadpool(state.repo.get, job_id)
        if row is None or not JobStatus(row.status).terminal:
            return None
        return StoredOutcome(row.status, row.result, row.error, row.last_event_id)

    readers = metrics.STREAM_READERS.labels(transport)
    readers.inc()
    try:
        async for event in follow_job(
            state.redis,
            state.hub,
            job_id,
            after=after,
            load_outcome=load_outcome,
            idle_s=state.settings.sse_keepalive_s,
        ):
            yield event
    finally:
        readers.dec()


@router.get(
    "/{job_id}/events",
    response_model=None,
    responses={200: {"content": {"text/event-stream": {}}, "description": "the event stream"}},
)
async def job_event_stream(
    job_id: str,
    state: StateDep,
    tenant: TenantDep,
    after: Annotated[int | None, Query(ge=0, description="resume after this event id")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventStreamResponse:
    """Server-Sent Events: everything after the cursor, then live, until ``done``."""
    cursor = parse_cursor(after, last_event_id)
    job = await run_in_threadpool(state.repo.get, job_id, tenant=tenant)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "job not found")
    return EventStreamResponse(
        job_events(state, job_id, cursor, "sse"),
        retry_ms=_RETRY_MS,
        send_timeout_s=state.settings.reader_send_timeout_s,
        headers=_HEADERS,
    )


@router.websocket("/{job_id}/ws")
async def job_event_socket(
    websocket: WebSocket,
    job_id: str,
    after: Annotated[int | None, Query(ge=0)] = None,
) -> None:
    """The same events as JSON messages ``{"id", "event", "data"}``; closes after ``done``."""
    state: ApiState = websocket.app.state.aijobs
    key = bearer_key(websocket.headers.get("authorization"))
    tenant = tenant_for_key(state, key) if key else None
    if tenant is None:
        await websocket.send_denial_response(
            JSONResponse({"detail": "invalid API key"}, status.HTTP_401_UNAUTHORIZED)
        )
        return
    job = await run_in_threadpool(state.repo.get, job_id, tenant=tenant)
    if job is None:
        await websocket.send_denial_response(
            JSONResponse({"detail": "job not found"}, status.HTTP_404_NOT_FOUND)
        )
        return
    await websocket.accept()
    events = job_events(state, job_id, after or 0, "websocket")
    timeout_s = state.settings.reader_send_timeout_s
    try:
        async with anyio.create_task_group() as group:

            async def stream() -> None:
                async for event in events:
                    if event is not None:
                        message = f'{{"id":{event.id},"event":{json.dumps(event.event)},'
                        with anyio.fail_after(timeout_s):
                            await websocket.send_text(f'{message}"data":{event.data}}}')
                await websocket.close(1000)
                group.cancel_scope.cancel()

            async def watch() -> None:
                while (await websocket.receive())["type"] != "websocket.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(stream)
            group.start_soon(watch)
    except (WebSocketDisconnect, TimeoutError, OSError):
        pass
    finally:
        await events.aclose()  # type: ignore[attr-defined]
