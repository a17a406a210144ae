"""Finished jobs' event logs in SQL: the archiver's writes and the readers' one read.

A job's Redis stream is what live readers and recent catch-ups use; once the job is
finished its whole stream is copied here (one compressed row) and the stream left to
expire, so Redis memory holds only what is running or just finished, while a reader can
resume exactly for as long as retention keeps the job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, select, update

from aijobs.schemas import TERMINAL_STATUSES
from aijobs.store.db import Database
from aijobs.store.models import EventLog, Job, utcnow

_jobs = Job.__table__
_logs = EventLog.__table__
_TERMINAL = [s.value for s in TERMINAL_STATUSES]


@dataclass(frozen=True, slots=True)
class Finished:
    """What the archiver needs of a finished job that is not archived yet."""

    id: str
    status: str
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    last_event_id: int | None
    attempts: int
    finished_at: datetime


@dataclass(frozen=True, slots=True)
class Archived:
    """One job's log to store (``blob`` None: nothing to keep, mark it done)."""

    job_id: str
    last_event_id: int
    events: int
    blob: bytes | None


def unarchived(
    db: Database, *, finished_before: datetime, limit: int, after: datetime | None = None
) -> list[Finished]:
    """Finished jobs not archived yet that ended before ``finished_before`` (and after
    ``after``), oldest first."""
    query = (
        select(
            _jobs.c.id, _jobs.c.status, _jobs.c.result, _jobs.c.error,
            _jobs.c.last_event_id, _jobs.c.attempts, _jobs.c.finished_at,
        )
        .where(
            _jobs.c.events_archived_at.is_(None),
            _jobs.c.finished_at.is_not(None),
            _jobs.c.finished_at < finished_before,
            _jobs.c.status.in_(_TERMINAL),
        )
        .order_by(_jobs.c.finished_at)
        .limit(limit)
    )  # fmt: skip
    if after is not None:
        query = query.where(_jobs.c.finished_at > after)
    with db.engine.connect() as conn:
        return [Finished(*row) for row in conn.execute(query)]


def save(db: Database, logs: Sequence[Archived]) -> None:
    """Store these logs and mark their jobs archived, in one transaction."""
    if not logs:
        return
    now = utcnow()
    rows = [
        {"job_id": log.job_id, "last_event_id": log.last_event_id, "events": log.events,
         "blob": log.blob, "created_at": now}
        for log in logs
        if log.blob is not None
    ]  # fmt: skip
    ids = [log.job_id for log in logs]
    with db.engine.begin() as conn:
        # A job archived again (its archiver's commit answer was lost) replaces its row.
        conn.execute(delete(_logs).where(_logs.c.job_id.in_(ids)))
        if rows:
            conn.execute(_logs.insert(), rows)
        conn.execute(update(_jobs).where(_jobs.c.id.in_(ids)).values(events_archived_at=now))


def load(db: Database, job_id: str) -> bytes | None:
    """The stored log of ``job_id`` (None: it has none)."""
    with db.engine.connect() as conn:
        return conn.execute(select(_logs.c.blob).where(_logs.c.job_id == job_id)).scalar()


def forget(conn: Connection, job_id: str) -> None:
    """Delete the job's log (retention and ``DELETE`` scrub it with the job's data).

    The job stays marked archived: there is nothing more to archive, and its readers
    fall back to the row's outcome.
    """
    conn.execute(delete(_logs).where(_logs.c.job_id == job_id))
    conn.execute(update(_jobs).where(_jobs.c.id == job_id).values(events_archived_at=utcnow()))


def ago(seconds: float) -> datetime:
    """``seconds`` ago."""
    return utcnow() - timedelta(seconds=seconds)
