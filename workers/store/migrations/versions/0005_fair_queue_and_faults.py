"""Attempt accounting, scheduling fields, and the event-id reservation.

- ``failures``: attempts that ended in a retryable error; ``losses``: attempts whose
  worker vanished (found by the next delivery). Together they cap a job's attempts;
  losses alone mark it poison.
- ``priority`` (0-9, 9 first) and ``run_at`` (not before): how the fair queue orders it.
- ``enqueued_at`` goes: whether a job is waiting in Redis is checked there, not trusted
  from a mark written before the send.
- ``last_event_id`` now also holds, while the job runs, the ids reserved for its events.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_jobs_status_enqueued", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("enqueued_at")
        batch.add_column(sa.Column("failures", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("losses", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="5"))
        batch.add_column(sa.Column("run_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_jobs_status_id", "jobs", ["status", "id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_status_id", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("run_at")
        batch.drop_column("priority")
        batch.drop_column("losses")
        batch.drop_column("failures")
        batch.add_column(sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_jobs_status_enqueued", "jobs", ["status", "enqueued_at"])
