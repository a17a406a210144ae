"""Run one delivery of a job: claim an attempt, run its kind, record the outcome.

Celery delivers at least once, so this is written to be called more than once
for the same job: terminal jobs are left alone, a live attempt's lease turns a
duplicate away, attempts are claimed by compare-and-set in SQL, and every event
write is fenced by attempt in Redis.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from workers.backoff import compute_backoff_s
from workers.events.protocol import EventType
from workers.events.writer import Fenced
from workers.kinds.generate import run_generate
from workers.logs import log_transition
from workers.providers.base import ProviderError
from workers.runtime import WorkerRuntime
from workers.schemas import JOB_INPUT_ADAPTER, JobStatus
from workers.store.models import Job

log = logging.getLogger(__name__)


class RetryLater(Exception):
    """Raised when the job should be delivered again after ``countdown_s``."""

    def __init__(self, countdown_s: float) -> None:
        super().__init__(f"retry in {countdown_s:.3f}s")
        self.countdown_s = countdown_s


def run_job(rt: WorkerRuntime, job_id: str) -> None:
    """Process one delivery of ``job_id``. Raises ``RetryLater`` to be re-queued."""
    started = time.monotonic()
    job = rt.repo.get(job_id)
    if job is None:
        log.warning("job %s not found; dropping its message", job_id)
        return
    if JobStatus(job.status).terminal:
        return
    seen = job.attempts
    if seen >= rt.settings.max_attempts:
        _fail_exhausted(rt, job, started)
        return
    attempt = seen + 1
    if not rt.leases.acquire(job_id, attempt):
        log.info("job %s is running elsewhere; duplicate delivery ignored", job_id)
        return
    try:
        claim = rt.repo.claim(job_id, seen_attempts=seen)
        if claim.attempt is None:
            return
        _run_attempt(rt, job, attempt, started)
    finally:
        rt.leases.release(job_id)


def _run_attempt(rt: WorkerRuntime, job: Job, attempt: int, started: float) -> None:
    opening: list[tuple[str, dict[str, Any]]] = []
    if attempt > 1:
        opening.append((EventType.RESET, {"attempt": attempt}))
    opening.append((EventType.STATUS, {"status": JobStatus.RUNNING, "attempt": attempt}))
    try:
        rt.writer.begin(job.id, attempt, opening)
    except Fenced:
        log.warning("job %s attempt %s fenced at start", job.id, attempt)
        return
    log_transition(job.id, job.kind, attempt, JobStatus.RUNNING, started)
    try:
        result, usage, stopped = _run_kind(rt, job, attempt)
    except Fenced:
        log_transition(job.id, job.kind, attempt, "superseded", started)
        return
    except ProviderError as exc:
        _on_provider_error(rt, job, attempt, exc, started)
        return
    except Exception as exc:
        log.exception("job %s attempt %s crashed", job.id, attempt)
        error = {"code": "internal_error", "message": type(exc).__name__, "retryable": False}
        _finish(rt, job, attempt, JobStatus.FAILED, started, error=error)
        return
    if rt.writer.state(job.id, attempt).fenced:
        log_transition(job.id, job.kind, attempt, "superseded", started)
        return
    status = JobStatus.CANCELLED if stopped else JobStatus.SUCCEEDED
    _finish(rt, job, attempt, status, started, result=result, usage=usage)


def _run_kind(
    rt: WorkerRuntime, job: Job, attempt: int
) -> tuple[dict[str, Any], dict[str, int] | None, bool]:
    spec = JOB_INPUT_ADAPTER.validate_python(job.input)
    writer = rt.writer
    job_id = job.id

    def on_text(text: str) -> None:
        writer.delta(job_id, attempt, text)

    state = writer.state(job_id, attempt)

    def should_stop() -> bool:
        return state.fenced or state.cancel_requested

    if spec.kind == "generate":
        out = run_generate(spec, rt.provider, on_text, should_stop)
        if state.fenced:
            raise Fenced(f"job {job_id} attempt {attempt} was superseded")
        return out.result(), out.usage, out.stopped
    raise ProviderError("unsupported_kind", f"kind {spec.kind!r} is not supported", retryable=False)


def _on_provider_error(
    rt: WorkerRuntime, job: Job, attempt: int, exc: ProviderError, started: float
) -> None:
    settings = rt.settings
    if not exc.retryable or attempt >= settings.max_attempts:
        error = exc.as_error()
        if exc.retryable:
            error["message"] = f"{exc.message} (gave up after {attempt} attempts)"
        _finish(rt, job, attempt, JobStatus.FAILED, started, error=error)
        return
    wait_s = min(
        compute_backoff_s(
            attempt,
            base_s=settings.retry_base_s,
            cap_s=settings.retry_cap_s,
            hint_s=exc.retry_after_s,
        ),
        float(settings.max_countdown_s),
    )
    if not rt.repo.transition(job.id, attempt=attempt, status=JobStatus.RETRYING):
        return
    status = {
        "status": JobStatus.RETRYING,
        "attempt": attempt,
        "reason": exc.code,
        "message": exc.message,
        "wait_s": round(wait_s, 3),
    }
    rt.writer.finish(job.id, attempt, [(EventType.STATUS, status)])
    log_transition(
        job.id, job.kind, attempt, JobStatus.RETRYING, started, reason=exc.code, wait_s=wait_s
    )
    raise RetryLater(wait_s)


def _finish(
    rt: WorkerRuntime,
    job: Job,
    attempt: int,
    status: JobStatus,
    started: float,
    *,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    usage: dict[str, int] | None = None,
) -> None:
    """Record the outcome in SQL first (the fence of truth), then close the stream."""
    if not rt.repo.transition(
        job.id, attempt=attempt, status=status, result=result, error=error, usage=usage
    ):
        rt.writer.forget(job.id, attempt)
        log_transition(job.id, job.kind, attempt, "superseded", started)
        return
    events: list[tuple[str, dict[str, Any]]] = []
    if result is not None:
        events.append((EventType.RESULT, result))
    if error is not None:
        events.append((EventType.ERROR, error))
    events.append((EventType.DONE, {"status": status}))
    last = rt.writer.finish(job.id, attempt, events)
    if last:
        rt.repo.record_last_event(job.id, last)
    extra = {"error_code": error["code"]} if error else {}
    log_transition(job.id, job.kind, attempt, status, started, **extra)


def _fail_exhausted(rt: WorkerRuntime, job: Job, started: float) -> None:
    error = {
        "code": "attempts_exhausted",
        "message": f"the job was started {job.attempts} times without finishing "
        "(its worker crashed or was stopped each time)",
        "retryable": False,
    }
    if not rt.repo.fail_unclaimed(job.id, seen_attempts=job.attempts, error=error):
        return
    # A fence one above the last attempt keeps any straggler of it from writing.
    fence = job.attempts + 1
    try:
        last = rt.writer.begin(
            job.id,
            fence,
            [(EventType.ERROR, error), (EventType.DONE, {"status": JobStatus.FAILED})],
        )
        rt.repo.record_last_event(job.id, last)
    except Fenced:
        pass
    log_transition(job.id, job.kind, fence, JobStatus.FAILED, started, error_code=error["code"])
