"""One mechanism that brings back every job whose message or worker was lost.

Runs in every worker process; a short Redis lock lets one of them act per tick. It
trusts no mark written before the fact: it looks where a job should be.

- **Lost in flight.** A job handed to the broker, or running, is *active* until a
  deadline (the dispatch timeout, then its lease's expiry). Past it with no lease, its
  message was lost (an error before the claim, a Redis that came back empty, a crash
  between take and send) or its worker died (SIGKILL, OOM, a lost machine): the job goes
  back in its tenant's list. Found by expiry, so it costs the same at any fleet size.
- **Never queued.** An unfinished job that is nowhere in Redis — not waiting, not
  delayed, not active, no lease — for ``orphan_grace_s`` (the API died between its INSERT
  and its push; Redis lost the push; a lagging replica was promoted) is queued again.
  The store is walked a page per tick, so every row is looked at within a few ticks.
- **Redis lost everything.** An epoch key set once per dataset tells: when it is gone,
  every process re-registers its slots and leases at once, and the process that sets the
  new epoch walks the whole store now instead of a page per tick.

Fencing makes a job queued twice harmless: a second delivery finds the first one's
lease and leaves.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from aijobs import metrics
from aijobs import redis_keys as keys
from aijobs.events.archive import ARCHIVE_BUDGET_S, archive_finished
from aijobs.fairqueue import FairQueue, QueuedJob
from aijobs.schemas import JobKind, JobStatus
from aijobs.store import JobRepository, WaitingJob
from aijobs.store.retention import purge
from aijobs.worker.periodic import Periodic

log = logging.getLogger(__name__)

#: Called when this process finds Redis was emptied: re-register what it holds there.
OnEpoch = Callable[[], None]


@dataclass
class ReconcileReport:
    """What one pass put back in the queue, by reason."""

    lost_in_flight: list[str] = field(default_factory=list)
    never_queued: list[str] = field(default_factory=list)
    redis_emptied: bool = False


class Reconciler:
    """Periodic recovery of lost messages, dead workers and Redis data loss."""

    def __init__(
        self,
        *,
        repo: JobRepository,
        redis: Redis,
        queue: FairQueue,
        interval_s: float,
        orphan_grace_s: float,
        lease_ttl_s: float,
        retention_s: float | None = None,
        purge_interval_s: float = 3600.0,
        page: int = 1000,
        on_epoch: OnEpoch | None = None,
        archived_stream_ttl_s: int | None = None,
    ) -> None:
        self._repo = repo
        self._redis = redis
        self._queue = queue
        self._interval_s = interval_s
        self._grace_s = orphan_grace_s
        self._lease_ttl_s = lease_ttl_s
        self._retention_s = retention_s
        self._purge_interval_s = purge_interval_s
        self._page = page
        self._on_epoch = on_epoch
        self._archived_ttl_s = archived_stream_ttl_s
        self._epoch: str | None = None
        self._cursor = ""
        self._running_checked_after = 0.0
        self._loop = Periodic(
            "aijobs-reconciler",
            interval_s,
            self._round,
            expected=(RedisError, SQLAlchemyError, OSError),
        )
        # Its own thread: a burst of finished jobs to archive never delays a recovery tick.
        self._archiver = Periodic(
            "aijobs-archiver",
            interval_s,
            self.archive_due,
            expected=(RedisError, SQLAlchemyError, OSError),
        )

    # -- one pass ---------------------------------------------------------------

    def tick(self) -> ReconcileReport:
        """One pass: the epoch (every process), then recovery (the lock's holder)."""
        report = ReconcileReport()
        report.redis_emptied = self._check_epoch()
        lock_ms = max(100, int(self._interval_s * 900))
        if not self._redis.set(keys.RECONCILER_LOCK, "1", nx=True, px=lock_ms):
            return report
        report.lost_in_flight = self._requeue_expired()
        if report.redis_emptied:
            # Everything Redis held is gone: every waiting job is queued again now. Running
            # ones get a lease period to take their leases back before a missing lease
            # counts as a dead worker.
            self._running_checked_after = time.monotonic() + self._lease_ttl_s
            report.never_queued = self.sweep_all()
        else:
            report.never_queued = self._sweep_page()
        for reason, ids in (
            ("lost in flight", report.lost_in_flight),
            ("not queued", report.never_queued),
        ):
            for job_id in ids:
                log.info("job %s queued again: %s", job_id, reason)
                metrics.RESCUED.labels(reason).inc()
        return report

    def _check_epoch(self) -> bool:
        """True if this process just found Redis emptied and set the new epoch."""
        current = self._redis.get(keys.EPOCH)
        if current is not None:
            text = current.decode() if isinstance(current, bytes) else str(current)
            changed = self._epoch is not None and text != self._epoch
            self._epoch = text
            if changed and self._on_epoch is not None:
                self._on_epoch()  # another process saw it first; re-register ours
            return False
        epoch = secrets.token_hex(8)
        won = bool(self._redis.set(keys.EPOCH, epoch, nx=True))
        first_start = self._epoch is None
        self._epoch = epoch if won else None
        if self._on_epoch is not None:
            self._on_epoch()
        if won and not first_start:
            log.warning("Redis came back empty: every unfinished job is queued again")
        # A brand-new Redis on the first start looks the same: sweep it then too.
        return won

    def _requeue_expired(self) -> list[str]:
        lost: list[str] = []
        for kind in JobKind:
            expired = self._queue.expired_active(kind.value)
            if not expired:
                continue
            rows = self._repo.waiting_info(expired)
            again: list[tuple[QueuedJob, float | None]] = []
            slots: list[tuple[str, str]] = []
            for job_id in expired:
                row = rows.get(job_id)
                if row is None:
                    continue
                slots.append((job_id, row.tenant))
                if not JobStatus(row.status).terminal:
                    again.append((_queued(row), _run_at(row)))
                    lost.append(job_id)
            self._queue.release_tenant_slots(slots)
            if again:
                self._queue.push_many(again)
        return lost

    def _sweep_page(self) -> list[str]:
        """Look at one page of unfinished jobs; queue again those Redis does not know."""
        rows = self._repo.list_unfinished(
            after_id=self._cursor, limit=self._page, older_than_s=self._grace_s
        )
        self._cursor = rows[-1].id if len(rows) == self._page else ""
        return self._requeue_missing(rows)

    def sweep_all(self) -> list[str]:
        """Look at every unfinished job (after Redis lost its data)."""
        found: list[str] = []
        after = ""
        while True:
            rows = self._repo.list_unfinished(after_id=after, limit=self._page, older_than_s=0)
            found += self._requeue_missing(rows)
            if len(rows) < self._page:
                return found
            after = rows[-1].id

    def _requeue_missing(self, rows: list[WaitingJob]) -> list[str]:
        if time.monotonic() < self._running_checked_after:
            rows = [row for row in rows if row.status != JobStatus.RUNNING]
        if not rows:
            return []
        jobs = [_queued(row) for row in rows]
        present = self._queue.where(jobs)
        missing = [(job, row) for job, row, seen in zip(jobs, rows, present, strict=True)
                   if not seen]  # fmt: skip
        if missing:
            self._queue.push_many([(job, _run_at(row)) for job, row in missing])
        return [job.id for job, _ in missing]

    # -- retention ----------------------------------------------------------------

    def purge_due(self) -> int:
        """Scrub jobs past retention, at most once per purge interval across the fleet."""
        if self._retention_s is None:
            return 0
        lock_ms = int(self._purge_interval_s * 1000)
        if not self._redis.set(keys.PURGE_LOCK, "1", nx=True, px=lock_ms):
            return 0
        return purge(self._repo, self._redis, older_than_s=self._retention_s).jobs

    # -- event logs ---------------------------------------------------------------

    def archive_due(self) -> int:
        """Move finished jobs' event logs to SQL (one process of the fleet per round)."""
        if self._archived_ttl_s is None:
            return 0
        # Held past the longest round, so two processes never archive the same jobs at once.
        lock_ms = int(max(self._interval_s * 0.9, ARCHIVE_BUDGET_S + 1.0) * 1000)
        if not self._redis.set(keys.ARCHIVE_LOCK, "1", nx=True, px=lock_ms):
            return 0
        return archive_finished(self._repo.db, self._redis, stream_ttl_s=self._archived_ttl_s,
                                budget_s=ARCHIVE_BUDGET_S)  # fmt: skip

    # -- the loop -----------------------------------------------------------------

    def start(self) -> None:
        """Run ``tick`` (and the retention purge) every ``interval_s`` in a background
        thread, and the archive in another."""
        self._loop.start()
        if self._archived_ttl_s is not None:
            self._archiver.start()

    def stop(self) -> None:
        """Stop ticking."""
        self._loop.stop()
        self._archiver.stop()

    def _round(self) -> None:
        self.tick()
        self.purge_due()


def _queued(row: WaitingJob) -> QueuedJob:
    return QueuedJob(row.id, row.kind, row.tenant, row.priority)


def _run_at(row: WaitingJob) -> float | None:
    return row.run_at.timestamp() if row.run_at is not None else None
