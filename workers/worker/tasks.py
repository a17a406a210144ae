"""Thin Celery tasks: load the job and run one delivery of it, then tell Celery how it ended.

Task arguments are the job id (and its kind, for Flower) only: prompts, texts and keys
never enter the broker or Flower. A job that must wait does not come back through Celery
(no countdown): it waits in the fair queue, holding no worker slot.

How a delivery ended is what Celery (and so Flower) records for its task:

- succeeded, or skipped (a duplicate, a finished job): ``SUCCESS``;
- failed: ``FAILURE``, the exception a :class:`JobFailedError` whose message is the job's
  error code and nothing else (never the provider's message, which may quote the prompt);
- cancelled: ``REVOKED``, Celery's own word for a task stopped on request;
- waiting (back in the fair queue: a retry's backoff, a wait for budget, a hand-off at
  shutdown): ``RETRY``, with a :class:`JobWaitingError` naming the reason. The ``Retry``
  (:class:`JobWaiting`) is raised here, not through ``Task.retry``, which would send the
  message again: the job waits in our queue, and its next delivery is a new task that the
  feeder sends.

With ``task_acks_late`` and ``task_acks_on_failure_or_timeout`` the message is acked in
every one of these cases (a failure, a revoke and a retry are all acked by the worker):
the job row, not the broker, is what remembers the job.
"""

from __future__ import annotations

import re

from billiard.exceptions import Terminated
from celery import Task
from celery.exceptions import Retry

from aijobs.worker.attempt import Outcome, Report
from aijobs.worker.celery_app import runtime_for
from aijobs.worker.runner import run_delivery
from aijobs.worker.typed_celery import celery_task

#: What an error code looks like. A provider's own code passes through as it came
#: (``billing_hard_limit_reached``, ``provider_http_502``); anything else is not shown.
_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class JobFailedError(Exception):
    """Raised to Celery when a delivery ended its job ``failed``; the message is the code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class JobWaitingError(Exception):
    """Carried by the ``Retry`` of a delivery whose job went back to the fair queue; the
    message is why it waits (a code)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JobWaiting(Retry):  # type: ignore[misc]  # Celery is untyped: Retry is Any
    """The ``Retry`` a delivery raises when its job went back to the fair queue.

    Its repr is its cause's: the worker describes a retried task by ``repr(retry.exc)``,
    but billiard hands it the retry wrapped, so without this Flower would show
    ``Retry(Retry(...), JobWaitingError('rate_limit'), None)``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"back in the queue ({reason})", JobWaitingError(reason))
        self.reason = reason

    def __repr__(self) -> str:
        return repr(self.exc)

    def __reduce__(self) -> tuple[type[JobWaiting], tuple[str]]:
        return type(self), (self.reason,)


class JobCancelledError(Terminated):  # type: ignore[misc]  # billiard is untyped
    """Raised to Celery when a delivery stopped its job on a cancel.

    A subclass of billiard's ``Terminated`` ("terminated by user request"), which the
    worker announces as ``REVOKED`` and acks, as it does for ``revoke(terminate=True)``.
    """

    def __init__(self, reason: str = "cancelled") -> None:
        super().__init__(reason)  # args round-trip through pickle (a prefork pool)


#: Raised on purpose: Celery logs them as expected (one line, no traceback).
EXPECTED = (JobFailedError, JobCancelledError)


def _code(code: str | None, default: str) -> str:
    text = str(code) if code else ""  # an ErrorCode is shown as its value
    return text if _CODE.fullmatch(text) else default


def tell_celery(report: Report) -> None:
    """Return if the delivery succeeded or had nothing to do; raise what Celery records
    for a failed, cancelled or waiting one."""
    if report.outcome is Outcome.FAILED:
        raise JobFailedError(_code(report.code, "failed"))
    if report.outcome is Outcome.CANCELLED:
        raise JobCancelledError
    if report.outcome is Outcome.WAITING:
        raise JobWaiting(_code(report.code, "waiting"))


@celery_task(bind=True, name="aijobs.generate", throws=EXPECTED)
def generate(self: Task, job_id: str, kind: str = "generate") -> None:
    """Run a ``generate`` job."""
    tell_celery(run_delivery(runtime_for(self.app), job_id))


@celery_task(bind=True, name="aijobs.extract", throws=EXPECTED)
def extract(self: Task, job_id: str, kind: str = "extract") -> None:
    """Run an ``extract`` job."""
    tell_celery(run_delivery(runtime_for(self.app), job_id))


@celery_task(bind=True, name="aijobs.embed", throws=EXPECTED)
def embed(self: Task, job_id: str, kind: str = "embed") -> None:
    """Run an ``embed`` job."""
    tell_celery(run_delivery(runtime_for(self.app), job_id))
