"""aijobs workers: the job store, the event protocol, the Celery app and the job kinds.

``celery -A workers worker`` finds the Celery app here; it is built on first
access from the environment's settings, so importing ``workers`` reads nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from workers.celery_app import create_celery_app
        from workers.settings import Settings

        app = create_celery_app(Settings())
        globals()["app"] = globals()["celery"] = app
        return app
    raise AttributeError(f"module 'workers' has no attribute {name!r}")
