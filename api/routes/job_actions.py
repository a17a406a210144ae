"""What a tenant can do to a job after it was submitted, besides cancelling it: run it
again (``POST /v1/jobs/{id}/retry``) and delete it (``DELETE /v1/jobs/{id}``)."""

from __future__ import annotations

import contextlib
import time
from functools import partial
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Response, status
from pydantic import ValidationError
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from aijobs import metrics, schemas
from aijobs.api.admission import (
    check_idempotency_key,
    check_input,
    check_tenant_limits,
    request_hash,
)
from aijobs.api.deps import StateDep, TenantDep
from aijobs.api.openapi import V1_GUARD, errors
from aijobs.api.routes.jobs import cancel_job, queued_job
from aijobs.api.state import ApiState
from aijobs.errors import Conflict, NotFound
from aijobs.jsonsize import json_bytes
from aijobs.schemas import JOB_INPUT_ADAPTER, JobPublic, JobStatus, WebhookView
from aijobs.store.jobs import IdempotencyConflict
from aijobs.store.models import Job
from aijobs.store.public import public_job as to_public
from aijobs.store.retention import scrub_jobs

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

#: The statuses a job can be retried from.
_RETRYABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})
_RETRY_HEADERS = {
    "Location": {
        "description": "the new job's URL",
        "required": True,
        "schema": {"type": "string"},
    },
    "Idempotent-Replayed": {
        "description": "`true` when an earlier request with this Idempotency-Key made the job",
        "schema": {"type": "string", "enum": ["true"]},
    },
}


@router.post(
    "/{job_id}/retry",
    operation_id="retryJob",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=schemas.Job,
    response_description="The new job, queued (for a repeated Idempotency-Key, the one it made).",
    responses={
        202: {"headers": _RETRY_HEADERS},
        **errors(
            *V1_GUARD,
            402,
            404,
            409,
            422,
            s409="The job is not failed or cancelled (`detail` says its status), its input "
            "was deleted by retention, or the Idempotency-Key was used for another request.",
            s422="The Idempotency-Key is not 1 to 255 visible ASCII characters, or the "
            "job's input is refused today (a model no longer offered, say).",
            s429="A tenant limit (submissions per second, unfinished jobs, its token budget "
            "for the day or month), or too many failed key checks from this address; "
            "`Retry-After` says when to try again.",
        ),
    },
)
async def retry_job(
    job_id: str,
    state: StateDep,
    tenant: TenantDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="the same key returns the same new job (for a day)",
        ),
    ] = None,
) -> JobPublic:
    """Run a failed or cancelled job again, as a new job with the same input, model and
    priority; its metadata says ``replay_of``: the old job's id."""
    key = check_idempotency_key(idempotency_key)
    job = await run_in_threadpool(partial(state.repo.get, job_id, tenant=tenant))
    if job is None:
        raise NotFound("job not found")
    digest = request_hash({"retry_of": job.id}, {}) if key else None
    if key:
        existing = await run_in_threadpool(_held, state, tenant, key)
        if existing is not None:
            return _again(existing, digest, response)
    if JobStatus(job.status) not in _RETRYABLE:
        raise Conflict(
            f"only a failed or cancelled job can be retried; this one is {job.status}"
            + (" (submit it again to run it twice)" if job.status == JobStatus.SUCCEEDED else "")
        )
    if job.purged_at is not None:
        raise Conflict("the job's input was deleted by retention; submit it again")
    try:
        # The input alone: the metadata was checked when it came, and the new job's adds
        # replay_of (which could pass the key limit of a submitted body).
        body = JOB_INPUT_ADAPTER.validate_python(job.input)
    except ValidationError:
        raise Conflict(
            "the job's stored input is not one this version runs; submit it again"
        ) from None
    await check_tenant_limits(state, tenant)
    # As it would be checked today: the deployment's models and limits may have changed.
    check_input(body, state, tenant, body_bytes=json_bytes(job.input))
    try:
        new = await run_in_threadpool(
            partial(state.repo.replay, job, idempotency_key=key, request_hash=digest)
        )
    except IdempotencyConflict as conflict:  # a concurrent retry with the same key won
        return _again(conflict.job, digest, response)
    state.active.admitted(tenant)
    await run_in_threadpool(_push, state, new)
    metrics.JOBS_SUBMITTED.labels(new.kind).inc()
    response.headers["Location"] = f"/v1/jobs/{new.id}"
    webhook = WebhookView(url=new.webhook_url, state="waiting") if new.webhook_url else None
    return to_public(new, webhook)


def _held(state: ApiState, tenant: str, key: str) -> Job | None:
    state.repo.expire_idempotency_key(tenant, key, older_than_s=state.settings.idempotency_ttl_s)
    return state.repo.by_idempotency_key(tenant, key)


def _push(state: ApiState, job: Job) -> None:
    # If Redis is down the row is queued in SQL and the workers' reconciler queues it.
    with contextlib.suppress(RedisError, OSError):
        state.queue.push(queued_job(job))


def _again(job: Job, digest: str | None, response: Response) -> JobPublic:
    if job.request_hash != digest:
        raise Conflict("Idempotency-Key: already used with a different request")
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    response.headers["Idempotent-Replayed"] = "true"
    return to_public(job)


@router.delete(
    "/{job_id}",
    operation_id="deleteJob",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    response_description="Deleted (or it was already).",
    responses=errors(
        *V1_GUARD,
        404,
        409,
        s409="The job still runs after `AIJOBS_DELETE_WAIT_S`: its cancel stays requested; "
        "DELETE it again once it has stopped.",
    ),
)
async def delete_job(job_id: str, state: StateDep, tenant: TenantDep) -> Response:
    """Delete a job: its input, output, metadata and event stream are scrubbed now, and
    it is gone for its tenant (404). A waiting job is cancelled; a running one is
    cancelled and waited for (up to ``AIJOBS_DELETE_WAIT_S``, 10 s, else 409: DELETE
    again). Deleting a deleted job is 204 again. Its usage still counts."""
    job = await run_in_threadpool(state.repo.get, job_id, tenant=tenant, deleted=True)
    if job is None:
        raise NotFound("job not found")
    if job.deleted_at is None:
        if not JobStatus(job.status).terminal:
            job = await _cancelled(state, job, tenant)
        await run_in_threadpool(
            scrub_jobs, state.repo, state.sync_redis, [job], deleted=True,
            fence_ttl_s=state.settings.stream_retention_s,
        )  # fmt: skip
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _cancelled(state: ApiState, job: Job, tenant: str) -> Job:
    """``job`` once it is terminal, cancelled as ``POST /cancel`` does; 409 if it still
    runs after ``AIJOBS_DELETE_WAIT_S``."""
    await cancel_job(job.id, state, tenant, Response())
    deadline = time.monotonic() + state.settings.delete_wait_s
    while True:
        current = await run_in_threadpool(
            state.repo.get, job.id, tenant=tenant, without=("input",), deleted=True
        )
        if current is None:  # pragma: no cover - rows are never removed
            raise NotFound("job not found")
        if JobStatus(current.status).terminal:
            return current
        if time.monotonic() >= deadline:
            raise Conflict(
                f"the job is still {current.status}: its cancel was requested; "
                "DELETE it again once it has stopped"
            )
        await anyio.sleep(0.1)
