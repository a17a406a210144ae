"""New jobs into the table: many rows in one transaction, one INSERT for all of them.

The API's intake groups the submits that arrive together and writes them here at once, so
a burst of N submits pays one commit (one fsync) instead of N. Idempotency-Keys are
decided by the table's unique index (``ON CONFLICT DO NOTHING``), not by a read before the
write: the common submit, with a key no one used, costs the INSERT alone; a key already
taken comes back as the job that holds it, and a key older than its lifetime is freed and
taken again in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Insert, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from aijobs.schemas import JobStatus
from aijobs.store.db import Database
from aijobs.store.models import Job, utcnow

_jobs = Job.__table__


@dataclass(slots=True)
class NewJob:
    """A job to insert (its id is chosen by the caller, see ``new_job_id``)."""

    id: str
    tenant: str
    kind: str
    model: str
    payload: dict[str, Any]
    meta: dict[str, Any]
    idempotency_key: str | None = None
    request_hash: str | None = None
    priority: int = 5
    run_at: datetime | None = None
    webhook_url: str | None = None
    created_at: datetime = field(default_factory=utcnow)

    def row(self) -> dict[str, Any]:
        """The INSERT's values."""
        return {
            "id": self.id,
            "tenant": self.tenant,
            "kind": self.kind,
            "model": self.model,
            "status": JobStatus.QUEUED.value,
            "attempts": 0,
            "failures": 0,
            "losses": 0,
            "input": self.payload,
            "metadata": self.meta,
            "cancel_requested": False,
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "idempotency_key": self.idempotency_key,
            "request_hash": self.request_hash,
            "priority": self.priority,
            "run_at": self.run_at,
            "webhook_url": self.webhook_url,
        }

    def as_job(self) -> Job:
        """The row as a (detached) ``Job``, as a read of it right after the insert gives."""
        return Job(
            id=self.id, tenant=self.tenant, kind=self.kind, model=self.model,
            status=JobStatus.QUEUED.value, attempts=0, failures=0, losses=0,
            input=self.payload, meta=self.meta, cancel_requested=False,
            created_at=self.created_at, updated_at=self.created_at,
            idempotency_key=self.idempotency_key, request_hash=self.request_hash,
            priority=self.priority, run_at=self.run_at, webhook_url=self.webhook_url,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Inserted:
    """What became of one ``NewJob``: inserted (``created``), or the tenant already had a
    job under its Idempotency-Key (``job`` is that one, ``created`` is False)."""

    job: Job
    created: bool


def _build_insert(dialect_name: str) -> Insert:
    # Both dialects spell it the same; SQLAlchemy's generic insert() has no ON CONFLICT.
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    stmt: Insert = dialect.insert(_jobs).on_conflict_do_nothing()
    return stmt.returning(_jobs.c.id)


#: Built once per dialect: building the statement cost more than running it.
_INSERTS = {name: _build_insert(name) for name in ("postgresql", "sqlite")}


def _insert_ignoring_conflicts(db: Database) -> Insert:
    return _INSERTS[db.engine.dialect.name]


def insert_jobs(
    db: Database, jobs: Sequence[NewJob], *, idempotency_ttl_s: float
) -> list[Inserted]:
    """Insert ``jobs`` in one transaction; one outcome per job, in order.

    Two jobs of the batch with the same tenant and key: the first is inserted, the second
    gets it back (as a retry would). Raises what the database raises (the API answers 503).
    """
    if not jobs:
        return []
    with db.engine.begin() as conn:
        taken = _insert(conn, db, jobs)
        keyed = [j for j in jobs if j.id not in taken and j.idempotency_key is not None]
        holders = _holders(conn, keyed)
        cutoff = utcnow() - timedelta(seconds=idempotency_ttl_s)
        expired = [j for j in keyed if _holder_of(holders, j).created_at < cutoff]
        if expired:
            # Rare: a key older than its lifetime frees it, and the new job takes it.
            _free_keys(conn, [_holder_of(holders, j) for j in expired])
            for job in expired:
                again = _insert(conn, db, [job])
                if job.id in again:
                    taken.add(job.id)
            holders = _holders(conn, [j for j in keyed if j.id not in taken])
    outcomes = []
    for job in jobs:
        if job.id in taken:
            outcomes.append(Inserted(job.as_job(), created=True))
        elif job.idempotency_key is None:  # pragma: no cover - ids are 80 random bits
            raise RuntimeError(f"job id {job.id} collided")
        else:
            outcomes.append(Inserted(_holder_of(holders, job), created=False))
    return outcomes


def _insert(conn: Connection, db: Database, jobs: Sequence[NewJob]) -> set[str]:
    """The ids inserted (a job whose key is taken is skipped, not an error)."""
    rows = conn.execute(_insert_ignoring_conflicts(db), [j.row() for j in jobs])
    return {row[0] for row in rows}


def _holders(conn: Connection, jobs: Sequence[NewJob]) -> dict[tuple[str, str], Job]:
    """The jobs that hold the keys of ``jobs``, by (tenant, key)."""
    if not jobs:
        return {}
    pairs = {(j.tenant, j.idempotency_key) for j in jobs}
    query = select(_jobs).where(tuple_(_jobs.c.tenant, _jobs.c.idempotency_key).in_(pairs))
    found = {}
    for row in conn.execute(query).mappings():
        values = dict(row)
        values["meta"] = values.pop("metadata")
        found[(row["tenant"], row["idempotency_key"])] = Job(**values)
    return found


def _holder_of(holders: dict[tuple[str, str], Job], job: NewJob) -> Job:
    holder = holders.get((job.tenant, job.idempotency_key or ""))
    if holder is None:  # pragma: no cover - a conflict means a holder, in the same snapshot
        raise RuntimeError(f"Idempotency-Key of job {job.id} is taken but no job holds it")
    return holder


def _free_keys(conn: Connection, holders: Sequence[Job]) -> None:
    ids = [h.id for h in holders]
    conn.execute(update(_jobs).where(_jobs.c.id.in_(ids)).values(idempotency_key=None))
