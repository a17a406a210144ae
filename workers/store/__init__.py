"""The job store: the SQL system of record (SQLAlchemy 2.0, Alembic migrations)."""

from workers.store.db import Database
from workers.store.jobs import ClaimResult, JobRepository
from workers.store.models import Base, Job

__all__ = ["Base", "ClaimResult", "Database", "Job", "JobRepository"]
