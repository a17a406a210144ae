"""The webhook outbox table: one row per event to deliver (a job that ended)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from aijobs.store.models import Base, utcnow


class DeliveryState(StrEnum):
    """Where an event's delivery stands."""

    #: Due at ``next_at``: never tried, retrying, or claimed by a sender until then.
    PENDING = "pending"
    DELIVERED = "delivered"
    #: Given up after the last allowed attempt.
    FAILED = "failed"


class WebhookEvent(Base):
    """An event waiting for (or done with) its delivery.

    Inserted in the same transaction as the job's terminal transition, so an ended job
    always has its row, whatever dies next. A sender *claims* a due row by writing its own
    token and pushing ``next_at`` past the time one POST may take; if it dies there, the
    row is due again at that time and another sender tries it (the receiver sees the same
    ``webhook-id`` again and keeps one).
    """

    __tablename__ = "webhook_events"
    __table_args__ = (
        Index("ix_webhook_events_due", "state", "next_at"),
        Index("ix_webhook_events_job", "job_id"),
    )

    #: The ``webhook-id`` header: the same on every attempt.
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(String(2048))
    #: ``job.succeeded``, ``job.failed``, ``job.cancelled``.
    event: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING.value)
    #: Attempts started (counted when claimed, so a sender that dies mid-POST spends one).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: The token of the sender holding the row, and since when; cleared when it records
    #: the outcome (still set at the next claim: that sender never came back).
    claim: Mapped[str | None] = mapped_column(String(32), default=None)
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    #: Every attempt: {"at": ISO time, "status": HTTP status or null, "error": text or null}.
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
