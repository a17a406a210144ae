"""The job store: the SQL system of record (SQLAlchemy 2.0, Alembic migrations)."""

from aijobs.store.db import Database
from aijobs.store.jobs import Claim, JobRepository, WaitingJob
from aijobs.store.models import Base, Job

__all__ = ["Base", "Claim", "Database", "Job", "JobRepository", "WaitingJob"]
