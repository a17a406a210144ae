"""Run one delivery of a job: claim an attempt, run its kind, record the outcome.

Celery delivers at least once, so this is written to be called more than once
for the same job: terminal jobs are left alone, a live attempt's lease turns a
duplicate away, attempts are claimed by compare-and-set in SQL, and every event
write is fenced by attempt in Redis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aijobs import metrics
from aijobs.events.protocol import EventType
from aijobs.events.writer import Fenced
from aijobs.kinds.embed import EmbedLimits, EmbedOutput, run_embed
from aijobs.kinds.extract import ExtractOutput, run_extract
from aijobs.kinds.generate import GenerateOutput, run_generate
from aijobs.logs import log_transition
from aijobs.providers.base import EmbeddingBatch, ProviderError
from aijobs.schemas import JOB_INPUT_ADAPTER, EmbedInput, ExtractInput, GenerateInput, JobStatus
from aijobs.store.models import Job, utcnow
from aijobs.worker.context import WorkerContext
from aijobs.worker.retry import backoff_ceiling_s, compute_backoff_s

log = logging.getLogger(__name__)


JobSpec = GenerateInput | ExtractInput | EmbedInput


class RetryLater(Exception):
    """Raised when the job should be delivered again after ``countdown_s``."""

    def __init__(self, countdown_s: float) -> None:
        super().__init__(f"retry in {countdown_s:.3f}s")
        self.countdown_s = countdown_s


def run_job(rt: WorkerContext, job_id: str) -> None:
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
        spec = JOB_INPUT_ADAPTER.validate_python(job.input)
        estimate = estimate_tokens(spec)
        # One provider call per attempt is admitted up front, before the attempt is
        # claimed; an embedding job admits each of its batches as it goes.
        wait_s = 0.0 if isinstance(spec, EmbedInput) else _admit(rt, job.model, estimate)
        if wait_s > 0:
            _defer(rt, job, wait_s, started)
            return
        claim = rt.repo.claim(job_id, seen_attempts=seen)
        if claim.attempt is None:
            return
        if attempt == 1:
            metrics.TIME_QUEUED.labels(job.kind).observe(_age_s(job))
        _run_attempt(rt, job, spec, attempt, estimate, started)
    finally:
        rt.leases.release(job_id)


def _age_s(job: Job) -> float:
    return max(0.0, (utcnow() - job.created_at).total_seconds())


def estimate_tokens(spec: JobSpec) -> int:
    """A provider-side token estimate before the call (~4 characters a token)."""
    if isinstance(spec, GenerateInput):
        chars = sum(len(m.content) for m in spec.messages)
        return chars // 4 + (spec.max_tokens or 512)
    if isinstance(spec, ExtractInput):
        return (len(spec.text) + len(spec.instructions or "")) // 4 + 512
    return 0  # embeddings spend the budget batch by batch


def _admit(rt: WorkerContext, model: str, estimate: int) -> float:
    """Spend the fleet-wide budget for one call; 0 when admitted, else how long to wait."""
    slept = 0.0
    while True:
        wait_s = rt.limiter.acquire(model, estimate)
        if wait_s <= 0:
            return 0.0
        metrics.RATE_LIMIT_WAITS.labels(model).inc()
        metrics.RATE_LIMIT_WAIT_SECONDS.labels(model).inc(wait_s)
        if slept + wait_s > rt.settings.rate_limit_sleep_max_s:
            return wait_s
        time.sleep(wait_s)  # a short wait: cheaper than a round trip through the queue
        slept += wait_s


def _defer(rt: WorkerContext, job: Job, wait_s: float, started: float) -> None:
    """Put a job that may not call its provider yet back in the queue, attempts untouched."""
    waiting = {
        "status": job.status,
        "attempt": job.attempts,
        "reason": "rate_limit",
        "wait_s": round(wait_s, 3),
    }
    rt.writer.finish(job.id, job.attempts, [(EventType.STATUS, waiting)])
    log_transition(job.id, job.kind, job.attempts, "deferred", started, wait_s=wait_s)
    if wait_s > rt.settings.max_countdown_s:
        rt.reconciler.park(job.id, job.kind, time.time() + wait_s)
        return
    raise RetryLater(wait_s)


def _run_attempt(
    rt: WorkerContext, job: Job, spec: JobSpec, attempt: int, estimate: int, started: float
) -> None:
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
        result, usage, stopped = _run_kind(rt, job, spec, attempt, estimate)
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
    rt: WorkerContext, job: Job, spec: JobSpec, attempt: int, estimate: int
) -> tuple[dict[str, Any], dict[str, int] | None, bool]:
    writer = rt.writer
    job_id = job.id
    started = time.monotonic()
    first: list[float] = []

    def on_text(text: str) -> None:
        if not first:
            first.append(time.monotonic())
            metrics.TIME_TO_FIRST_TOKEN.labels(job.kind).observe(first[0] - started)
        writer.delta(job_id, attempt, text)

    state = writer.state(job_id, attempt)
    handing_off = rt.handing_off

    def should_stop() -> bool:
        return state.fenced or state.cancel_requested or handing_off.is_set()

    out: GenerateOutput | ExtractOutput | EmbedOutput
    if isinstance(spec, EmbedInput):
        out = _run_embed(rt, job, spec, attempt, should_stop)
    elif isinstance(spec, GenerateInput):
        out = run_generate(spec, rt.provider, on_text, should_stop)
    elif isinstance(spec, ExtractInput):

        def on_round(round_: int) -> None:
            writer.emit(job_id, attempt, EventType.RESET, {"attempt": attempt, "round": round_})

        out = run_extract(
            spec, rt.provider, on_text, on_round, should_stop,
            repair_rounds=rt.settings.extract_repair_rounds,
        )  # fmt: skip
    else:
        raise ProviderError(
            "unsupported_kind", f"kind {spec.kind!r} is not supported", retryable=False
        )
    if out.usage:
        rt.limiter.settle(job.model, estimate, out.usage.get("total_tokens", estimate))
        for kind in ("prompt_tokens", "completion_tokens"):
            if out.usage.get(kind):
                metrics.TOKENS.labels(job.model, kind.removesuffix("_tokens")).inc(out.usage[kind])
    if state.fenced:
        raise Fenced(f"job {job_id} attempt {attempt} was superseded")
    if out.stopped and not state.cancel_requested:
        raise ProviderError(
            "worker_shutdown",
            "the worker shut down; the job was handed to another worker",
            retryable=True,
            retry_after_s=0.0,
        )
    return out.result(), out.usage, out.stopped


class _RepoBatches:
    """The job store as an embedding job's ``BatchStore``."""

    def __init__(self, rt: WorkerContext, job_id: str) -> None:
        self._repo = rt.repo
        self._job_id = job_id

    def stored(self) -> dict[int, int]:
        return self._repo.stored_batches(self._job_id)

    def save(self, batch: int, start: int, result: EmbeddingBatch) -> None:
        self._repo.save_batch(
            self._job_id,
            batch,
            start=start,
            count=result.count,
            dimensions=result.dimensions,
            vectors=result.vectors,
        )


def _run_embed(
    rt: WorkerContext, job: Job, spec: EmbedInput, attempt: int, should_stop: Callable[[], bool]
) -> EmbedOutput:
    settings = rt.settings

    def admit(tokens: int) -> None:
        # Batches wait for the fleet-wide budget here, in short sleeps, stopping early
        # when the job is cancelled or superseded.
        while not should_stop():
            wait_s = rt.limiter.acquire(job.model, tokens)
            if wait_s <= 0:
                return
            time.sleep(min(wait_s, 0.5))

    def backoff(try_: int, hint_s: float | None) -> float:
        if hint_s:
            rt.limiter.block_for(job.model, hint_s)
        return compute_backoff_s(
            try_, base_s=settings.retry_base_s, cap_s=settings.retry_cap_s, hint_s=hint_s
        )

    def progress(done: int, total: int) -> None:
        rt.writer.emit(
            job.id, attempt, EventType.PROGRESS, {"done": done, "total": total, "attempt": attempt}
        )

    limits = EmbedLimits(
        max_inputs=settings.embed_batch_size,
        max_tokens=settings.embed_batch_tokens,
        concurrency=settings.embed_concurrency,
        batch_retries=settings.embed_batch_retries,
    )
    return run_embed(
        spec,
        rt.provider,
        _RepoBatches(rt, job.id),
        limits=limits,
        admit=admit,
        backoff_s=backoff,
        on_progress=progress,
        should_stop=should_stop,
    )


def _on_provider_error(
    rt: WorkerContext, job: Job, attempt: int, exc: ProviderError, started: float
) -> None:
    settings = rt.settings
    if exc.code != "worker_shutdown":
        metrics.PROVIDER_ERRORS.labels(exc.code).inc()
    if exc.code == "rate_limited" and exc.retry_after_s:
        rt.limiter.block_for(job.model, exc.retry_after_s)  # every worker holds off
    if not exc.retryable or attempt >= settings.max_attempts:
        error = exc.as_error()
        if exc.retryable:
            error["message"] = f"{exc.message} (gave up after {attempt} attempts)"
        _finish(rt, job, attempt, JobStatus.FAILED, started, error=error)
        return
    wait_s = compute_backoff_s(
        attempt, base_s=settings.retry_base_s, cap_s=settings.retry_cap_s, hint_s=exc.retry_after_s
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
    if exc.retry_after_s is None:
        status["backoff_max_s"] = backoff_ceiling_s(
            attempt, base_s=settings.retry_base_s, cap_s=settings.retry_cap_s
        )
    rt.writer.finish(job.id, attempt, [(EventType.STATUS, status)])
    log_transition(
        job.id, job.kind, attempt, JobStatus.RETRYING, started, reason=exc.code, wait_s=wait_s
    )
    metrics.RETRIES.labels(job.kind, exc.code).inc()
    if wait_s > settings.max_countdown_s:
        # Too long for a countdown (the broker would redeliver it): park it.
        rt.reconciler.park(job.id, job.kind, time.time() + wait_s)
        return
    raise RetryLater(wait_s)


def _finish(
    rt: WorkerContext,
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
    events: list[tuple[str, dict[str, Any]]] = []
    if result is not None:
        events.append((EventType.RESULT, result))
    if error is not None:
        events.append((EventType.ERROR, error))
    events.append((EventType.DONE, {"status": status}))
    # Write the text first: then only this attempt can write, so the closing events'
    # ids are known before they exist and go into the row with the outcome.
    rt.writer.flush()
    last = rt.writer.state(job.id, attempt).last_event_id + len(events)
    if not rt.repo.transition(
        job.id,
        attempt=attempt,
        status=status,
        result=result,
        error=error,
        usage=usage,
        last_event_id=last,
    ):
        rt.writer.forget(job.id, attempt)
        log_transition(job.id, job.kind, attempt, "superseded", started)
        return
    written = rt.writer.finish(job.id, attempt, events)
    if written and written != last:  # pragma: no cover - would mean a second writer
        log.error("job %s: closing event id %s, expected %s", job.id, written, last)
        rt.repo.record_last_event(job.id, written)
    metrics.JOBS_FINISHED.labels(job.kind, status).inc()
    metrics.JOB_DURATION.labels(job.kind, status).observe(_age_s(job))
    extra = {"error_code": error["code"]} if error else {}
    log_transition(job.id, job.kind, attempt, status, started, **extra)


def _fail_exhausted(rt: WorkerContext, job: Job, started: float) -> None:
    error = {
        "code": "attempts_exhausted",
        "message": f"the job was started {job.attempts} times without finishing "
        "(its worker crashed or was stopped each time)",
        "retryable": False,
    }
    if not rt.repo.fail_unclaimed(job.id, seen_attempts=job.attempts, error=error):
        return
    metrics.JOBS_FINISHED.labels(job.kind, JobStatus.FAILED).inc()
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
