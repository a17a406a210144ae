"""Queries and guarded transitions of the jobs table.

Every transition is a compare-and-set on (status, attempts), so a late or
duplicate delivery cannot overwrite a newer state: the loser's UPDATE matches
no row and it stops.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Update, and_, case, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer

from aijobs.errors import InvalidInput
from aijobs.schemas import TERMINAL_STATUSES, JobStatus
from aijobs.store import hot, listing
from aijobs.store.db import Database
from aijobs.store.event_logs import forget as forget_event_log
from aijobs.store.grouped import GroupedWrites
from aijobs.store.hot import Claim as Claim  # re-exported (aijobs.store, the worker)
from aijobs.store.listing import NO_FILTERS, ListFilters
from aijobs.store.models import EmbeddingBatch, Job, utcnow
from aijobs.store.submits import NewJob, insert_jobs
from aijobs.store.usage import Billed, insert_attempt, totals_with
from aijobs.webhooks.outbox import add_terminal as add_webhook_event
from aijobs.webhooks.outbox import forget as forget_webhook

_CLAIMABLE = [s.value for s in (JobStatus.QUEUED, JobStatus.RETRYING, JobStatus.RUNNING)]
#: Transitions go through the table, not the ORM: the hot path of every job pays for
#: them, and the ORM's bulk-update machinery costs more than the statement.
_jobs = Job.__table__
T = TypeVar("T")


class CursorError(InvalidInput):
    """Raised when a pagination cursor cannot be decoded."""


class IdempotencyConflict(Exception):
    """Raised when the tenant already has a job under this Idempotency-Key."""

    def __init__(self, job: Job) -> None:
        super().__init__(job.id)
        self.job = job


def new_job_id() -> str:
    """A 32-character id that sorts by creation time (48-bit ms clock + 80 random bits)."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


_JOB_ID = re.compile(r"[0-9a-f]{32}")


def is_job_id(value: str) -> bool:
    """Whether ``value`` has the shape of a job id (anything else names no job, and must
    never reach SQL: PostgreSQL refuses a NUL in a string outright)."""
    return bool(_JOB_ID.fullmatch(value))


def encode_cursor(job: Job) -> str:
    """An opaque cursor that points just past ``job`` in newest-first order."""
    raw = f"{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a cursor points past."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, job_id = raw.partition("|")
        created = datetime.fromisoformat(stamp)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CursorError("cursor: not one this API returned") from exc
    if created.tzinfo is None or not is_job_id(job_id):
        raise CursorError("cursor: not one this API returned")
    return created, job_id


_RUN_AT_CURSOR = "r|"


def encode_run_at_cursor(job: Job) -> str:
    """A cursor just past ``job`` in ``run_at`` order (soonest first)."""
    stamp = job.run_at.isoformat() if job.run_at is not None else ""
    raw = f"{_RUN_AT_CURSOR}{stamp}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_run_at_cursor(cursor: str) -> tuple[datetime, str]:
    """The (run_at, id) a ``run_at`` cursor points past."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise CursorError("cursor: not one this API returned") from exc
    if not raw.startswith(_RUN_AT_CURSOR):
        raise CursorError("cursor: not one this API returned for order=run_at")
    stamp, _, job_id = raw.removeprefix(_RUN_AT_CURSOR).partition("|")
    try:
        run_at = datetime.fromisoformat(stamp)
    except ValueError as exc:
        raise CursorError("cursor: not one this API returned") from exc
    if run_at.tzinfo is None or not is_job_id(job_id):
        raise CursorError("cursor: not one this API returned")
    return run_at, job_id


@dataclass(frozen=True, slots=True)
class WaitingJob:
    """What the queue needs to know of an unfinished job."""

    id: str
    tenant: str
    kind: str
    status: str
    priority: int
    run_at: datetime | None
    updated_at: datetime


class JobRepository:
    """The only place that reads or writes job rows.

    With ``writes`` (a worker's), job starts and ends of all its threads share commits
    (``aijobs.store.grouped``); without, each write is its own transaction.
    """

    def __init__(self, db: Database, *, writes: GroupedWrites | None = None) -> None:
        self.db = db
        self._writes = writes

    def close(self) -> None:
        """Finish the grouped writes waiting (the engine stays: ``db.dispose`` closes it)."""
        if self._writes is not None:
            self._writes.close()

    def _write(self, write: Callable[[Connection], T]) -> T:
        if self._writes is not None:
            return self._writes.run(write)
        with self.db.engine.begin() as conn:
            return write(conn)

    def create(
        self,
        *,
        tenant: str,
        kind: str,
        model: str,
        payload: dict[str, Any],
        meta: dict[str, Any],
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        priority: int = 5,
        run_at: datetime | None = None,
        webhook_url: str | None = None,
        idempotency_ttl_s: float = 86_400,
    ) -> Job:
        """Insert a queued job: one statement.

        Raises ``IdempotencyConflict`` if the tenant already has a job under
        ``idempotency_key`` (concurrent requests included: a unique index decides).
        """
        new = NewJob(
            id=new_job_id(), tenant=tenant, kind=kind, model=model, payload=payload,
            meta=meta, idempotency_key=idempotency_key, request_hash=request_hash,
            priority=priority, run_at=run_at, webhook_url=webhook_url,
        )  # fmt: skip
        (outcome,) = insert_jobs(self.db, [new], idempotency_ttl_s=idempotency_ttl_s)
        if not outcome.created:
            raise IdempotencyConflict(outcome.job)
        return outcome.job

    def by_idempotency_keys(self, tenant: str, keys: Sequence[str]) -> dict[str, Job]:
        """The tenant's jobs under these Idempotency-Keys, by key."""
        if not keys:
            return {}
        query = select(Job).where(Job.tenant == tenant, Job.idempotency_key.in_(list(keys)))
        with self.db.session() as session:
            return {job.idempotency_key: job for job in session.scalars(query)
                    if job.idempotency_key}  # fmt: skip

    def replay(
        self,
        job: Job,
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> Job:
        """Queue ``job`` again as a new job: the same input, model, priority and webhook,
        its metadata plus ``replay_of`` (the old id). What ``aijobs replay`` and
        ``POST /v1/jobs/{id}/retry`` do. Raises ``IdempotencyConflict`` as ``create``."""
        meta = {**(job.meta or {}), "replay_of": job.id}
        return self.create(
            tenant=job.tenant, kind=job.kind, model=job.model, payload=job.input, meta=meta,
            idempotency_key=idempotency_key, request_hash=request_hash, priority=job.priority,
            webhook_url=job.webhook_url,
        )  # fmt: skip

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

    def expire_idempotency_keys(
        self, tenant: str, keys: Sequence[str], *, older_than_s: float
    ) -> None:
        """``expire_idempotency_key`` for many keys, in one statement."""
        if not keys:
            return
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        stmt = (
            update(_jobs)
            .where(
                _jobs.c.tenant == tenant,
                _jobs.c.idempotency_key.in_(list(keys)),
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

    def scrub(self, job_id: str, *, error: dict[str, Any] | None, deleted: bool = False) -> None:
        """Delete a job's input, output, metadata and idempotency key (and the hash of its
        request), keeping its status and timestamps; ``deleted``: its tenant deleted it
        (it sees the job no more)."""
        now = utcnow()
        values = {"input": {}, "result": None, "error": error, "metadata": {},
                  "purged_at": now, "idempotency_key": None, "request_hash": None}  # fmt: skip
        if deleted:
            values["deleted_at"] = now
        stmt = update(_jobs).where(_jobs.c.id == job_id).values(values)
        with self.db.engine.begin() as conn:
            conn.execute(stmt)
            conn.execute(delete(EmbeddingBatch).where(EmbeddingBatch.job_id == job_id))
            forget_webhook(conn, job_id)  # webhooks: its URL (maybe a token) and delivery log
            forget_event_log(conn, job_id)

    def list_unfinished(
        self, *, after_id: str = "", limit: int = 1000, older_than_s: float = 0.0
    ) -> list[WaitingJob]:
        """Unfinished jobs (queued, retrying, running) by id after ``after_id``, not
        updated for ``older_than_s``: what the reconciler checks against Redis."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        query = (
            select(
                _jobs.c.id, _jobs.c.tenant, _jobs.c.kind, _jobs.c.status, _jobs.c.priority,
                _jobs.c.run_at, _jobs.c.updated_at,
            )
            .where(
                _jobs.c.status.in_(_CLAIMABLE),
                _jobs.c.id > after_id,
                _jobs.c.updated_at <= cutoff,
            )
            .order_by(_jobs.c.id)
            .limit(limit)
        )  # fmt: skip
        with self.db.engine.connect() as conn:
            return [WaitingJob(*row) for row in conn.execute(query)]

    def waiting_info(self, job_ids: Sequence[str]) -> dict[str, WaitingJob]:
        """The queue fields of these jobs (terminal ones included), by id."""
        if not job_ids:
            return {}
        query = select(
            _jobs.c.id, _jobs.c.tenant, _jobs.c.kind, _jobs.c.status, _jobs.c.priority,
            _jobs.c.run_at, _jobs.c.updated_at,
        ).where(_jobs.c.id.in_(list(job_ids)))  # fmt: skip
        with self.db.engine.connect() as conn:
            return {row[0]: WaitingJob(*row) for row in conn.execute(query)}

    def get(
        self,
        job_id: str,
        *,
        tenant: str | None = None,
        without: Sequence[str] = (),
        deleted: bool = False,
    ) -> Job | None:
        """A job by id; with ``tenant``, only if it belongs to that tenant and (unless
        ``deleted``) the tenant has not deleted it.

        ``without`` names columns not to load (``"input"``, ``"result"``, ...): a status
        read must not pull a megabyte of prompt it does not return. They read as None.
        """
        if not is_job_id(job_id):
            return None
        with self.db.engine.connect() as conn:
            job = hot.read_job(conn, job_id, without)
        if job is None or (tenant is not None and job.tenant != tenant):
            return None
        if tenant is not None and job.deleted_at is not None and not deleted:
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
        filters: ListFilters = NO_FILTERS,
    ) -> tuple[list[Job], str | None]:
        """A page of the tenant's jobs (newest first, or by ``run_at``: see
        ``aijobs.store.listing``) and the cursor of the next page."""
        query = select(Job).where(Job.tenant == tenant, Job.deleted_at.is_(None))
        if status:
            query = query.where(Job.status == status)
        if kind:
            query = query.where(Job.kind == kind)
        query = listing.apply(query, filters, self.db.engine.dialect.name)
        if filters.order == "run_at":
            if cursor:
                run_at, job_id = decode_run_at_cursor(cursor)
                query = query.where(
                    or_(Job.run_at > run_at, and_(Job.run_at == run_at, Job.id > job_id))
                )
            query = query.order_by(Job.run_at.asc(), Job.id.asc())
            encode = encode_run_at_cursor
        else:
            if cursor:
                created, job_id = decode_cursor(cursor)
                query = query.where(
                    or_(Job.created_at < created,
                        and_(Job.created_at == created, Job.id < job_id))
                )  # fmt: skip
            query = query.order_by(Job.created_at.desc(), Job.id.desc())
            encode = encode_cursor
        query = query.options(defer(Job.input, raiseload=True)).limit(limit + 1)
        with self.db.session() as session:
            rows = list(session.scalars(query))
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (encode(rows[-1]) if more and rows else None)

    def claim(self, job_id: str, *, seen_attempts: int, id_block: int) -> Claim | None:
        """Start attempt ``seen_attempts + 1`` unless someone else started one first.

        In the same statement: count a loss if the previous attempt was still marked
        running (its worker vanished), and reserve ``id_block`` event ids above every id
        an earlier attempt may have used.
        """
        return self._write(
            lambda conn: hot.claim(conn, job_id, seen_attempts=seen_attempts, id_block=id_block)
        )

    def reserve_events(self, wanted: Sequence[tuple[str, int, int]]) -> set[tuple[str, int]]:
        """Raise the event-id reservation of running attempts: (job, attempt, up to).

        Returns the (job, attempt) pairs whose row took it; the others are no longer
        the job's current attempt.
        """
        granted: set[tuple[str, int]] = set()
        with self.db.engine.begin() as conn:
            for job_id, attempt, upto in wanted:
                stmt = (
                    update(_jobs)
                    .where(
                        _jobs.c.id == job_id,
                        _jobs.c.attempts == attempt,
                        _jobs.c.status == JobStatus.RUNNING.value,
                    )
                    .values(last_event_id=upto)
                )
                if conn.execute(stmt).rowcount == 1:
                    granted.add((job_id, attempt))
        return granted

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
        failed_attempt: bool = False,
        run_at: datetime | None = None,
        webhook: bool = True,
        billed: Billed | None = None,
    ) -> bool:
        """Move the running attempt ``attempt`` to ``status``; False if it is no longer current.

        ``billed``: what the attempt was billed; its ``job_usage`` row is written in the
        same transaction and the job's ``usage`` becomes the totals of every attempt (so
        ``usage`` replaces what the caller passed).

        ``webhook=False`` says the job has no webhook URL (its row was read): the outbox
        is not even asked.

        A terminal move also records the id its closing event will have, so the outcome
        can be served with the same ids after the event stream is gone. A move to
        ``retrying`` counts a failure when ``failed_attempt`` (a hand-off or a wait for
        budget does not) and records when the job may run again.
        """
        terminal = status in TERMINAL_STATUSES

        def write(conn: Connection) -> bool:
            totals = usage if billed is None else totals_with(conn, job_id, billed)
            if not terminal:
                moved = hot.wait(conn, job_id, attempt=attempt, status=status, run_at=run_at,
                                 failed_attempt=failed_attempt, usage=totals)  # fmt: skip
            else:
                moved = hot.end(conn, job_id, attempt=attempt, status=status, result=result,
                                error=error, usage=totals, last_event_id=last_event_id)  # fmt: skip
                if moved and webhook:  # webhooks: the event, in the same transaction
                    add_webhook_event(conn, job_id, status.value)
            if moved and billed is not None:
                insert_attempt(conn, job_id, billed)
            return moved

        return self._write(write)

    def defer_unclaimed(
        self, job_id: str, *, seen_attempts: int, run_at: datetime, events: int
    ) -> int | None:
        """Hold a job that may not start yet (its budget is spent) until ``run_at``,
        without starting an attempt; reserve ids for ``events`` status events.

        A job found ``running`` (its worker vanished) becomes ``retrying``: the row says
        it waits. Returns the first reserved id minus one (None: someone else moved it).
        """
        stmt = (
            update(_jobs)
            .where(
                _jobs.c.id == job_id,
                _jobs.c.attempts == seen_attempts,
                _jobs.c.status.in_(_CLAIMABLE),
            )
            .values(
                status=case(
                    (_jobs.c.status == JobStatus.RUNNING.value, JobStatus.RETRYING.value),
                    else_=_jobs.c.status,
                ),
                losses=_jobs.c.losses
                + case((_jobs.c.status == JobStatus.RUNNING.value, 1), else_=0),
                run_at=run_at,
                updated_at=utcnow(),
                last_event_id=func.coalesce(_jobs.c.last_event_id, 0) + events,
            )
            .returning(_jobs.c.last_event_id)
        )
        with self.db.engine.begin() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else int(row[0]) - events

    def fail_unclaimed(
        self, job_id: str, *, seen_attempts: int, error: dict[str, Any], events: int
    ) -> int | None:
        """Fail a job without starting another attempt (its attempts are used up, it
        keeps killing its workers). Reserves ids for ``events`` closing events and
        records the last as the job's last event id; returns the first minus one."""
        now = utcnow()
        stmt = (
            update(_jobs)
            .where(
                _jobs.c.id == job_id,
                _jobs.c.attempts == seen_attempts,
                _jobs.c.status.in_(_CLAIMABLE),
            )
            .values(
                status=JobStatus.FAILED.value,
                error=error,
                finished_at=now,
                updated_at=now,
                losses=_jobs.c.losses
                + case((_jobs.c.status == JobStatus.RUNNING.value, 1), else_=0),
                last_event_id=func.coalesce(_jobs.c.last_event_id, 0) + events,
            )
            .returning(_jobs.c.last_event_id)
        )
        with self.db.engine.begin() as conn:
            row = conn.execute(stmt).first()
            if row is not None:  # webhooks: the event, in the same transaction
                add_webhook_event(conn, job_id, JobStatus.FAILED.value)
        return None if row is None else int(row[0]) - events

    def request_cancel(self, job_id: str, *, tenant: str) -> tuple[Job | None, int | None]:
        """Cancel a job: at once if it is waiting, by flag if it runs.

        Returns the job after the call and, if this call made it ``cancelled``, the id
        reserved for its ``done`` event minus one.
        """
        if not is_job_id(job_id):
            return None, None
        now = utcnow()
        waiting = [JobStatus.QUEUED.value, JobStatus.RETRYING.value]
        with self.db.engine.begin() as conn:
            row = conn.execute(
                update(_jobs)
                .where(_jobs.c.id == job_id, _jobs.c.tenant == tenant, _jobs.c.status.in_(waiting))
                .values(
                    status=JobStatus.CANCELLED.value,
                    cancel_requested=True,
                    finished_at=now,
                    updated_at=now,
                    last_event_id=func.coalesce(_jobs.c.last_event_id, 0) + 1,
                )
                .returning(_jobs.c.last_event_id)
            ).first()
            if row is not None:  # webhooks: the event, in the same transaction
                add_webhook_event(conn, job_id, JobStatus.CANCELLED.value)
            if row is None:
                conn.execute(
                    update(_jobs)
                    .where(
                        _jobs.c.id == job_id,
                        _jobs.c.tenant == tenant,
                        _jobs.c.status == JobStatus.RUNNING.value,
                    )
                    .values(cancel_requested=True, updated_at=now)
                )
        floor = None if row is None else int(row[0]) - 1
        return self.get(job_id, tenant=tenant, without=("input",)), floor

    def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        """Which of these jobs have a cancel request recorded."""
        if not job_ids:
            return set()
        query = select(_jobs.c.id).where(
            _jobs.c.id.in_(list(job_ids)), _jobs.c.cancel_requested.is_(True)
        )
        with self.db.engine.connect() as conn:
            return {row[0] for row in conn.execute(query)}

    def record_last_event(self, job_id: str, event_id: int) -> None:
        """Remember the id of the job's final event, so it can be served after retention."""
        with self.db.engine.begin() as conn:
            conn.execute(update(_jobs).where(_jobs.c.id == job_id).values(last_event_id=event_id))

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
