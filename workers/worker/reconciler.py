"""One mechanism that brings stuck jobs back to the queue.

Runs in every worker process; a short Redis lock lets one of them act per tick.
- A running job whose lease lapsed lost its worker (SIGKILL, OOM, a lost machine):
  it is re-enqueued within ``lease_ttl_s`` plus one tick, not after the broker's
  visibility timeout. Fencing makes that safe even if the old attempt still lives.
- A parked job (its wait was longer than a countdown may be) is re-enqueued when due.
- A retrying job whose countdown message was lost is re-enqueued once it is overdue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from aijobs import metrics
from aijobs import redis_keys as keys
from aijobs.schemas import JobStatus
from aijobs.store import JobRepository
from aijobs.store.retention import purge
from aijobs.worker.periodic import Periodic

log = logging.getLogger(__name__)

#: Re-enqueue a job: (job id, kind).
Send = Callable[[str, str], None]


@dataclass
class ReconcileReport:
    """What one pass re-enqueued, by reason."""

    never_sent: list[str] = field(default_factory=list)
    lease_lapsed: list[str] = field(default_factory=list)
    parked_due: list[str] = field(default_factory=list)
    retry_overdue: list[str] = field(default_factory=list)


class Reconciler:
    """Periodic rescue of dead attempts, due parked jobs and lost retries."""

    def __init__(
        self,
        *,
        repo: JobRepository,
        redis: Redis,
        send: Send,
        lease_ttl_s: float,
        max_countdown_s: float,
        interval_s: float,
        queued_stale_s: float = 3600.0,
        retention_s: float | None = None,
        purge_interval_s: float = 3600.0,
    ) -> None:
        self._repo = repo
        self._redis = redis
        self._send = send
        self._lease_ttl_s = lease_ttl_s
        self._max_countdown_s = max_countdown_s
        self._interval_s = interval_s
        self._queued_stale_s = queued_stale_s
        self._retention_s = retention_s
        self._purge_interval_s = purge_interval_s
        self._loop = Periodic(
            "aijobs-reconciler",
            interval_s,
            self._round,
            expected=(RedisError, SQLAlchemyError, OSError),
        )

    def park(self, job_id: str, kind: str, due: float) -> None:
        """Hold a job out of the queue until ``due`` (epoch seconds)."""
        self._redis.zadd(keys.PARKED, {f"{kind}:{job_id}": due})

    def tick(self) -> ReconcileReport:
        """One pass, if this process wins the tick's lock."""
        report = ReconcileReport()
        lock_ms = max(100, int(self._interval_s * 900))
        if not self._redis.set(keys.RECONCILER_LOCK, "1", nx=True, px=lock_ms):
            return report
        # Accepted while the broker was down (or its message was lost with a Redis
        # that kept nothing): hand it to the broker now.
        unsent = self._repo.list_unsent(
            older_than_s=2.0, stale_after_s=self._queued_stale_s, limit=500
        )
        for job in unsent:
            if self._claim_rescue(job.id):
                self._send(job.id, job.kind)
                self._repo.mark_enqueued(job.id, enqueued=True)
                report.never_sent.append(job.id)

        now = time.time()
        for member in self._redis.zrangebyscore(keys.PARKED, "-inf", now, start=0, num=500):
            text = member.decode() if isinstance(member, bytes) else member
            if self._redis.zrem(keys.PARKED, member):  # only one process wins each
                kind, _, job_id = text.partition(":")
                self._send(job_id, kind)
                report.parked_due.append(job_id)

        running = self._repo.list_stale(JobStatus.RUNNING, older_than_s=0, limit=500)
        if running:
            pipe = self._redis.pipeline(transaction=False)
            for job in running:
                pipe.exists(keys.lease_key(job.id))
            for job, alive in zip(running, pipe.execute(), strict=True):
                if not alive and self._claim_rescue(job.id):
                    self._send(job.id, job.kind)
                    report.lease_lapsed.append(job.id)

        overdue_s = self._max_countdown_s + 60
        for job in self._repo.list_stale(JobStatus.RETRYING, older_than_s=overdue_s, limit=500):
            if self._redis.zscore(keys.PARKED, f"{job.kind}:{job.id}") is None and (
                self._claim_rescue(job.id)
            ):
                self._send(job.id, job.kind)
                report.retry_overdue.append(job.id)
        for reason, ids in (
            ("never sent", report.never_sent),
            ("lease lapsed", report.lease_lapsed),
            ("parked wait over", report.parked_due),
            ("retry overdue", report.retry_overdue),
        ):
            for job_id in ids:
                log.info("job %s re-enqueued: %s", job_id, reason)
                metrics.RESCUED.labels(reason).inc()
        return report

    def purge_due(self) -> int:
        """Scrub jobs past retention, at most once per purge interval across the fleet."""
        if self._retention_s is None:
            return 0
        lock_ms = int(self._purge_interval_s * 1000)
        if not self._redis.set(keys.PURGE_LOCK, "1", nx=True, px=lock_ms):
            return 0
        return purge(self._repo, self._redis, older_than_s=self._retention_s).jobs

    def _claim_rescue(self, job_id: str) -> bool:
        # One rescue per lease period: the re-enqueued delivery needs time to start.
        ttl_ms = int(self._lease_ttl_s * 2000)
        return bool(self._redis.set(keys.rescue_key(job_id), "1", nx=True, px=ttl_ms))

    def start(self) -> None:
        """Run ``tick`` (and the retention purge) every ``interval_s`` in a background thread."""
        self._loop.start()

    def stop(self) -> None:
        """Stop ticking."""
        self._loop.stop()

    def _round(self) -> None:
        self.tick()
        self.purge_due()
