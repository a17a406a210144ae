"""Deleting a job, and listing scheduled jobs.

- ``deleted_at``: ``DELETE /v1/jobs/{id}`` scrubs the job's data at once (as retention
  does) and marks the row, which its tenant no longer sees (404). The row stays for
  accounting: its usage still counts.
- ``ix_jobs_tenant_run_at``: ``GET /v1/jobs?order=run_at`` walks a tenant's scheduled
  jobs soonest first.

Revision ID: 0007
Revises: 0006
Create Date: 2027-01-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
# After webhooks (0006).
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_jobs_tenant_run_at", "jobs", ["tenant", "run_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_run_at", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("deleted_at")
