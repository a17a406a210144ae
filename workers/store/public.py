"""A job row as the API shows it: one mapping, shared by ``GET /v1/jobs/{id}`` and the
webhook body (two copies drifted once: the webhook said every job had priority 5)."""

from __future__ import annotations

from typing import cast

from aijobs.schemas import (
    JOB_MODELS,
    EmbedJob,
    ExtractJob,
    GenerateJob,
    JobKind,
    JobResult,
    JobStatus,
    WebhookView,
)
from aijobs.store.models import Job

#: A job as the API answers it: the model of its kind (``JOB_MODELS``).
KindJob = GenerateJob | ExtractJob | EmbedJob


def public_job(job: Job, webhook: WebhookView | None = None) -> KindJob:
    """The public view of a job row: the model of its kind, which types its ``result``
    (with its webhook's deliveries, when given)."""
    kind = JobKind(job.kind)
    public = JOB_MODELS[kind](
        id=job.id,
        kind=kind,
        status=JobStatus(job.status),
        model=job.model,
        attempts=job.attempts,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        result=cast("JobResult | None", job.result),  # the kind's, as stored
        error=job.error,  # type: ignore[arg-type]
        usage=job.usage,  # type: ignore[arg-type]
        metadata=job.meta or {},
        purged=job.purged_at is not None,
        webhook=webhook,
        priority=job.priority,
        run_at=job.run_at,
    )
    return cast(KindJob, public)  # JOB_MODELS maps each kind to its own model
