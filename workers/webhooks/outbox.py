"""The webhook outbox: rows written with a job's end, claimed by senders, recorded.

- ``add_terminal`` runs inside the job's terminal transaction (``JobRepository``): the
  event exists exactly when the job has ended.
- ``Outbox.claim_due`` hands a sender the rows that are due. On PostgreSQL the rows are
  locked with ``FOR UPDATE SKIP LOCKED`` so senders in other processes pass them by; on
  SQLite (one writer at a time) each row is taken by a compare-and-set on its attempt
  count. Either way one sender holds a row until its claim runs out.
- ``Outbox.record`` writes an attempt's outcome if the sender still holds the claim.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Connection, delete, insert, literal, select, update

from aijobs.schemas import WebhookAttempt, WebhookView
from aijobs.store.db import Database
from aijobs.store.models import Job, UTCDateTime, utcnow
from aijobs.webhooks.models import DeliveryState, WebhookEvent

_events = WebhookEvent.__table__
_jobs = Job.__table__

#: Recorded for an attempt whose sender died before it could say how the POST went.
LOST_ATTEMPT = "no outcome recorded: the sender stopped during the attempt"


def new_event_id() -> str:
    """A ``webhook-id``: ``msg_`` and 32 hex characters that sort by creation time."""
    return f"msg_{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


def add_terminal(conn: Connection, job_id: str, status: str) -> None:
    """Queue the job's webhook, if it has a URL, in the caller's transaction (the one that
    made the job terminal): one INSERT … SELECT, which inserts nothing for a job without
    a URL."""
    now = utcnow()
    source = select(
        literal(new_event_id()), _jobs.c.id, _jobs.c.webhook_url, literal(f"job.{status}"),
        literal(DeliveryState.PENDING.value), literal(0), literal(now, UTCDateTime()),
        literal([], JSON()), literal(now, UTCDateTime()),
    ).where(_jobs.c.id == job_id, _jobs.c.webhook_url.is_not(None))  # fmt: skip
    columns = ["id", "job_id", "url", "event", "state", "attempts", "next_at", "history",
               "created_at"]  # fmt: skip
    conn.execute(insert(_events).from_select(columns, source))


def forget(conn: Connection, job_id: str) -> None:
    """Delete the job's webhook URL and events, in the caller's transaction (retention's
    scrub: a URL may carry a token, and its log is the job's data too)."""
    conn.execute(update(_jobs).where(_jobs.c.id == job_id).values(webhook_url=None))
    conn.execute(delete(_events).where(_events.c.job_id == job_id))


@dataclass(frozen=True, slots=True)
class Claimed:
    """A row a sender holds: what to send, and what it knew when it took it."""

    id: str
    job_id: str
    url: str
    event: str
    #: This attempt's number (1-based).
    attempt: int
    token: str
    history: list[dict[str, Any]]
    #: The previous attempt was claimed then and never recorded (its sender died).
    lost_at: datetime | None


class Outbox:
    """Reads and writes of the webhook outbox."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._locks = db.engine.dialect.name == "postgresql"

    def claim_due(self, *, limit: int, hold_s: float) -> list[Claimed]:
        """Take up to ``limit`` due rows for ``hold_s`` seconds (one attempt each)."""
        if limit <= 0:
            return []
        now = utcnow()
        due = (
            select(_events.c.id, _events.c.attempts, _events.c.claim, _events.c.claimed_at)
            .where(_events.c.state == DeliveryState.PENDING.value, _events.c.next_at <= now)
            .order_by(_events.c.next_at)
            .limit(limit)
        )
        token = secrets.token_hex(8)
        if self._locks:
            # One transaction: the rows stay locked (and skipped by other senders) until
            # they carry this sender's claim.
            with self.db.engine.begin() as conn:
                rows = conn.execute(due.with_for_update(skip_locked=True)).all()
                return [c for row in rows if (c := self._take(conn, row, token, now, hold_s))]
        # SQLite: read, then take each row in a write of its own. A read transaction that
        # turned into a write could fail outright when another process wrote in between.
        with self.db.engine.connect() as conn:
            rows = conn.execute(due).all()
        taken: list[Claimed] = []
        for row in rows:
            with self.db.engine.begin() as conn:
                claimed = self._take(conn, row, token, now, hold_s)
            if claimed is not None:
                taken.append(claimed)
        return taken

    def _take(
        self, conn: Connection, row: Any, token: str, now: datetime, hold_s: float
    ) -> Claimed | None:
        event_id, seen, old_claim, old_claimed_at = row
        stmt = (
            update(_events)
            .where(
                _events.c.id == event_id,
                _events.c.attempts == seen,
                _events.c.state == DeliveryState.PENDING.value,
            )
            .values(
                attempts=seen + 1,
                claim=token,
                claimed_at=now,
                next_at=now + timedelta(seconds=hold_s),
            )
            .returning(_events.c.job_id, _events.c.url, _events.c.event, _events.c.history)
        )
        taken = conn.execute(stmt).first()
        if taken is None:
            return None  # another sender took it first
        job_id, url, event, history = taken
        lost_at = old_claimed_at if old_claim is not None else None
        return Claimed(event_id, job_id, url, event, seen + 1, token, list(history), lost_at)

    def record(
        self,
        claimed: Claimed,
        entries: Sequence[WebhookAttempt],
        *,
        state: DeliveryState,
        next_at: datetime | None = None,
    ) -> bool:
        """Append ``entries`` to the row's history and move it to ``state`` (due again at
        ``next_at`` when pending), if ``claimed`` still holds it."""
        now = utcnow()
        history = claimed.history + [e.model_dump(mode="json") for e in entries]
        values: dict[str, Any] = {"state": state.value, "claim": None, "history": history}
        if state == DeliveryState.PENDING:
            values["next_at"] = next_at or now
        if state == DeliveryState.DELIVERED:
            values["delivered_at"] = now
        stmt = (
            update(_events)
            .where(_events.c.id == claimed.id, _events.c.claim == claimed.token)
            .values(**values)
        )
        with self.db.engine.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def views(self, jobs: Sequence[Job]) -> dict[str, WebhookView]:
        """The ``webhook`` view of each job that has a URL (one query, none if no job
        has one)."""
        with_url = {job.id: job.webhook_url for job in jobs if job.webhook_url}
        if not with_url:
            return {}
        query = (
            select(
                _events.c.job_id, _events.c.url, _events.c.state, _events.c.history,
                _events.c.delivered_at,
            )
            .where(_events.c.job_id.in_(list(with_url)))
            .order_by(_events.c.created_at)
        )  # fmt: skip
        with self.db.engine.connect() as conn:
            rows = conn.execute(query).all()
        views = {job_id: WebhookView(url=url, state="waiting") for job_id, url in with_url.items()}
        for job_id, url, state, history, delivered_at in rows:
            views[job_id] = WebhookView(
                url=url,
                state=state,
                deliveries=[WebhookAttempt.model_validate(entry) for entry in history],
                delivered_at=delivered_at,
            )
        return views

    def for_job(self, job_id: str) -> list[WebhookEvent]:
        """The job's outbox rows (for tests and operators)."""
        query = select(WebhookEvent).where(WebhookEvent.job_id == job_id)
        with self.db.session() as session:
            return list(session.scalars(query))
