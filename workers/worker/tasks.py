"""Thin Celery tasks: load the job and run one delivery of it.

Task arguments are the job id (and its kind, for Flower) only: prompts, texts and keys
never enter the broker or Flower. A job that must wait does not come back through Celery
(no countdown): it waits in the fair queue, holding no worker slot.
"""

from __future__ import annotations

from celery import Task, shared_task

from aijobs.worker.celery_app import runtime_for
from aijobs.worker.runner import run_delivery


@shared_task(bind=True, name="aijobs.generate")
def generate(self: Task, job_id: str, kind: str = "generate") -> None:
    """Run a ``generate`` job."""
    run_delivery(runtime_for(self.app), job_id)


@shared_task(bind=True, name="aijobs.extract")
def extract(self: Task, job_id: str, kind: str = "extract") -> None:
    """Run an ``extract`` job."""
    run_delivery(runtime_for(self.app), job_id)


@shared_task(bind=True, name="aijobs.embed")
def embed(self: Task, job_id: str, kind: str = "embed") -> None:
    """Run an ``embed`` job."""
    run_delivery(runtime_for(self.app), job_id)
