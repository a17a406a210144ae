"""The statements every job runs — read, claim, end — built once, with bound parameters.

Building an UPDATE with SQLAlchemy (``update().where().values()``) and computing its cache
key cost more CPU than executing it on SQLite; an ORM ``session.get`` costs four times a
Core select. These run once or twice per job start and end, on the worker's hot path, so
they are built here at import and only their parameters change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Select, bindparam, case, func, or_, select, update

from aijobs.schemas import JobStatus
from aijobs.store.models import Job, UTCDateTime, utcnow

_jobs = Job.__table__
_c = _jobs.c
_CLAIMABLE = [s.value for s in (JobStatus.QUEUED, JobStatus.RETRYING, JobStatus.RUNNING)]
_RUNNING = JobStatus.RUNNING.value
#: The attribute a column is mapped to (``metadata`` is ``Job.meta``).
_ATTRIBUTE = {"metadata": "meta"}


@dataclass(frozen=True, slots=True)
class Claim:
    """A started attempt: its number and the event ids reserved for it."""

    attempt: int
    #: The attempt's ids start above this one...
    floor: int
    #: ...and are reserved up to this one (the flusher extends it ahead of use).
    reserved: int
    cancel_requested: bool = False


@lru_cache(maxsize=16)
def _select_without(without: frozenset[str]) -> Select[Any]:
    columns = [col for col in _jobs.columns if _ATTRIBUTE.get(col.name, col.name) not in without]
    return select(*columns).where(_c.id == bindparam("b_id"))


def read_job(conn: Connection, job_id: str, without: Iterable[str] = ()) -> Job | None:
    """The row as a detached ``Job`` (columns in ``without`` are not read: None)."""
    row = conn.execute(_select_without(frozenset(without)), {"b_id": job_id}).mappings().first()
    if row is None:
        return None
    return Job(**{_ATTRIBUTE.get(name, name): value for name, value in row.items()})


# ``status IN (...)`` with a list is an "expanding" parameter, rendered anew on every
# execution (4 % of a worker's CPU in a burst of job starts); equalities are compiled once.
_CLAIM = (
    update(_jobs)
    .where(_c.id == bindparam("b_id"), _c.attempts == bindparam("b_seen"),
           or_(*(_c.status == status for status in _CLAIMABLE)))
    .values(
        attempts=_c.attempts + 1,
        status=_RUNNING,
        updated_at=bindparam("b_now", type_=UTCDateTime()),
        started_at=func.coalesce(_c.started_at, bindparam("b_now", type_=UTCDateTime())),
        losses=_c.losses + case((_c.status == _RUNNING, 1), else_=0),
        last_event_id=func.coalesce(_c.last_event_id, 0) + bindparam("b_block"),
    )
    .returning(_c.last_event_id, _c.cancel_requested)
)  # fmt: skip


def claim(conn: Connection, job_id: str, *, seen_attempts: int, id_block: int) -> Claim | None:
    """Start attempt ``seen_attempts + 1`` unless someone else started one first.

    In the same statement: count a loss if the previous attempt was still marked running
    (its worker vanished), and reserve ``id_block`` event ids above every id an earlier
    attempt may have used.
    """
    params = {"b_id": job_id, "b_seen": seen_attempts, "b_now": utcnow(), "b_block": id_block}
    row = conn.execute(_CLAIM, params).first()
    if row is None:
        return None
    reserved = int(row[0])
    return Claim(seen_attempts + 1, reserved - id_block, reserved, bool(row[1]))


_CURRENT = (_c.id == bindparam("b_id"), _c.attempts == bindparam("b_attempt"),
            _c.status == _RUNNING)  # fmt: skip
_END = (
    update(_jobs)
    .where(*_CURRENT)
    .values(
        status=bindparam("b_status"),
        updated_at=bindparam("b_now", type_=UTCDateTime()),
        finished_at=bindparam("b_now", type_=UTCDateTime()),
        result=bindparam("b_result", type_=_c.result.type),
        error=bindparam("b_error", type_=_c.error.type),
        usage=bindparam("b_usage", type_=_c.usage.type),
        last_event_id=func.coalesce(bindparam("b_last"), _c.last_event_id),
    )
)
_WAIT = (
    update(_jobs)
    .where(*_CURRENT)
    .values(
        status=bindparam("b_status"),
        updated_at=bindparam("b_now", type_=UTCDateTime()),
        run_at=bindparam("b_run_at", type_=UTCDateTime()),
        failures=_c.failures + bindparam("b_failed"),
        # The usage so far (every attempt's), or as it was.
        usage=func.coalesce(bindparam("b_usage", type_=_c.usage.type), _c.usage),
    )
)


def end(
    conn: Connection,
    job_id: str,
    *,
    attempt: int,
    status: JobStatus,
    result: dict[str, Any] | None,
    error: dict[str, Any] | None,
    usage: dict[str, Any] | None,
    last_event_id: int | None,
) -> bool:
    """Move the running attempt to a terminal ``status``; False if it is not current."""
    params = {"b_id": job_id, "b_attempt": attempt, "b_status": status.value,
              "b_now": utcnow(), "b_result": result, "b_error": error, "b_usage": usage,
              "b_last": last_event_id}  # fmt: skip
    return bool(conn.execute(_END, params).rowcount == 1)


def wait(
    conn: Connection,
    job_id: str,
    *,
    attempt: int,
    status: JobStatus,
    run_at: datetime | None,
    failed_attempt: bool,
    usage: dict[str, Any] | None = None,
) -> bool:
    """Move the running attempt to waiting (``retrying``/``queued``); False if not current."""
    params = {"b_id": job_id, "b_attempt": attempt, "b_status": status.value,
              "b_now": utcnow(), "b_run_at": run_at, "b_failed": int(failed_attempt),
              "b_usage": usage}  # fmt: skip
    return bool(conn.execute(_WAIT, params).rowcount == 1)
