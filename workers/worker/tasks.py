"""Thin Celery tasks: load the job, run it, re-queue it when it must wait.

Task arguments are the job id only: prompts, texts and keys never enter the
broker or Flower.
"""

from __future__ import annotations

from celery import Task, shared_task

from aijobs.worker.celery_app import runtime_for
from aijobs.worker.runner import RetryLater, run_job


def _deliver(task: Task, job_id: str) -> None:
    # The kind travels in the message only so Flower shows it; the row is the truth.
    try:
        run_job(runtime_for(task.app), job_id)
    except RetryLater as wait:
        # Our runner caps attempts; Celery only carries the countdown.
        raise task.retry(countdown=wait.countdown_s, max_retries=None) from None


@shared_task(bind=True, name="aijobs.generate", max_retries=None)
def generate(self: Task, job_id: str, kind: str = "generate") -> None:
    """Run a ``generate`` job."""
    _deliver(self, job_id)


@shared_task(bind=True, name="aijobs.extract", max_retries=None)
def extract(self: Task, job_id: str, kind: str = "extract") -> None:
    """Run an ``extract`` job."""
    _deliver(self, job_id)


@shared_task(bind=True, name="aijobs.embed", max_retries=None)
def embed(self: Task, job_id: str, kind: str = "embed") -> None:
    """Run an ``embed`` job."""
    _deliver(self, job_id)
