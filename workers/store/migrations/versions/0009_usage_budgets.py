"""Usage per attempt, and tenants' budgets.

- ``job_usage``: one row per attempt of a job (retries included) with the tokens the
  provider billed and their cost; ``GET /v1/usage`` and the budgets sum it by tenant
  over ``created_at``.
- ``tenant_budgets``: budgets set with ``aijobs tenants set-budget``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_usage",
        sa.Column("job_id", sa.String(32), primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("cached_tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=True),
        sa.Column("estimated", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_job_usage_tenant_created", "job_usage", ["tenant", "created_at"])
    op.create_table(
        "tenant_budgets",
        sa.Column("tenant", sa.String(200), primary_key=True),
        sa.Column("period", sa.String(8), primary_key=True),
        sa.Column("unit", sa.String(8), primary_key=True),
        sa.Column("limit", sa.Float, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tenant_budgets")
    op.drop_index("ix_job_usage_tenant_created", table_name="job_usage")
    op.drop_table("job_usage")
