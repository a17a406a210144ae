"""Logging: one format for every line a process writes, JSON with ``AIJOBS_LOG_JSON=true``
and text otherwise; one line per job transition; never a prompt, a text or a key.

Every aijobs process (API, worker, Flower, simulator, ``aijobs dev``) logs through one
handler on the root logger, and the loggers of the libraries that write its lines
(uvicorn's error and access loggers, Celery's, tornado's and Flower's) keep no handler of
their own: they propagate to it, so each line is written once, in one format. uvicorn is
given a ``log_config`` that says so (:func:`uvicorn_log_config`), Celery is kept from
installing its handlers by a ``setup_logging`` receiver (:func:`take_over_celery_logging`),
and Flower is started with tornado's ``--logging=none``.

Levels: the loggers above log at the configured level; every other library at WARNING at
least, because at INFO or DEBUG some of them write what must never be logged (SQLAlchemy
the parameters of its statements, the openai SDK its request bodies, websockets its
frames: prompts and texts).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from types import TracebackType
from typing import Any

transitions = logging.getLogger("aijobs.jobs")

#: The loggers whose lines carry no prompt, text or key: they log at the configured level.
OWN_LOGGERS = ("aijobs", "celery", "uvicorn", "uvicorn.error", "uvicorn.access", "tornado",
               "flower")  # fmt: skip
#: Libraries that log requests at INFO: noise at our volumes, and kept at WARNING even if
#: the root logger is set lower by someone else.
QUIET_LOGGERS = ("httpx", "httpx2", "httpcore", "openai", "sqlalchemy", "websockets")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # json.dumps escapes every newline in the message or traceback: one line each.
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """Plain text with the structured fields appended as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return text


def _level(level: str) -> int:
    number = logging.getLevelNamesMapping().get(level.upper())
    if number is None:
        raise ValueError(f"unknown log level {level!r}")
    return number


def configure_logging(*, level: str = "INFO", json_lines: bool = False) -> None:
    """Send every log line of this process to stderr, as JSON lines or text."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter(TEXT_FORMAT))
    number = _level(level)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(number, logging.WARNING))
    for name in OWN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
        logger.setLevel(number)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(number, logging.WARNING))
    # Warnings (Celery's about running as root, a library's deprecation) become records.
    logging.captureWarnings(True)
    if json_lines:
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread


def logs_json() -> bool:
    """Whether this process's lines are JSON (its root handler formats them so)."""
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)


def configure_logging_from_env(environ: dict[str, str] | None = None) -> bool:
    """:func:`configure_logging` from ``AIJOBS_LOG_JSON`` and ``AIJOBS_LOG_LEVEL``, read as
    the settings read them, for the processes that build no ``Settings`` (the simulator,
    ``aijobs dev``). Returns whether lines are JSON."""
    from pydantic import TypeAdapter

    env = os.environ if environ is None else environ
    # Empty means unset, as for Settings (env_ignore_empty).
    json_lines = TypeAdapter(bool).validate_python(env.get("AIJOBS_LOG_JSON") or "false")
    configure_logging(level=env.get("AIJOBS_LOG_LEVEL") or "INFO", json_lines=json_lines)
    return json_lines


def uvicorn_log_config() -> dict[str, Any]:
    """A ``log_config`` for uvicorn: its loggers keep no handler and propagate to the root
    logger's (uvicorn's default installs text handlers of its own, the access log's on
    stdout). uvicorn still sets their levels from ``log_level`` and silences the access
    log when ``access_log`` is off; logger filters (no query strings) are kept."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "loggers": {
            name: {"handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
        },
    }


def take_over_celery_logging(*, level: str, json_lines: bool) -> None:
    """Keep a Celery worker on this module's logging.

    A ``setup_logging`` receiver is what tells Celery not to configure logging itself (no
    handler on the root logger, none on ``celery.task``). With JSON lines, the notices
    Celery writes straight to the terminal's file descriptor (``worker: Warm shutdown``:
    ``os.write``, past ``sys.stdout`` and logging) become records too; the banner it prints
    is turned off by the caller (``--quiet``).
    """
    from celery import signals
    from celery.apps import worker as celery_worker

    def keep_ours(**_: Any) -> None:
        configure_logging(level=level, json_lines=json_lines)

    signals.setup_logging.connect(keep_ours, weak=False)
    if json_lines:
        notices = logging.getLogger("celery.apps.worker")

        def say(msg: str, f: Any = None) -> None:
            notices.info("%s", msg.strip())

        # The one hook there is: the module's function, looked up at each call.
        celery_worker.safe_say = say


def _log_uncaught(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    logging.getLogger("aijobs").critical(
        "uncaught %s", exc_type.__name__, exc_info=(exc_type, exc, tb)
    )


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    thread = args.thread.name if args.thread else "?"
    logging.getLogger("aijobs").critical(
        "uncaught %s in thread %s", args.exc_type.__name__, thread,
        exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
    )  # fmt: skip


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
