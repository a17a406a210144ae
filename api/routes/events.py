"""A job's events, resumable by event id: Server-Sent Events and WebSocket."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, HTTPException, Query, Request, WebSocket, status
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from aijobs import metrics
from aijobs.api.auth import Caller, bearer_key
from aijobs.api.deps import CallerDep, StateDep
from aijobs.api.errors import refusal_response
from aijobs.api.event_schema import EVENT_ITEM_SCHEMA, EVENT_STREAM_EXAMPLE
from aijobs.api.guards import CALLER
from aijobs.api.openapi import V1_GUARD, errors, event_stream_content
from aijobs.api.sse import EventStreamResponse
from aijobs.api.state import ApiState
from aijobs.errors import InvalidInput, NotFound, Refused
from aijobs.events import archive
from aijobs.events.follow import StoredOutcome, follow_job, replay
from aijobs.events.protocol import Event
from aijobs.schemas import EventToken, JobStatus
from aijobs.store import event_logs
from aijobs.store.models import Job

router = APIRouter(prefix="/v1/jobs", tags=["events"])
log = logging.getLogger(__name__)

_RETRY_MS = 2000
#: What a reader's connect never needs from the row (the outcome's result and error it
#: reads only when the job is finished and the stream cannot tell it).
_NOT_READ = ("input", "meta")
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


#: Event ids are below this (they fit Redis' stream ids and SQL integers alike).
MAX_EVENT_ID = 2**53


def parse_cursor(after: int | None, last_event_id: str | None) -> int:
    """The event id to resume after: the Last-Event-ID header wins over ``?after=``."""
    if last_event_id is not None and last_event_id.strip():
        value = last_event_id.strip()
        # ASCII digits only: str.isdigit also says yes to "²" and "٣".
        if not (value.isascii() and value.isdigit()) or len(value) > 16:
            raise InvalidInput("Last-Event-ID: must be an event id (a non-negative integer)")
        return min(int(value), MAX_EVENT_ID)
    return min(after or 0, MAX_EVENT_ID)


def _outcome(row: Job | None) -> StoredOutcome | None:
    if row is None or not JobStatus(row.status).terminal:
        return None
    return StoredOutcome(row.status, row.result, row.error, row.last_event_id, row.attempts)


def load_job(state: ApiState, job_id: str, tenant: str) -> Job:
    """The tenant's job as a reader needs it (no input, no metadata), or ``NotFound``."""
    job = state.repo.get(job_id, tenant=tenant, without=_NOT_READ)
    if job is None:
        raise NotFound("job not found")
    return job


def finished_at_cursor(job: Job, cursor: int) -> bool:
    """True when a finished job has nothing after ``cursor``: its last event is behind it."""
    return (
        JobStatus(job.status).terminal
        and job.last_event_id is not None
        and cursor >= job.last_event_id
    )


async def job_events(
    state: ApiState, job: Job, after: int, transport: str
) -> AsyncIterator[list[Event] | None]:
    """The job's events after ``after`` (``None`` on quiet spells), until ``done``."""
    job_id = job.id
    # The row the route just read answers the first question; later ones ask the store.
    fresh: list[Job] = [job]

    async def load_outcome() -> StoredOutcome | None:
        if fresh:
            return _outcome(fresh.pop())
        return _outcome(await run_in_threadpool(state.repo.get, job_id, without=_NOT_READ))

    readers = metrics.STREAM_READERS.labels(transport)
    readers.inc()
    try:
        if job.events_archived_at is not None and JobStatus(job.status).terminal:
            # Finished and archived: the whole log is one SQL row, Redis is not asked.
            blob = await run_in_threadpool(event_logs.load, state.repo.db, job_id)
            if blob is not None:
                for batch in replay(archive.decode(blob, after), after):
                    yield batch
                return
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
    operation_id="streamJobEvents",
    # No JSON body of its own: the 200 is the stream, the errors are JSON (ErrorBody).
    response_class=Response,
    response_model=None,
    responses={
        200: {
            "description": "The events after the cursor, then live ones, until `done`.",
            "content": event_stream_content(EVENT_ITEM_SCHEMA, EVENT_STREAM_EXAMPLE),
        },
        204: {
            "description": "The job finished at or before the cursor: nothing follows (a "
            "browser's EventSource stops reconnecting)."
        },
        **errors(
            *V1_GUARD,
            404,
            422,
            s401="No API key and no event token, or not a live one.",
            s422="`after` or `Last-Event-ID` is not an event id.",
            s429="Too many open event readers for the tenant on this API process, or too "
            "many failed key checks from this address; `Retry-After` says when to try again.",
        ),
    },
    openapi_extra={"security": [{"HTTPBearer": []}, {"EventToken": []}]},
)
async def job_event_stream(
    job_id: str,
    request: Request,
    state: StateDep,
    token: Annotated[
        str | None, Query(description="an event token (POST /v1/jobs/{id}/token), for browsers")
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_EVENT_ID, description="resume after this event id")
    ] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    """Server-Sent Events: everything after the cursor, then live, until ``done``.

    Authorised by the API key, or by an event token for this job (``?token=``).
    """
    cursor = parse_cursor(after, last_event_id)
    tenant = await reader_tenant(state, request, job_id, token)
    if tenant is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid API key or event token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    job = await run_in_threadpool(load_job, state, job_id, tenant)
    if finished_at_cursor(job, cursor):
        # The spec's way to make a browser's EventSource stop reconnecting.
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    state.readers.acquire(tenant)
    return EventStreamResponse(
        job_events(state, job, cursor, "sse"),
        retry_ms=_RETRY_MS,
        send_timeout_s=state.settings.reader_send_timeout_s,
        headers=_HEADERS,
        on_close=lambda: state.readers.release(tenant),
    )


async def reader_tenant(
    state: ApiState, request: Request | None, job_id: str, token: str | None
) -> str | None:
    """The tenant a reader acts for: by the API key the guard checked, or by an event
    token for this job whose key is still live."""
    caller = getattr(request.state, CALLER, None) if request is not None else None
    if isinstance(caller, Caller):
        return caller.tenant
    return await token_tenant(state, job_id, token)


async def token_tenant(state: ApiState, job_id: str, token: str | None) -> str | None:
    """The tenant of a valid event token for ``job_id`` (None otherwise)."""
    if not token:
        return None
    claims = state.tokens.check(token, job_id)
    if claims is None:
        return None
    live = await run_in_threadpool(state.auth.key_is_live, claims.key_id)
    return claims.tenant if live else None


async def socket_tenant(state: ApiState, websocket: WebSocket, job_id: str,
                        token: str | None) -> str | None:  # fmt: skip
    """The tenant a WebSocket reader acts for: its Authorization header, or a token."""
    key = bearer_key(websocket.headers.get("authorization"))
    if key:
        caller = await run_in_threadpool(state.auth.caller, key)
        return caller.tenant if caller is not None else None
    return await token_tenant(state, job_id, token)


@router.websocket("/{job_id}/ws")
async def job_event_socket(
    websocket: WebSocket,
    job_id: str,
    after: Annotated[int | None, Query(ge=0)] = None,
    token: Annotated[str | None, Query()] = None,
) -> None:
    """The same events as JSON messages ``{"id", "event", "data"}``; closes after ``done``."""
    state: ApiState = websocket.app.state.aijobs
    tenant = await socket_tenant(state, websocket, job_id, token)
    if tenant is None:
        await websocket.send_denial_response(
            JSONResponse({"detail": "invalid API key"}, status.HTTP_401_UNAUTHORIZED)
        )
        return
    try:
        job = await run_in_threadpool(load_job, state, job_id, tenant)
        state.readers.acquire(tenant)
    except Refused as refused:
        await websocket.send_denial_response(refusal_response(refused))
        return
    try:
        await _serve_socket(websocket, state, job, after or 0)
    finally:
        state.readers.release(tenant)


async def _serve_socket(websocket: WebSocket, state: ApiState, job: Job, after: int) -> None:
    await websocket.accept()
    if finished_at_cursor(job, after):
        await websocket.close(1000, reason=job.status)  # nothing after the cursor: done
        return
    events = job_events(state, job, after, "websocket")
    timeout_s = state.settings.reader_send_timeout_s
    try:
        async with anyio.create_task_group() as group:

            async def stream() -> None:
                async for batch in events:
                    for event in batch or ():
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


@router.post(
    "/{job_id}/token",
    operation_id="createEventToken",
    response_model=EventToken,
    responses=errors(*V1_GUARD, 404),
)
def issue_event_token(job_id: str, state: StateDep, caller: CallerDep) -> EventToken:
    """A short-lived token that opens this job's events, for a browser's EventSource.

    Its URLs are built from ``AIJOBS_PUBLIC_URL`` (never from the request's Host, which
    the caller chooses); without it they are paths relative to the API.
    """
    load_job(state, job_id, caller.tenant)
    ttl_s = state.settings.token_ttl_s
    token, expires = state.tokens.issue(job_id, caller.tenant, caller.key_id, ttl_s)
    path = f"/v1/jobs/{job_id}"
    base = (state.settings.public_url or "").rstrip("/")
    socket_base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return EventToken(
        token=token,
        expires_at=datetime.fromtimestamp(expires, UTC),
        events_url=f"{base}{path}/events?token={token}",
        websocket_url=f"{socket_base}{path}/ws?token={token}",
    )
