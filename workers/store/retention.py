"""Retention: delete finished jobs' inputs, outputs and event streams after a window —
or at once, when a tenant deletes a job (``DELETE /v1/jobs/{id}``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from redis import Redis

from aijobs import redis_keys as keys
from aijobs.store import JobRepository
from aijobs.store.models import Job

log = logging.getLogger(__name__)

#: The fence a deleted job's meta hash keeps: above every attempt, so a straggler of the
#: job's last attempt (its closing events land just after the row) writes nothing back.
DELETED_FENCE = 2**31


@dataclass
class PurgeReport:
    """How many jobs were scrubbed."""

    jobs: int = 0


def purge(
    repo: JobRepository, redis: Redis, *, older_than_s: float, batch: int = 500
) -> PurgeReport:
    """Scrub every job that finished more than ``older_than_s`` ago.

    The row stays (id, tenant, kind, status, timestamps, usage, the error's code) for
    accounting; the input, the result, the metadata, stored vectors and the job's Redis
    keys go.
    """
    report = PurgeReport()
    while True:
        jobs = repo.list_purgeable(older_than_s=older_than_s, limit=batch)
        if not jobs:
            return report
        scrub_jobs(repo, redis, jobs)
        report.jobs += len(jobs)
        log.info("purged %d jobs older than %ss", len(jobs), int(older_than_s))


def scrub_jobs(
    repo: JobRepository,
    redis: Redis,
    jobs: Sequence[Job],
    *,
    deleted: bool = False,
    fence_ttl_s: int = 86_400,
) -> None:
    """Scrub these finished jobs: their Redis keys first (a failure leaves the row as it
    was, to try again), then their rows. ``deleted``: the tenant deleted them; their meta
    hash is left holding a fence no attempt passes, for ``fence_ttl_s``."""
    pipe = redis.pipeline(transaction=False)
    for job in jobs:
        if deleted:
            # The fence is raised in place, never deleted first: a write landing between
            # a delete and a new fence would find no fence and restore the text.
            meta = keys.meta_key(job.id)
            pipe.hset(meta, mapping={"attempt": DELETED_FENCE, "cancel": 1})
            pipe.expire(meta, fence_ttl_s)
            pipe.delete(keys.events_key(job.id))
        else:
            pipe.delete(keys.events_key(job.id), keys.meta_key(job.id))
    pipe.execute()
    for job in jobs:
        error = (
            {"code": job.error.get("code"), "retryable": job.error.get("retryable", False),
             "message": "(purged)"}
            if job.error else None
        )  # fmt: skip
        repo.scrub(job.id, error=error, deleted=deleted)
