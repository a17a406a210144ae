"""Jobs: submit, read, list."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from aijobs import metrics, schemas
from aijobs.api.admission import (
    check_idempotency_key,
    check_input,
    check_schedule,
    check_shape,
    check_tenant_limits,
    check_webhook,
    job_payload,
    request_hash,
)
from aijobs.api.deps import StateDep, TenantDep
from aijobs.api.openapi import V1_GUARD, errors
from aijobs.api.state import ApiState
from aijobs.errors import Conflict, InvalidInput, LimitReached, NotFound
from aijobs.events.control import append_once_async, flag_cancel
from aijobs.events.protocol import EventType
from aijobs.fairqueue import QueuedJob
from aijobs.schemas import (
    CancelAnswer,
    JobInput,
    JobKind,
    JobPage,
    JobPublic,
    JobStatus,
    Rfc3339,
    WebhookView,
)
from aijobs.spend.budgets import MoneyBudgetSpent
from aijobs.store.jobs import new_job_id
from aijobs.store.listing import MAX_METADATA_FILTERS, ListFilters, Order, metadata_filter
from aijobs.store.models import Job
from aijobs.store.public import KindJob
from aijobs.store.public import public_job as to_public
from aijobs.store.submits import NewJob
from aijobs.vectors import json_vectors
from aijobs.webhooks.outbox import Outbox

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
_SUBMIT_HEADERS = {
    "Location": {"description": "the job's URL", "required": True, "schema": {"type": "string"}},
    "Idempotent-Replayed": {
        "description": "`true` when an earlier request with this Idempotency-Key made the job",
        "schema": {"type": "string", "enum": ["true"]},
    },
}
log = logging.getLogger(__name__)
#: ``GET /v1/jobs?metadata.customer=acme``: a filter on the metadata key ``customer``.
_METADATA_PARAM = "metadata."


def _webhooks(state: ApiState, jobs: list[Job]) -> dict[str, WebhookView]:
    """Webhooks: the deliveries of those jobs that have a webhook (no query otherwise)."""
    return Outbox(state.repo.db).views(jobs) if any(j.webhook_url for j in jobs) else {}


def _public(state: ApiState, job: Job) -> KindJob:
    """``to_public`` with the job's webhook view."""
    return to_public(job, _webhooks(state, [job]).get(job.id))


@router.post(
    "",
    operation_id="submitJob",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=schemas.Job,
    response_description="The job, queued (or, for a repeated Idempotency-Key, the job it made).",
    responses={
        202: {"headers": _SUBMIT_HEADERS},
        **errors(
            *V1_GUARD,
            402,
            409,
            422,
            s422="Invalid input: `detail` names the field (a body that is not JSON is "
            "`body`); a request that failed validation also has `errors`, field by field.",
            s402="The tenant's USD budget for the day or month is spent (`detail` names "
            "it and when it resets); nothing was queued.",
            s429="A tenant limit (submissions per second, unfinished jobs, its token budget "
            "for the day or month), or too many failed key checks from this address; "
            "`Retry-After` says when to try again.",
        ),
    },
)
async def submit_job(
    body: Annotated[JobInput, Body()],
    request: Request,
    state: StateDep,
    tenant: TenantDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="the same key and body return the same job (for a day)",
        ),
    ] = None,
) -> JobPublic:
    """Accept a job and queue it; nothing is queued for a rejected request."""
    key = check_idempotency_key(idempotency_key)
    size = body_size(request)
    # The tenant's rate is charged before anything costly (a schema check) runs.
    try:
        await check_tenant_limits(state, tenant)
    except (LimitReached, MoneyBudgetSpent):
        # A retry of a submit that went through costs nothing more: it gets its job,
        # even at the tenant's limits (looked up only here, off the common path).
        if key is None or (held := await run_in_threadpool(_held, state, tenant, key)) is None:
            raise
        digest = prepare_new_job(body, state, tenant, size, key).request_hash
        return await _replayed(state, held, digest, response)
    if size > OFF_LOOP_BYTES:  # a big body's dump and hash would stall every other request
        new = await run_in_threadpool(prepare_new_job, body, state, tenant, size, key)
    else:
        new = prepare_new_job(body, state, tenant, size, key)
    (outcome,) = await state.intake.submit([new])
    if not outcome.created:
        return await _replayed(state, outcome.job, new.request_hash, response)
    job = outcome.job
    state.active.admitted(tenant)
    metrics.JOBS_SUBMITTED.labels(body.kind).inc()
    if log.isEnabledFor(logging.INFO):
        fields = {"job_id": job.id, "kind": job.kind, "tenant": tenant, "status": "queued"}
        log.info("job %s queued", job.id, extra={"fields": fields})
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    webhook = WebhookView(url=job.webhook_url, state="waiting") if job.webhook_url else None
    return to_public(job, webhook)


#: Bodies above this are prepared (validated, serialised, hashed) in a worker thread.
OFF_LOOP_BYTES = 64 * 1024


def prepare_new_job(
    body: JobInput, state: ApiState, tenant: str, size: int, key: str | None
) -> NewJob:
    """The checks the model cannot make alone, then the row to insert (with the request's
    hash when it has an Idempotency-Key)."""
    check_shape(body, state.settings)
    check_input(body, state, tenant, body_bytes=size)
    webhook_url = check_webhook(body, state.settings, tenant)
    schedule = check_schedule(body, state.settings)
    payload, hashed = job_payload(body)
    return NewJob(
        id=new_job_id(), tenant=tenant, kind=body.kind, model=body.model, payload=payload,
        meta=body.metadata, idempotency_key=key,
        request_hash=request_hash(hashed, body.metadata) if key else None,
        priority=schedule.priority, run_at=schedule.run_at, webhook_url=webhook_url,
    )  # fmt: skip


def _held(state: ApiState, tenant: str, key: str) -> Job | None:
    state.repo.expire_idempotency_key(tenant, key, older_than_s=state.settings.idempotency_ttl_s)
    return state.repo.by_idempotency_key(tenant, key)


def _around_vectors(public: JobPublic) -> tuple[str, str]:
    """The JSON of ``public`` split where its ``result.embeddings`` list goes: the text
    before the list's items and after them (no marker inside the data: a job's own
    fields, its model name say, could hold any string)."""
    body = public.model_dump(mode="json")
    result = body.pop("result") or {}
    result.pop("embeddings", None)
    outer = json.dumps(body, separators=(",", ":"))
    inner = json.dumps(result, separators=(",", ":"))
    comma = "," if result else ""
    head = f'{outer[:-1]},"result":{inner[:-1]}{comma}"embeddings":['
    return head, "]}}"


def body_size(request: Request) -> int:
    """How many bytes the request's body had (counted by the guard as it was read)."""
    counted = request.scope.get("aijobs_body_bytes")
    if isinstance(counted, int):
        return counted
    declared = request.headers.get("content-length", "")
    return int(declared) if declared.isdigit() else 0


async def _replayed(state: ApiState, job: Job, digest: str | None, response: Response) -> JobPublic:
    if job.request_hash != digest:
        raise Conflict("Idempotency-Key: already used with a different request")
    if job.status == JobStatus.QUEUED:
        # A retry of a submit whose first try may never have reached Redis: make sure.
        await run_in_threadpool(_requeue_if_missing, state, job)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    response.headers["Idempotent-Replayed"] = "true"
    return await run_in_threadpool(_public, state, job) if job.webhook_url else to_public(job)


def _requeue_if_missing(state: ApiState, job: Job) -> None:
    queued = queued_job(job)
    try:
        if not state.queue.where([queued])[0]:
            state.queue.push(queued, run_at_epoch_s=run_at_epoch_s(job))
    except (RedisError, OSError):
        pass  # the reconciler will


def queued_job(job: Job) -> QueuedJob:
    """What the fair queue holds of ``job``."""
    return QueuedJob(job.id, job.kind, job.tenant, job.priority)


def run_at_epoch_s(job: Job) -> float | None:
    """When ``job`` may start, as the fair queue takes it."""
    return job.run_at.timestamp() if job.run_at is not None else None


@router.get(
    "",
    operation_id="listJobs",
    response_model=JobPage,
    responses=errors(
        *V1_GUARD,
        422,
        s422="A parameter out of range, a filter it cannot use (`detail` "
        "names it), or a cursor this API did not give out (or gave out for another order).",
    ),
)
async def list_jobs(
    request: Request,
    state: StateDep,
    tenant: TenantDep,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
    kind: JobKind | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    order: Annotated[
        Order,
        Query(
            description="created: newest first; run_at: the jobs that have a run_at "
            "(scheduled, or waiting to retry), soonest first"
        ),
    ] = "created",
    created_after: Annotated[
        Rfc3339 | None, Query(description="created at or after this (RFC 3339, with a zone)")
    ] = None,
    created_before: Annotated[
        Rfc3339 | None, Query(description="created before this (RFC 3339, with a zone)")
    ] = None,
) -> JobPage:
    """The caller's jobs, newest first (or by ``run_at``).

    Filter by metadata with ``metadata.KEY=VALUE`` (repeat for several keys; all must
    match): jobs whose metadata has ``KEY`` with the string ``VALUE``, or a number
    written so.
    """
    filters = ListFilters(
        metadata=metadata_filters(request),
        created_after=utc(created_after, "created_after"),
        created_before=utc(created_before, "created_before"),
        order=order,
    )
    rows, next_cursor = await run_in_threadpool(
        partial(state.repo.list, tenant=tenant, status=status_, kind=kind, limit=limit,
                cursor=cursor, filters=filters)
    )  # a cursor this API did not give out is a CursorError: 422  # fmt: skip
    webhooks = (
        await run_in_threadpool(_webhooks, state, rows) if any(r.webhook_url for r in rows) else {}
    )
    return JobPage(data=[to_public(r, webhooks.get(r.id)) for r in rows], next_cursor=next_cursor)


def metadata_filters(request: Request) -> tuple[tuple[str, str], ...]:
    """The ``metadata.KEY=VALUE`` parameters of a listing (422 for a bad one)."""
    found = [
        metadata_filter(name.removeprefix(_METADATA_PARAM), value)
        for name, value in request.query_params.multi_items()
        if name.startswith(_METADATA_PARAM)
    ]
    if len(found) > MAX_METADATA_FILTERS:
        raise InvalidInput(f"metadata: at most {MAX_METADATA_FILTERS} filters")
    return tuple(found)


def utc(value: datetime | None, name: str) -> datetime | None:
    """An aware timestamp in UTC (the store compares UTC), or 422 if it has none."""
    if value is None:
        return None
    try:
        return value.astimezone(UTC)
    except OverflowError:  # year 1 with a positive offset, year 9999 with a negative one
        raise InvalidInput(f"{name}: out of range") from None


@router.get(
    "/{job_id}",
    operation_id="getJob",
    response_model=schemas.Job,
    responses=errors(*V1_GUARD, 404, 422, s422="`format` or `vectors` is not one it takes."),
)
async def get_job(
    job_id: str,
    state: StateDep,
    tenant: TenantDep,
    vector_format: Annotated[
        Literal["float", "base64"],
        Query(
            alias="format",
            description="embeddings as lists of floats, or base64 of little-endian float32",
        ),
    ] = "float",
    vectors: Annotated[
        bool, Query(description="include an embedding job's vectors (false: status only)")
    ] = True,
) -> JobPublic | Response:
    """One job: status, result or error (an embedding job's result has its vectors)."""
    job = await run_in_threadpool(
        partial(state.repo.get, job_id, tenant=tenant, without=("input",))
    )
    if job is None:
        raise NotFound("job not found")
    public = await run_in_threadpool(_public, state, job) if job.webhook_url else to_public(job)
    if not (vectors and job.kind == JobKind.EMBED and job.status == JobStatus.SUCCEEDED):
        return public
    # Streamed batch by batch from the store, each batch encoded in a worker thread: an
    # answer of hundreds of MB neither sits in memory whole nor holds the event loop
    # (every other request and event stream of this process) for its whole encoding.
    head, tail = _around_vectors(public)
    base64_format = vector_format == "base64"

    def chunks() -> Iterator[str]:
        yield head
        for index, (dimensions, blob) in enumerate(state.repo.iter_vector_batches(job.id)):
            yield ("," if index else "") + json_vectors(
                blob, dimensions, base64_format=base64_format
            )
        yield tail

    return StreamingResponse(chunks(), media_type="application/json")


@router.post(
    "/{job_id}/cancel",
    operation_id="cancelJob",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CancelAnswer,
    response_description="Cancelled (it had not started), or asked to stop (it runs).",
    responses={
        200: {"model": CancelAnswer, "description": "The job had already finished: as it was."},
        **errors(*V1_GUARD, 404),
    },
)
async def cancel_job(
    job_id: str, state: StateDep, tenant: TenantDep, response: Response
) -> CancelAnswer:
    """Cancel a job: a waiting one never runs; a running one stops between chunks."""
    job, floor = await run_in_threadpool(state.repo.request_cancel, job_id, tenant=tenant)
    if job is None:
        raise NotFound("job not found")
    public = await run_in_threadpool(_public, state, job) if job.webhook_url else to_public(job)
    settings = state.settings
    if floor is not None:
        closing: list[tuple[str, dict[str, Any]]] = [
            (EventType.DONE, {"status": JobStatus.CANCELLED})
        ]
        try:
            last = await append_once_async(
                state.redis, settings, job.id, job.attempts, closing, floor=floor
            )
        except RedisError:
            last = 0  # the row has the outcome; readers are served it from there
        if last and last != floor + 1:
            await run_in_threadpool(state.repo.record_last_event, job.id, last)
        return CancelAnswer(detail="cancelled before it ran", job=public)
    if job.status == JobStatus.RUNNING:
        await flag_cancel(state.redis, job.id, retention_s=settings.stream_retention_s)
        return CancelAnswer(detail="cancel requested: the job stops at its next chunk", job=public)
    response.status_code = status.HTTP_200_OK
    return CancelAnswer(
        detail=f"the job already finished ({job.status}); left as it is", job=public
    )
