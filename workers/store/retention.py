"""Retention: delete finished jobs' inputs, outputs and event streams after a window."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis import Redis

from aijobs import redis_keys as keys
from aijobs.store import JobRepository

log = logging.getLogger(__name__)


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
        pipe = redis.pipeline(transaction=False)
        for job in jobs:
            error = (
                {"code": job.error.get("code"), "retryable": job.error.get("retryable", False),
                 "message": "(purged)"}
                if job.error else None
            )  # fmt: skip
            repo.scrub(job.id, error=error)
            pipe.delete(keys.events_key(job.id), keys.meta_key(job.id))
        pipe.execute()
        report.jobs += len(jobs)
        log.info("purged %d jobs older than %ss", len(jobs), int(older_than_s))
