"""One delivery of a job, start to end: the job's story in the order it happens.

Celery delivers at least once, and the reconciler may queue a job again, so this runs
more than once for the same job and is written for it:

1. A finished job is left alone.
2. The delivery takes the job's lease (a token of its own). Another delivery holding it
   means this one is a duplicate: it leaves, whatever the attempt count says.
3. Holding the lease, it knows no other attempt runs, and only now looks at the caps: a
   job whose workers kept vanishing ends ``poison``; one out of attempts ends
   ``attempts_exhausted``.
4. It spends the fleet's budget for the call; if the budget is spent for a while, the
   job waits in the queue (its row says so) and the worker slot is free.
5. It claims the next attempt in SQL (compare-and-set) and runs it (``Attempt``).
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from aijobs import metrics
from aijobs.errors import ErrorCode
from aijobs.events.control import append_once
from aijobs.events.protocol import EventType
from aijobs.fairqueue import QueuedJob
from aijobs.kinds import kind_for
from aijobs.logs import log_transition
from aijobs.schemas import JOB_INPUT_ADAPTER, JobStatus
from aijobs.store.models import Job, utcnow
from aijobs.worker.attempt import SKIPPED, Attempt, Outcome, Report
from aijobs.worker.context import WorkerContext

log = logging.getLogger(__name__)


def run_delivery(ctx: WorkerContext, job_id: str) -> Report:
    """Process one delivery of ``job_id`` (see the module's story); how it ended."""
    started = time.monotonic()
    job = ctx.repo.get(job_id)
    if job is None:
        log.warning("job %s not found; dropping its message", job_id)
        return SKIPPED
    if JobStatus(job.status).terminal:
        return SKIPPED
    lease = ctx.leases.acquire(job.id, job.kind, job.tenant)
    if lease is None:
        log.info("job %s is running elsewhere; duplicate delivery ignored", job_id)
        return SKIPPED
    try:
        return _deliver(ctx, job, lease, started)
    finally:
        ctx.leases.release(lease)


def _deliver(ctx: WorkerContext, job: Job, lease: Any, started: float) -> Report:
    settings = ctx.settings
    if job.run_at is not None and job.run_at > utcnow() + timedelta(seconds=0.5):
        # Delivered early (a duplicate of a delayed job): back to wait for its time.
        ctx.queue.push(_queued(job), run_at_epoch_s=job.run_at.timestamp())
        return Report(Outcome.WAITING, "run_at")
    losses = job.losses + (1 if job.status == JobStatus.RUNNING else 0)
    if losses >= settings.poison_after_losses:
        _fail_unstarted(ctx, job, started, ErrorCode.POISON,
                        f"the job's worker was lost {losses} times (it crashed, froze or was "
                        "killed each time it ran this job)")  # fmt: skip
        return Report(Outcome.FAILED, ErrorCode.POISON)
    if job.failures + losses >= settings.max_attempts:
        _fail_unstarted(ctx, job, started, ErrorCode.ATTEMPTS_EXHAUSTED,
                        f"the job was started {job.attempts} times without finishing")  # fmt: skip
        return Report(Outcome.FAILED, ErrorCode.ATTEMPTS_EXHAUSTED)
    try:
        spec = JOB_INPUT_ADAPTER.validate_python(job.input)
    except ValidationError:
        _fail_unstarted(ctx, job, started, ErrorCode.INTERNAL_ERROR,
                        "the job's stored input is not one this version can run")  # fmt: skip
        return Report(Outcome.FAILED, ErrorCode.INTERNAL_ERROR)
    kind = kind_for(job.kind)
    charged = kind.estimate(spec, settings)
    if charged:
        wait_s = _admit(ctx, job, charged)
        if wait_s > 0:
            _defer(ctx, job, wait_s, started)
            return Report(Outcome.WAITING, ErrorCode.RATE_LIMIT_WAIT)
    claim = ctx.repo.claim(job.id, seen_attempts=job.attempts, id_block=settings.event_id_block)
    if claim is None:  # moved on since we read it (cancelled, say)
        if charged:
            ctx.limiter.settle(job.model, charged, 0, tenant=job.tenant)
        return SKIPPED
    attempt = Attempt(ctx, job, claim, lease, kind=kind, spec=spec, charged=charged,
                      started=started)  # fmt: skip
    return attempt.run()


def _queued(job: Job) -> QueuedJob:
    return QueuedJob(job.id, job.kind, job.tenant, job.priority)


def _admit(ctx: WorkerContext, job: Job, estimate: int) -> float:
    """Spend the fleet-wide budget (and the tenant's share of it) for one call; 0 when
    admitted, else how long to wait."""
    model = job.model
    slept = 0.0
    while True:
        wait_s = ctx.limiter.acquire(model, estimate, tenant=job.tenant)
        if wait_s <= 0:
            return 0.0
        metrics.RATE_LIMIT_WAITS.labels(metrics.model_label(model)).inc()
        metrics.RATE_LIMIT_WAIT_SECONDS.labels(metrics.model_label(model)).inc(wait_s)
        if slept + wait_s > ctx.settings.rate_limit_sleep_max_s:
            return wait_s
        time.sleep(wait_s)  # a short wait: cheaper than a round trip through the queue
        slept += wait_s


def _defer(ctx: WorkerContext, job: Job, wait_s: float, started: float) -> None:
    """The job may not call its provider yet: it waits in the queue, attempts untouched,
    its row saying it waits (``retrying`` if a lost attempt had it ``running``)."""
    run_at = utcnow() + timedelta(seconds=wait_s)
    floor = ctx.repo.defer_unclaimed(job.id, seen_attempts=job.attempts, run_at=run_at, events=1)
    if floor is None:
        return
    shown = JobStatus.RETRYING if job.status == JobStatus.RUNNING else JobStatus(job.status)
    waiting = {"status": shown, "attempt": job.attempts, "reason": ErrorCode.RATE_LIMIT_WAIT,
               "wait_s": round(wait_s, 3)}  # fmt: skip
    append_once(ctx.redis, ctx.settings, job.id, job.attempts,
                [(EventType.STATUS, waiting)], floor=floor)  # fmt: skip
    ctx.queue.push(_queued(job), run_at_epoch_s=run_at.timestamp())
    log_transition(job.id, job.kind, job.attempts, "deferred", started, wait_s=round(wait_s, 3))


def _fail_unstarted(
    ctx: WorkerContext, job: Job, started: float, code: ErrorCode, message: str
) -> None:
    """End a job without running another attempt."""
    error = {"code": code, "message": message, "retryable": False}
    closing: list[tuple[str, dict[str, Any]]] = [
        (EventType.ERROR, error),
        (EventType.DONE, {"status": JobStatus.FAILED}),
    ]
    floor = ctx.repo.fail_unclaimed(
        job.id, seen_attempts=job.attempts, error=error, events=len(closing)
    )
    if floor is None:
        return
    metrics.JOBS_FINISHED.labels(job.kind, JobStatus.FAILED).inc()
    # A fence one above the last attempt keeps any straggler of it from writing after.
    fence = job.attempts + 1
    last = append_once(
        ctx.redis, ctx.settings, job.id, fence, closing, floor=floor,
        write_id=f"fail-{secrets.token_hex(6)}", begin=True,
    )  # fmt: skip
    if last and last != floor + len(closing):
        ctx.repo.record_last_event(job.id, last)
    log_transition(job.id, job.kind, fence, JobStatus.FAILED, started, error_code=code)
