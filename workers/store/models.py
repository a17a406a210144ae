"""Typed ORM models of the job store."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored with its zone and always read back as aware UTC (SQLite drops zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    """Now, aware, in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every table."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: UTCDateTime}

    if TYPE_CHECKING:
        # Every model here names a table, so its __table__ is a Table (insert, update, delete
        # take it), not the FromClause that DeclarativeBase declares for any mapping.
        __table__: ClassVar[Table]


class Job(Base):
    """One job: its input, its state machine, and its outcome."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_tenant_created", "tenant", "created_at", "id"),
        Index("ix_jobs_status_id", "status", "id"),
        Index("ux_jobs_tenant_idempotency", "tenant", "idempotency_key", unique=True),
        Index("ix_jobs_tenant_status", "tenant", "status"),
        Index("ix_jobs_finished", "finished_at"),
        Index("ix_jobs_tenant_run_at", "tenant", "run_at", "id"),
        Index("ix_jobs_unarchived", "events_archived_at", "finished_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    input: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    #: While the job runs: event ids up to this one are reserved (a new attempt starts
    #: above it, so no id a reader may have seen is ever issued again, whatever Redis
    #: lost). Once the job is terminal: exactly the id of its ``done`` event.
    last_event_id: Mapped[int | None] = mapped_column(Integer, default=None)
    #: Attempts that ended in a retryable error, and attempts whose worker vanished.
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    losses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: 0-9, 9 first, within the tenant's fair share; and when it may start.
    priority: Mapped[int] = mapped_column(Integer, default=5, server_default="5")
    run_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    #: The client's Idempotency-Key (unique per tenant) and a hash of the request body.
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    #: When retention scrubbed its input and output.
    purged_at: Mapped[datetime | None] = mapped_column(default=None)
    #: When its tenant deleted it (scrubbed as by retention; the tenant sees it no more).
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    #: Webhooks: where the job's terminal state is POSTed (its own URL or its tenant's
    #: default, fixed at submit); the outbox row is written with the terminal transition.
    webhook_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    #: When its event log moved to SQL (``event_logs``): from then on its readers are
    #: served from there, and its Redis stream expires soon after. Also set when there
    #: is nothing to keep (retention scrubbed it), so the archiver looks at a job once.
    events_archived_at: Mapped[datetime | None] = mapped_column(default=None)


class EmbeddingBatch(Base):
    """One provider request's vectors for an ``embed`` job: float32, little-endian, in order.

    Stored as each batch finishes, so a new attempt only requests the batches missing.
    """

    __tablename__ = "embedding_batches"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    batch: Mapped[int] = mapped_column(Integer, primary_key=True)
    start: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer)
    dimensions: Mapped[int] = mapped_column(Integer)
    vectors: Mapped[bytes] = mapped_column(LargeBinary)


class EventLog(Base):
    """A finished job's whole event stream, compressed: what its readers are served once
    its Redis stream has expired, for as long as retention keeps the job."""

    __tablename__ = "event_logs"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: The id of its last event (``done``) and how many events it holds.
    last_event_id: Mapped[int] = mapped_column(Integer)
    events: Mapped[int] = mapped_column(Integer)
    #: zlib of one line per event: ``id TAB attempt TAB type TAB data`` (see
    #: ``aijobs.events.archive``).
    blob: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """An API key: only its SHA-256 is stored; the key itself is shown once, at creation."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class JobUsage(Base):
    """What one attempt of a job was billed: one row per attempt (retries included), so a
    tenant's spend is a sum over an index, whatever became of the job."""

    __tablename__ = "job_usage"
    __table_args__ = (Index("ix_job_usage_tenant_created", "tenant", "created_at"),)

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(200))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    #: None when the model has no price in AIJOBS_PRICES.
    cost_usd: Mapped[float | None] = mapped_column(Float, default=None)
    #: The provider did not say (a stream cut short): chunks counted, prompt estimated.
    estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TenantBudget(Base):
    """A tenant's budget set with ``aijobs tenants set-budget``: a limit in tokens or USD
    per day or month (it replaces AIJOBS_TENANT_BUDGETS' of the same period and unit)."""

    __tablename__ = "tenant_budgets"

    tenant: Mapped[str] = mapped_column(String(200), primary_key=True)
    period: Mapped[str] = mapped_column(String(8), primary_key=True)
    unit: Mapped[str] = mapped_column(String(8), primary_key=True)
    limit: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
