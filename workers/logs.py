"""Logging: one line per job transition, JSON when configured; never a prompt or a key."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

transitions = logging.getLogger("aijobs.jobs")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the structured fields of the record."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            line.update(fields)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """Plain text with the structured fields appended as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return text


def configure_logging(*, level: str = "INFO", json_lines: bool = False) -> None:
    """Send aijobs logs to stderr, as JSON lines or text."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger("aijobs")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # The HTTP clients log every request at INFO: noise at our volumes.
    for name in ("httpx", "httpx2", "openai"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("aijobs.worker", "aijobs.api"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


def log_transition(
    job_id: str, kind: str, attempt: int, status: str, started: float, **extra: Any
) -> None:
    """Log one job transition: id, kind, attempt, new status, seconds since ``started``."""
    fields = {
        "job_id": job_id,
        "kind": kind,
        "attempt": attempt,
        "status": status,
        "elapsed_s": round(time.monotonic() - started, 3),
        **extra,
    }
    transitions.info("job %s %s", job_id, status, extra={"fields": fields})
