"""Finished jobs' event logs in SQL.

- ``event_logs``: one row per finished job, its whole event stream compressed, so a
  reader resumes exactly for as long as retention keeps the job, while Redis keeps the
  stream only a few minutes after the job ends.
- ``jobs.events_archived_at`` and ``ix_jobs_unarchived``: the archiver finds the jobs
  that finished and are not archived yet, oldest first.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_logs",
        sa.Column("job_id", sa.String(32), primary_key=True),
        sa.Column("last_event_id", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("blob", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("events_archived_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_jobs_unarchived", "jobs", ["events_archived_at", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_unarchived", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("events_archived_at")
    op.drop_table("event_logs")
