"""``POST /v1/jobs/batch``: many submissions in one request.

Each item is checked as ``POST /v1/jobs`` checks a body (the same messages, the same
limits of its kind) and fails alone: its result carries the 4xx and why, and nothing of
it is queued. The accepted ones go to the intake together: one SQL transaction (with
whatever other submits arrived meanwhile) and one Redis pipeline. The batch counts as one
request against the tenant's submission rate; its jobs count one by one against the
tenant's unfinished jobs.

Idempotency keys work as the header does for one job, decided by the table's unique
index: a key the tenant used before returns that job (nothing new is made), a key seen
twice in one batch makes one job, and a key used with a different body is a 409 for that
item.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body, status
from pydantic import ValidationError
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from aijobs import metrics
from aijobs.api.admission import check_idempotency_key, check_submit_rate, too_many_unfinished
from aijobs.api.budgets import check_budget
from aijobs.api.deps import StateDep, TenantDep
from aijobs.api.errors import validation_detail
from aijobs.api.openapi import V1_GUARD, errors
from aijobs.api.routes.jobs import prepare_new_job, queued_job, run_at_epoch_s
from aijobs.api.state import ApiState
from aijobs.errors import Conflict, InvalidInput, Refused
from aijobs.jsonsize import json_bytes
from aijobs.schemas import (
    JOB_INPUT_ADAPTER,
    BatchAnswer,
    BatchInput,
    BatchItemResult,
    JobStatus,
    WebhookView,
)
from aijobs.store.models import Job
from aijobs.store.public import public_job as to_public
from aijobs.store.submits import NewJob
from aijobs.webhooks.outbox import Outbox

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
log = logging.getLogger(__name__)

#: The field of an item that plays the Idempotency-Key header's part.
_KEY_FIELD = "idempotency_key"


@dataclass
class _Item:
    """One item on its way: refused (``result``), or a row ready to insert."""

    result: BatchItemResult | None = None
    new: NewJob | None = None
    job: Job | None = None
    created: bool = False

    def refuse(self, exc: Refused) -> None:
        self.result = BatchItemResult(status=exc.status, detail=exc.detail)


@router.post(
    "/batch",
    operation_id="submitJobBatch",
    status_code=status.HTTP_200_OK,
    response_model=BatchAnswer,
    response_description="One result per body, in order: 202 and the job, or a 4xx and why.",
    responses=errors(
        *V1_GUARD,
        422,
        s413="The request body is larger than `AIJOBS_MAX_JOBS_BODY_BYTES` (a body too "
        "large for its kind is a 413 in its own result).",
        s422="Not a batch (`jobs` missing, empty or not a list, an unknown field), or more "
        "bodies than `AIJOBS_BATCH_MAX_JOBS`; a bad body is a 422 in its own result.",
        s429="The tenant's submissions per second (a batch is one), or too many failed key "
        "checks from this address; `Retry-After` says when to try again.",
    ),
)
async def submit_batch(
    body: Annotated[BatchInput, Body()], state: StateDep, tenant: TenantDep
) -> BatchAnswer:
    """Submit up to ``AIJOBS_BATCH_MAX_JOBS`` jobs, each a body as ``POST /v1/jobs`` takes
    it plus an optional ``idempotency_key``: one result per body, in input order."""
    settings = state.settings
    if len(body.jobs) > settings.batch_max_jobs:
        raise InvalidInput(
            f"jobs: at most {settings.batch_max_jobs} per batch (got {len(body.jobs)}); "
            "send several batches"
        )
    await check_submit_rate(state, tenant)
    # Validating hundreds of bodies (schemas, hashes) would hold every other request.
    items = await run_in_threadpool(_parse_all, body.jobs, state, tenant)
    await _cap_unfinished(state, tenant, items)
    try:
        await check_budget(state, tenant)
    except Refused as spent:  # every body the budget refuses: a 402 or 429 of its own
        for item in items:
            if item.result is None:
                item.refuse(spent)
    insert = [item for item in items if item.new is not None and item.result is None]
    if insert:
        outcomes = await state.intake.submit([item.new for item in insert if item.new])
        for item, outcome in zip(insert, outcomes, strict=True):
            item.job, item.created = outcome.job, outcome.created
    made = sum(1 for item in items if item.created)
    state.active.admitted(tenant, made)
    _count_submitted(items)
    replayed = [item for item in items if item.job is not None and not item.created]
    for item in replayed:
        assert item.job is not None and item.new is not None
        if item.job.request_hash != item.new.request_hash:
            item.refuse(Conflict("Idempotency-Key: already used with a different request"))
    webhooks = await run_in_threadpool(_replayed_views, state, replayed)
    for item in items:
        if item.result is None and item.job is not None:
            job = item.job
            view = webhooks.get(job.id)
            if view is None and item.created and job.webhook_url:
                view = WebhookView(url=job.webhook_url, state="waiting")
            item.result = BatchItemResult(
                status=status.HTTP_202_ACCEPTED, job=to_public(job, view),
                replayed=not item.created,
            )  # fmt: skip
    log.info(
        "batch: %d jobs queued, %d refused, %d replayed", made,
        sum(1 for item in items if item.result is not None and item.result.status >= 400),
        sum(1 for item in items if item.result is not None and item.result.replayed),
        extra={"fields": {"tenant": tenant, "batch": len(items)}},
    )  # fmt: skip
    return BatchAnswer(results=[item.result for item in items if item.result is not None])


def _parse_all(raws: list[Any], state: ApiState, tenant: str) -> list[_Item]:
    return [_parse(raw, state, tenant) for raw in raws]


def _parse(raw: Any, state: ApiState, tenant: str) -> _Item:
    """Check one item as ``POST /v1/jobs`` checks a body, and make its row."""
    item = _Item()
    if not isinstance(raw, dict):
        item.result = BatchItemResult(
            status=status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail="body: a job body must be a JSON object",
        )
        return item
    raw = dict(raw)
    key = raw.pop(_KEY_FIELD, None)
    try:
        if key is not None and not isinstance(key, str):
            raise InvalidInput(f"{_KEY_FIELD}: 1 to 255 visible ASCII characters")
        key = check_idempotency_key(key)
        try:
            body = JOB_INPUT_ADAPTER.validate_python(raw)
        except ValidationError as exc:
            detail, described = validation_detail(list(exc.errors()))
            item.result = BatchItemResult(
                status=status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail,
                errors=described,  # type: ignore[arg-type]
            )  # fmt: skip
            return item
        # Its size as a body of its own (compact JSON: what its bytes would be).
        item.new = prepare_new_job(body, state, tenant, json_bytes(raw), key)
    except Refused as exc:
        item.refuse(exc)
    return item


async def _cap_unfinished(state: ApiState, tenant: str, items: list[_Item]) -> None:
    """Items past the tenant's unfinished-jobs limit are refused (429), in input order;
    an item whose key names a job made before is its replay, and takes no place."""
    cap = state.settings.tenant_max_active_jobs
    fresh = [item.new for item in items if item.new is not None and item.result is None]
    if not cap or not fresh:
        return
    keys = sorted({new.idempotency_key for new in fresh if new.idempotency_key})
    # A key twice in the batch is one job.
    wanted = sum(1 for new in fresh if not new.idempotency_key) + len(keys)
    active = await state.active.current(tenant, limit=cap - wanted + 1)
    if active + wanted <= cap:
        return
    # Over the limit: a retried batch must still get its jobs back, so look its keys up.
    known = await run_in_threadpool(_held, state, tenant, keys) if keys else {}
    room = cap - active
    placed: dict[str, bool] = {}  # key -> whether its first item got a place
    for item in items:
        if item.new is None or item.result is not None:
            continue
        key = item.new.idempotency_key
        if key is not None and key in known:
            continue  # a replay: the insert gives it the job its key names
        if key is not None and key in placed:
            fits = placed[key]  # one job for both
        else:
            fits = room > 0
            room -= 1 if fits else 0
            if key is not None:
                placed[key] = fits
        if not fits:
            item.refuse(too_many_unfinished(state.settings, active))


def _held(state: ApiState, tenant: str, keys: list[str]) -> dict[str, Job]:
    state.repo.expire_idempotency_keys(tenant, keys, older_than_s=state.settings.idempotency_ttl_s)
    return state.repo.by_idempotency_keys(tenant, keys)


def _count_submitted(items: list[_Item]) -> None:
    for item in items:
        if item.created and item.job is not None:
            metrics.JOBS_SUBMITTED.labels(item.job.kind).inc()


def _replayed_views(state: ApiState, replayed: list[_Item]) -> dict[str, WebhookView]:
    """For the jobs an item's key named: queue again those still queued that Redis does
    not hold (their first push may have been lost), and their webhook views."""
    jobs = {item.job.id: item.job for item in replayed if item.job is not None
            and item.result is None}  # fmt: skip
    waiting = [job for job in jobs.values() if job.status == JobStatus.QUEUED]
    if waiting:
        try:
            present = state.queue.where([queued_job(job) for job in waiting])
            missing = [job for job, seen in zip(waiting, present, strict=True) if not seen]
            if missing:
                state.queue.push_many([(queued_job(j), run_at_epoch_s(j)) for j in missing])
        except (RedisError, OSError):
            pass  # the reconciler will
    hooked = [job for job in jobs.values() if job.webhook_url]
    return Outbox(state.repo.db).views(hooked) if hooked else {}
