"""The job store: the SQL system of record (SQLAlchemy 2.0, Alembic migrations)."""

from aijobs.store.db import Database
from aijobs.store.jobs import ClaimResult, JobRepository
from aijobs.store.models import Base, Job

__all__ = ["Base", "ClaimResult", "Database", "Job", "JobRepository"]
