"""The worker runtime: the Celery app, thin tasks, and what runs one delivery of a job.

``celery -A aijobs.worker worker -P threads`` finds the Celery app here; it is built on
first access from the environment's settings, so importing this package reads nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from aijobs.settings import Settings
        from aijobs.worker.celery_app import create_celery_app

        app = create_celery_app(Settings())
        globals()["app"] = globals()["celery"] = app
        return app
    raise AttributeError(f"module 'aijobs.worker' has no attribute {name!r}")
