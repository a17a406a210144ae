"""One attempt of a job: it owns the row, the fence, the event stream, the log line and
the metric of each of its transitions, and it is what the job's kind runs against.

Every transition is one call here (``start``, ``succeed``, ``fail``, ``retry_later``,
``step_aside``): SQL first (the truth, compare-and-set on status and attempt), then the
job's events, then one log line and one metric. A transition that loses its
compare-and-set means a newer delivery owns the job: the attempt stops without a word.
"""

from __future__ import annotations

import logging
import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from aijobs import metrics
from aijobs.errors import ErrorCode, JobFailed, Superseded, WaitForBudget
from aijobs.events.protocol import EventType
from aijobs.events.writer import Fenced
from aijobs.fairqueue import QueuedJob
from aijobs.logs import log_transition
from aijobs.providers.base import EmbeddingBatch, Provider
from aijobs.schemas import JobStatus
from aijobs.spend.usage import AttemptUsage
from aijobs.store.models import Job, utcnow
from aijobs.store.usage import Billed
from aijobs.worker.budget_watch import BudgetWatch
from aijobs.worker.metering import Meter, MeteredProvider
from aijobs.worker.retry import compute_backoff_s

if TYPE_CHECKING:
    from aijobs.kinds.base import BatchStore, Kind, KindOutput
    from aijobs.store.jobs import Claim
    from aijobs.worker.context import WorkerContext
    from aijobs.worker.leases import Lease

log = logging.getLogger(__name__)

#: Errors of our own bookkeeping (Redis, the store, the broker): never the job's fault.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (RedisError, SQLAlchemyError, OSError)
#: How long an attempt keeps trying to record an outcome the provider already gave.
_RECORD_FOR_S = 30.0


class Outcome(StrEnum):
    """How one delivery ended, as the task reports it (Flower shows it)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Back in the queue: a retry's backoff, a wait for budget, a hand-off.
    WAITING = "waiting"
    #: Nothing was the delivery's to do: finished already, a duplicate, superseded.
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Report:
    """A delivery's outcome, and the error code when it failed or waits."""

    outcome: Outcome
    code: str | None = None


SKIPPED = Report(Outcome.SKIPPED)


class _Batches:
    """The job store as an embedding job's ``BatchStore``."""

    def __init__(self, ctx: WorkerContext, job_id: str) -> None:
        self._repo = ctx.repo
        self._job_id = job_id

    def stored(self) -> dict[int, int]:
        return self._repo.stored_batches(self._job_id)

    def save(self, batch: int, start: int, result: EmbeddingBatch) -> None:
        self._repo.save_batch(
            self._job_id, batch, start=start, count=result.count,
            dimensions=result.dimensions, vectors=result.vectors,
        )  # fmt: skip


class Attempt:
    """A running attempt of ``job`` (the kind's ``KindContext``)."""

    def __init__(
        self,
        ctx: WorkerContext,
        job: Job,
        claim: Claim,
        lease: Lease,
        *,
        kind: Kind,
        spec: Any,
        charged: int,
        started: float,
    ) -> None:
        self.ctx = ctx
        self.job = job
        self.number = claim.attempt
        self.claim = claim
        self.lease = lease
        self.kind = kind
        self.spec = spec
        self.started = started
        settings = ctx.settings
        self.settings = settings
        self.meter = Meter(claim.attempt, job.model, settings.prices)
        self.watch = _watch(ctx, job, self.meter)
        self.provider: Provider = MeteredProvider(
            ctx.provider, self.meter, self.watch.chunk if self.watch else _nothing
        )
        self.guard = ctx.watchdog.guard(
            time_limit_s=settings.task_time_limit_s, call_limit_s=settings.provider_deadline_s
        )
        self.batches: BatchStore = _Batches(ctx, job.id)
        self._charged = charged
        self._first_text: float | None = None
        self._cancel_in_store = claim.cancel_requested
        self.report = SKIPPED

    # -- the kind's side --------------------------------------------------------------

    def text(self, text: str) -> None:
        """Generated text: buffered for the job's stream."""
        if self._first_text is None:
            self._first_text = time.monotonic()
            metrics.TIME_TO_FIRST_TOKEN.labels(self.job.kind).observe(
                self._first_text - self.started
            )
        self.ctx.writer.delta(self.job.id, self.number, text)

    def new_round(self, round_: int) -> None:
        """An extraction's repair round: readers drop the text so far."""
        data = {"attempt": self.number, "round": round_}
        self.ctx.writer.emit(self.job.id, self.number, EventType.RESET, data)

    def progress(self, done: int, total: int) -> None:
        """Inputs done so far (embeddings)."""
        data = {"done": done, "total": total, "attempt": self.number}
        self.ctx.writer.emit(self.job.id, self.number, EventType.PROGRESS, data)

    @property
    def cancel_wanted(self) -> bool:
        """Cancel asked for, through Redis or recorded in the store."""
        if self._cancel_in_store or self.job.id in self.ctx.cancelled_in_store:
            self._cancel_in_store = True
        return self._cancel_in_store or self._events.cancel_requested

    @property
    def _events(self) -> Any:
        return self.ctx.writer.state(self.job.id, self.number)

    def superseded(self) -> bool:
        """A newer delivery owns the job (its fence or its lease)."""
        return self._events.fenced or self.ctx.leases.lost(self.lease)

    def should_stop(self) -> bool:
        """Stop between chunks: cancelled, superseded, out of time, broken, handing off."""
        events = self._events
        return bool(
            events.fenced
            or (self.watch is not None and self.watch.exceeded is not None)
            or events.cancel_requested
            or events.broken
            or self.guard.expired
            or self.ctx.handing_off.is_set()
            or self.cancel_wanted
            or self.ctx.leases.lost(self.lease)
        )

    def admit(self, tokens: int) -> None:
        """Spend the fleet's budget for one provider call (embedding batches)."""
        slept = 0.0
        while not self.should_stop():
            wait_s = self.ctx.limiter.acquire(self.job.model, tokens, tenant=self.job.tenant)
            if wait_s <= 0:
                self._charged += tokens
                return
            metrics.RATE_LIMIT_WAITS.labels(metrics.model_label(self.job.model)).inc()
            metrics.RATE_LIMIT_WAIT_SECONDS.labels(metrics.model_label(self.job.model)).inc(wait_s)
            if slept + wait_s > self.settings.rate_limit_sleep_max_s:
                raise WaitForBudget(wait_s)  # too long to hold a worker slot
            nap = min(wait_s, 0.5)
            time.sleep(nap)
            slept += nap

    def backoff_s(self, try_: int, hint_s: float | None) -> float:
        """The wait before retrying one call (a 429's hint blocks every worker too)."""
        if hint_s:
            self.ctx.limiter.block_for(self.job.model, hint_s)
        settings = self.settings
        return compute_backoff_s(
            try_, base_s=settings.retry_base_s, cap_s=settings.retry_cap_s, hint_s=hint_s
        )

    # -- the attempt's story ------------------------------------------------------------

    def run(self) -> Report:
        """Run the kind, record how the attempt ended, and say how."""
        try:
            self.start()
            if self.watch is not None and self.watch.check(self.meter.running()):
                # Queued before the budget ran out: it does not start on the tenant's bill.
                self.fail(self._budget_error())
                return self.report
            output = self.kind.run(self.spec, self)
            self._settle(output.usage)
            self._ended(output)
        except Superseded:
            self._log("superseded")
        except WaitForBudget as wait:
            self._settle(None)
            reason = "waiting for the fleet's budget"
            self.step_aside(ErrorCode.RATE_LIMIT_WAIT, reason, wait.wait_s)
        except JobFailed as failure:
            self._settle(None)
            if self.guard.expired and failure.code != ErrorCode.TIMEOUT:
                failure = JobFailed(ErrorCode.TIMEOUT, self.guard.expired, retryable=True)
            self.failed(failure)
        except INFRASTRUCTURE_ERRORS as exc:
            log.warning("job %s attempt %s: %s", self.job.id, self.number, exc)
            down = JobFailed(
                ErrorCode.INFRASTRUCTURE,
                f"the job system's storage was unavailable ({type(exc).__name__})",
                retryable=True,
            )
            try:
                self.failed(down)
            except INFRASTRUCTURE_ERRORS:
                # Still down: the lease lapses and the reconciler queues the job again.
                self._log("abandoned", error_code=ErrorCode.INFRASTRUCTURE)
        except Exception as exc:
            log.exception("job %s attempt %s crashed", self.job.id, self.number)
            self.fail({"code": ErrorCode.INTERNAL_ERROR, "message": type(exc).__name__,
                       "retryable": False})  # fmt: skip
        finally:
            self.ctx.watchdog.release(self.guard)
        return self.report

    def start(self) -> None:
        """Raise the fence and tell readers the attempt runs (a reset first if it is not
        the first)."""
        opening: list[tuple[str, dict[str, Any]]] = []
        if self.number > 1:
            opening.append((EventType.RESET, {"attempt": self.number}))
        opening.append((EventType.STATUS, {"status": JobStatus.RUNNING, "attempt": self.number}))
        try:
            self.ctx.writer.begin(
                self.job.id, self.number, opening,
                floor=self.claim.floor, reserved=self.claim.reserved,
            )  # fmt: skip
        except Fenced:
            raise Superseded(f"job {self.job.id} attempt {self.number}") from None
        if self.number == 1:
            age = (utcnow() - self.job.created_at).total_seconds()
            metrics.TIME_QUEUED.labels(self.job.kind).observe(max(0.0, age))
        self._log(JobStatus.RUNNING)

    def _ended(self, output: KindOutput) -> None:
        if self.superseded():
            raise Superseded(self.job.id)
        broken = self._events.broken
        if broken:
            raise JobFailed(ErrorCode.INFRASTRUCTURE, "events could not be written", retryable=True)
        if not output.stopped:
            self.succeed(output)
        elif self.cancel_wanted:
            self.finish(JobStatus.CANCELLED, result=output.result(), usage=output.usage)
        elif self.watch is not None and self.watch.exceeded is not None:
            # The text so far stays, in the record and the stream.
            self.finish(JobStatus.FAILED, result=output.result(), error=self._budget_error())
        elif self.guard.expired:
            raise JobFailed(ErrorCode.TIMEOUT, self.guard.expired, retryable=True)
        elif self.ctx.handing_off.is_set():
            self.step_aside(
                ErrorCode.WORKER_SHUTDOWN,
                "the worker shut down; the job was handed to another worker",
                0.0,
            )
        else:
            raise Superseded(self.job.id)

    def succeed(self, output: KindOutput) -> None:
        """The job is done."""
        usage = output.usage
        for name in ("prompt_tokens", "completion_tokens"):
            if usage and usage.get(name):
                metrics.TOKENS.labels(
                    metrics.model_label(self.job.model), name.removesuffix("_tokens")
                ).inc(usage[name])
        self.finish(JobStatus.SUCCEEDED, result=output.result(), usage=usage)

    def failed(self, failure: JobFailed) -> None:
        """A failed attempt: retried with backoff, or the job's end."""
        metrics.PROVIDER_ERRORS.labels(metrics.code_label(failure.code)).inc()
        if failure.code == ErrorCode.RATE_LIMITED and failure.retry_after_s:
            self.ctx.limiter.block_for(self.job.model, failure.retry_after_s)  # fleet-wide
        retry = self.ctx.retry_policy.after(
            self.number,
            retryable=failure.retryable,
            spent=self.job.failures + self.job.losses + 1,
            hint_s=failure.retry_after_s,
        )
        if retry is None:
            error = failure.as_error()
            if failure.retryable:
                error["message"] = f"{failure.message} (gave up after {self.number} attempts)"
            self.fail(error)
            return
        status: dict[str, Any] = {
            "status": JobStatus.RETRYING,
            "attempt": self.number,
            "reason": failure.code,
            "message": failure.message,
            "wait_s": round(retry.wait_s, 3),
        }
        if retry.ceiling_s is not None:
            status["backoff_max_s"] = retry.ceiling_s
        self.retry_later(status, retry.wait_s, counts=True)
        metrics.RETRIES.labels(self.job.kind, metrics.code_label(failure.code)).inc()

    def step_aside(self, reason: ErrorCode, message: str, wait_s: float) -> None:
        """Give the job back to the queue without spending an attempt (a hand-off at
        shutdown, a wait for the fleet's budget)."""
        status = {
            "status": JobStatus.RETRYING,
            "attempt": self.number,
            "reason": reason,
            "message": message,
            "wait_s": round(wait_s, 3),
        }
        self.retry_later(status, wait_s, counts=False)

    def retry_later(self, status: dict[str, Any], wait_s: float, *, counts: bool) -> None:
        """``running`` -> ``retrying``, and the job waits in the queue for ``wait_s``."""
        run_at = utcnow() + timedelta(seconds=wait_s)
        if not self.ctx.repo.transition(
            self.job.id, attempt=self.number, status=JobStatus.RETRYING,
            failed_attempt=counts, run_at=run_at, billed=self._billed(),
        ):  # fmt: skip
            self._superseded_now()
            return
        self.ctx.writer.finish(self.job.id, self.number, [(EventType.STATUS, status)])
        job = self.job
        self.ctx.queue.push(
            QueuedJob(job.id, job.kind, job.tenant, job.priority),
            run_at_epoch_s=run_at.timestamp(),
        )
        self._log(JobStatus.RETRYING, reason=status["reason"], wait_s=round(wait_s, 3))
        self.report = Report(Outcome.WAITING, str(status["reason"]))

    def fail(self, error: dict[str, Any]) -> None:
        """The job ends failed."""
        self.finish(JobStatus.FAILED, error=error)

    def finish(
        self,
        status: JobStatus,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        usage: dict[str, int] | None = None,
    ) -> None:
        """Record the outcome: the text first, then the row (the fence of truth), then the
        closing events, with the ids the row recorded."""
        events: list[tuple[str, dict[str, Any]]] = []
        if result is not None:
            events.append((EventType.RESULT, result))
        if error is not None:
            events.append((EventType.ERROR, error))
        events.append((EventType.DONE, {"status": status}))
        writer = self.ctx.writer
        # The text the outcome ends, before the outcome; if Redis stays down it waits in
        # the writer and the row takes the outcome regardless.
        with suppress(RedisError):
            _retrying(writer.flush)
        state = writer.state(self.job.id, self.number)
        if state.fenced:
            self._superseded_now()
            return
        last = state.last_event_id + writer.pending_count(self.job.id, self.number) + len(events)
        billed = self._billed()
        recorded = _retrying(
            lambda: self.ctx.repo.transition(
                self.job.id, attempt=self.number, status=status, result=result,
                error=error, usage=usage, last_event_id=last,
                webhook=self.job.webhook_url is not None, billed=billed,
            )
        )  # fmt: skip
        if not recorded:
            self._superseded_now()
            return
        try:
            written = writer.finish(self.job.id, self.number, events)
        except RedisError as exc:
            # The row has the outcome; readers are served it from there, and the writer
            # keeps trying in the background.
            log.warning("job %s: closing events wait for Redis (%s)", self.job.id, exc)
            written = last
        if written and written != last:  # a reset had to go first (Redis lost data)
            self.ctx.repo.record_last_event(self.job.id, written)
        metrics.JOBS_FINISHED.labels(self.job.kind, status).inc()
        age = (utcnow() - self.job.created_at).total_seconds()
        metrics.JOB_DURATION.labels(self.job.kind, status).observe(max(0.0, age))
        extra = {"error_code": error["code"]} if error else {}
        self._log(status, **extra)
        self.report = Report(Outcome(status.value), error["code"] if error else None)

    # -- helpers ------------------------------------------------------------------------

    def _billed(self) -> Billed:
        """What this attempt cost: counted once, when its transition is written (the
        tenant's budget counters and metrics take it here too)."""
        usage = self.meter.result()
        if self.watch is not None:
            self.watch.settle(usage)
        _count(self.job, usage)
        return Billed(self.job.tenant, self.job.model, usage)

    def _budget_error(self) -> dict[str, Any]:
        budget = self.watch.exceeded if self.watch is not None else None
        named = budget.describe() if budget is not None else "its"
        return {
            "code": ErrorCode.BUDGET_EXCEEDED,
            "message": f"tenant {self.job.tenant} reached its {named} budget",
            "retryable": False,
        }

    def _superseded_now(self) -> None:
        self.ctx.writer.forget(self.job.id, self.number)
        self._log("superseded")

    def _settle(self, usage: dict[str, int] | None) -> None:
        """Correct the budget with what the provider billed (nothing billed: refund)."""
        charged, self._charged = self._charged, 0
        if not charged:
            return
        actual = int(usage.get("total_tokens") or 0) if usage else 0
        try:
            self.ctx.limiter.settle(self.job.model, charged, actual, tenant=self.job.tenant)
        except RedisError as exc:  # bookkeeping: the job's outcome does not wait on it
            log.warning("job %s: budget not settled (%s)", self.job.id, exc)

    def _log(self, status: str, **extra: Any) -> None:
        log_transition(self.job.id, self.job.kind, self.number, status, self.started, **extra)


def _nothing() -> None:
    pass


def _watch(ctx: WorkerContext, job: Job, meter: Meter) -> BudgetWatch | None:
    """The budget's watch for a tenant that has budgets (none: no Redis call at all)."""
    if ctx.budgets is None or ctx.spend is None:
        return None
    try:
        budgets = ctx.budgets.in_force(job.tenant)
    except INFRASTRUCTURE_ERRORS as exc:
        log.warning("job %s: budgets not read (%s)", job.id, exc)
        return None
    if not budgets:
        return None
    every = ctx.settings.budget_check_chunks
    return BudgetWatch(ctx.spend, job.tenant, budgets, meter, every_chunks=every)


def _count(job: Job, usage: AttemptUsage) -> None:
    tenant, model = metrics.tenant_label(job.tenant), metrics.model_label(job.model)
    for kind, tokens in (("prompt", usage.prompt_tokens), ("completion", usage.completion_tokens),
                         ("cached", usage.cached_tokens)):  # fmt: skip
        if tokens:
            metrics.TENANT_TOKENS.labels(tenant, model, kind).inc(tokens)
    if usage.cost_usd:
        metrics.COST_USD.labels(tenant, model).inc(usage.cost_usd)


def _retrying(action: Any) -> Any:
    """``action()``, retried through Redis or store errors for up to ``_RECORD_FOR_S``:
    the provider already answered, so its outcome is worth waiting for."""
    deadline = time.monotonic() + _RECORD_FOR_S
    pause = 0.1
    while True:
        try:
            return action()
        except INFRASTRUCTURE_ERRORS:
            if time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 3.0)
