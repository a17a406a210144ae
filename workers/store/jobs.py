"""Queries and guarded transitions of the jobs table.

Every transition is a compare-and-set on (status, attempts), so a late or
duplicate delivery cannot overwrite a newer state: the loser's UPDATE matches
no row and it stops.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Update, and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from aijobs.schemas import TERMINAL_STATUSES, JobStatus
from aijobs.store.db import Database
from aijobs.store.models import EmbeddingBatch, Job, utcnow

_CLAIMABLE = [s.value for s in (JobStatus.QUEUED, JobStatus.RETRYING, JobStatus.RUNNING)]
#: Transitions go through the table, not the ORM: the hot path of every job pays for
#: them, and the ORM's bulk-update machinery costs more than the statement.
_jobs = Job.__table__


class CursorError(ValueError):
    """Raised when a pagination cursor cannot be decoded."""


class IdempotencyConflict(Exception):
    """Raised when the tenant already has a job under this Idempotency-Key."""

    def __init__(self, job: Job) -> None:
        super().__init__(job.id)
        self.job = job


def new_job_id() -> str:
    """A 32-character id that sorts by creation time (48-bit ms clock + 80 random bits)."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


def encode_cursor(job: Job) -> str:
    """An opaque cursor that points just past ``job`` in newest-first order."""
    raw = f"{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a cursor points past."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, job_id = raw.partition("|")
        return datetime.fromisoformat(stamp), job_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise CursorError("cursor is not one this API returned") from exc


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """The outcome of trying to start an attempt: the attempt number, or why not."""

    attempt: int | None
    reason: str = ""


class JobRepository:
    """The only place that reads or writes job rows."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self,
        *,
        tenant: str,
        kind: str,
        model: str,
        payload: dict[str, Any],
        meta: dict[str, Any],
        enqueued: bool = True,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> Job:
        """Insert a queued job (``enqueued``: its message is about to go to the broker).

        Raises ``IdempotencyConflict`` if the tenant already has a job under
        ``idempotency_key`` (concurrent requests included: a unique index decides).
        """
        now = utcnow()
        job = Job(
            id=new_job_id(),
            tenant=tenant,
            kind=kind,
            model=model,
            status=JobStatus.QUEUED,
            attempts=0,
            input=payload,
            meta=meta,
            created_at=now,
            updated_at=now,
            enqueued_at=now if enqueued else None,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
        )
        try:
            with self.db.session() as session:
                session.add(job)
        except IntegrityError:
            if idempotency_key is None:
                raise
            existing = self.by_idempotency_key(tenant, idempotency_key)
            if existing is None:  # pragma: no cover - the winner rolled back
                raise
            raise IdempotencyConflict(existing) from None
        return job

    def by_idempotency_key(self, tenant: str, key: str) -> Job | None:
        """The tenant's job under an Idempotency-Key, if any."""
        query = select(Job).where(Job.tenant == tenant, Job.idempotency_key == key)
        with self.db.session() as session:
            return session.scalars(query).first()

    def expire_idempotency_key(self, tenant: str, key: str, *, older_than_s: float) -> None:
        """Free an Idempotency-Key whose job is older than the keys' lifetime."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        stmt = (
            update(_jobs)
            .where(
                _jobs.c.tenant == tenant,
                _jobs.c.idempotency_key == key,
                _jobs.c.created_at < cutoff,
            )
            .values(idempotency_key=None)
        )
        with self.db.engine.begin() as conn:
            conn.execute(stmt)

    def count_active(self, tenant: str) -> int:
        """How many of the tenant's jobs have not finished."""
        waiting = [JobStatus.QUEUED.value, JobStatus.RUNNING.value, JobStatus.RETRYING.value]
        query = (
            select(func.count())
            .select_from(Job)
            .where(Job.tenant == tenant, Job.status.in_(waiting))
        )
        with self.db.session() as session:
            return int(session.scalar(query) or 0)

    def list_purgeable(self, *, older_than_s: float, limit: int) -> list[Job]:
        """Finished jobs older than the retention window whose data is still there."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        query = (
            select(Job)
            .where(Job.finished_at < cutoff, Job.purged_at.is_(None))
            .order_by(Job.finished_at)
            .limit(limit)
        )
        with self.db.session() as session:
            return list(session.scalars(query))

    def scrub(self, job_id: str, *, error: dict[str, Any] | None) -> None:
        """Delete a job's input, output and metadata, keeping its status and timestamps."""
        stmt = (
            update(_jobs)
            .where(_jobs.c.id == job_id)
            .values(
                {"input": {}, "result": None, "error": error, "metadata": {}, "purged_at": utcnow()}
            )
        )
        with self.db.engine.begin() as conn:
            conn.execute(stmt)
            conn.execute(delete(EmbeddingBatch).where(EmbeddingBatch.job_id == job_id))

    def mark_enqueued(self, job_id: str, *, enqueued: bool) -> None:
        """Record whether the job's message reached the broker."""
        stmt = update(_jobs).where(_jobs.c.id == job_id)
        with self.db.engine.begin() as conn:
            conn.execute(stmt.values(enqueued_at=utcnow() if enqueued else None))

    def list_unsent(self, *, older_than_s: float, stale_after_s: float, limit: int) -> list[Job]:
        """Queued jobs whose message never reached the broker (older than ``older_than_s``),
        or went there more than ``stale_after_s`` ago and was never picked up."""
        now = utcnow()
        query = (
            select(Job)
            .where(
                Job.status == JobStatus.QUEUED,
                or_(
                    and_(
                        Job.enqueued_at.is_(None),
                        Job.created_at <= now - timedelta(seconds=older_than_s),
                    ),
                    Job.enqueued_at <= now - timedelta(seconds=stale_after_s),
                ),
            )
            .order_by(Job.created_at)
            .limit(limit)
        )
        with self.db.session() as session:
            return list(session.scalars(query))

    def get(self, job_id: str, *, tenant: str | None = None) -> Job | None:
        """A job by id; with ``tenant``, only if it belongs to that tenant."""
        with self.db.session() as session:
            job = session.get(Job, job_id)
        if job is None or (tenant is not None and job.tenant != tenant):
            return None
        return job

    def list(
        self,
        *,
        tenant: str,
        status: str | None = None,
        kind: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """A page of the tenant's jobs, newest first, and the cursor of the next page."""
        query = select(Job).where(Job.tenant == tenant)
        if status:
            query = query.where(Job.status == status)
        if kind:
            query = query.where(Job.kind == kind)
        if cursor:
            created, job_id = decode_cursor(cursor)
            query = query.where(
                or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id))
            )
        query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
        with self.db.session() as session:
            rows = list(session.scalars(query))
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (encode_cursor(rows[-1]) if more and rows else None)

    def claim(self, job_id: str, *, seen_attempts: int) -> ClaimResult:
        """Start attempt ``seen_attempts + 1`` unless someone else started one first."""
        attempt = seen_attempts + 1
        now = utcnow()
        stmt = (
            update(_jobs)
            .where(
                _jobs.c.id == job_id,
                _jobs.c.attempts == seen_attempts,
                _jobs.c.status.in_(_CLAIMABLE),
            )
            .values(
                attempts=attempt,
                status=JobStatus.RUNNING.value,
                updated_at=now,
                started_at=func.coalesce(_jobs.c.started_at, now),
            )
        )
        if not self._execute(stmt):
            return ClaimResult(None, "claimed by another attempt")
        return ClaimResult(attempt)

    def _execute(self, stmt: Update) -> bool:
        """Run one guarded UPDATE; True if it matched exactly one row."""
        with self.db.engine.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def transition(
        self,
        job_id: str,
        *,
        attempt: int,
        status: JobStatus,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        usage: dict[str, Any] | None = None,
        last_event_id: int | None = None,
    ) -> bool:
        """Move the running attempt ``attempt`` to ``status``; False if it is no longer current.

        A terminal move also records the id its closing event will have, so the outcome
        can be served with the same ids after the event stream is gone.
        """
        now = utcnow()
        values: dict[str, Any] = {"status": status.value, "updated_at": now}
        if status in TERMINAL_STATUSES:
            values |= {"result": result, "error": error, "usage": usage, "finished_at": now}
            if last_event_id is not None:
                values["last_event_id"] = last_event_id
        stmt = (
            update(_jobs)
            .where(
                _jobs.c.id == job_id,
                _jobs.c.attempts == attempt,
                _jobs.c.status == JobStatus.RUNNING.value,
            )
            .values(**values)
        )
        return self._execute(stmt)

    def fail_unclaimed(self, job_id: str, *, seen_attempts: int, error: dict[str, Any]) -> bool:
        """Fail a job before it starts another attempt (e.g. its attempts are used up)."""
        now = utcnow()
        stmt = (
            update(_jobs)
            .where(
                _jobs.c.id == job_id,
                _jobs.c.attempts == seen_attempts,
                _jobs.c.status.in_(_CLAIMABLE),
            )
            .values(status=JobStatus.FAILED.value, error=error, finished_at=now, updated_at=now)
        )
        return self._execute(stmt)

    def list_stale(self, status: JobStatus, *, older_than_s: float, limit: int) -> list[Job]:
        """Jobs in ``status`` not updated for ``older_than_s`` seconds, oldest first."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        query = (
            select(Job)
            .where(Job.status == status, Job.updated_at <= cutoff)
            .order_by(Job.updated_at)
            .limit(limit)
        )
        with self.db.session() as session:
            return list(session.scalars(query))

    def request_cancel(self, job_id: str, *, tenant: str) -> tuple[Job | None, bool]:
        """Cancel a job: at once if it is waiting, by flag if it runs.

        Returns the job after the call and whether this call made it ``cancelled``.
        """
        now = utcnow()
        waiting = [JobStatus.QUEUED.value, JobStatus.RETRYING.value]
        with self.db.session() as session:
            cancelled = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.tenant == tenant, Job.status.in_(waiting))
                .values(
                    status=JobStatus.CANCELLED,
                    cancel_requested=True,
                    finished_at=now,
                    updated_at=now,
                )
            ).rowcount  # type: ignore[attr-defined]
            if not cancelled:
                session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.tenant == tenant, Job.status == JobStatus.RUNNING)
                    .values(cancel_requested=True, updated_at=now)
                )
        return self.get(job_id, tenant=tenant), bool(cancelled)

    def record_last_event(self, job_id: str, event_id: int) -> None:
        """Remember the id of the job's final event, so it can be served after retention."""
        with self.db.session() as session:
            session.execute(update(Job).where(Job.id == job_id).values(last_event_id=event_id))

    # -- embedding vectors ------------------------------------------------------

    def save_batch(
        self, job_id: str, batch: int, *, start: int, count: int, dimensions: int, vectors: bytes
    ) -> None:
        """Store one batch's vectors (a second store of the same batch is a no-op)."""
        row = EmbeddingBatch(
            job_id=job_id,
            batch=batch,
            start=start,
            count=count,
            dimensions=dimensions,
            vectors=vectors,
        )
        try:
            with self.db.session() as session:
                session.add(row)
        except IntegrityError:
            pass  # an earlier attempt, or a duplicate delivery, stored it first

    def stored_batches(self, job_id: str) -> dict[int, int]:
        """The job's stored batches: batch number -> dimensions."""
        query = select(EmbeddingBatch.batch, EmbeddingBatch.dimensions).where(
            EmbeddingBatch.job_id == job_id
        )
        with self.db.session() as session:
            return {batch: dims for batch, dims in session.execute(query)}

    def iter_vector_batches(self, job_id: str) -> Iterator[tuple[int, bytes]]:
        """The job's batches, in input order, one query each: (dimensions, float32 blob)."""
        with self.db.session() as session:
            numbers = list(
                session.scalars(
                    select(EmbeddingBatch.batch)
                    .where(EmbeddingBatch.job_id == job_id)
                    .order_by(EmbeddingBatch.batch)
                )
            )
        for number in numbers:
            with self.db.session() as session:
                row = session.get(EmbeddingBatch, (job_id, number))
                if row is not None:
                    yield row.dimensions, bytes(row.vectors)
