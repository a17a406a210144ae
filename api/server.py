"""Serving the API: uvicorn, with the limits a public port needs.

uvicorn bounds the time between kept-alive requests but not how long a request may take
to arrive: a client sending one header line every ten seconds would hold a connection
(and a slot of ``limit_concurrency``) for as long as it likes. ``GuardedHttpToolsProtocol``
gives each request ``AIJOBS_HEADER_TIMEOUT_S`` to deliver its head and
``AIJOBS_BODY_TIMEOUT_S`` its body, and closes the connection otherwise. Access log lines
never carry a query string (an event token travels in one).
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from aijobs.logs import uvicorn_log_config
from aijobs.settings import Settings

log = logging.getLogger(__name__)

#: Set by ``run_api`` (and the tests) before uvicorn builds its protocols.
_TIMEOUTS: dict[str, float] = {"header_s": 10.0, "body_s": 60.0}


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """httptools' protocol, plus deadlines for a request's head and body."""

    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(_TIMEOUTS["header_s"])  # a connection that never sends is slow too

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(_TIMEOUTS["header_s"])

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(_TIMEOUTS["body_s"])

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the connection is the WebSocket protocol's from here
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.info("closed a connection whose request did not arrive in time")
            self.transport.close()


class _NoQueryStrings(logging.Filter):
    """Access log lines without query strings (an event token travels in one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path, _, _query = args[2].partition("?")
            record.args = (*args[:2], path, *args[3:])
        return True


def hide_query_strings() -> None:
    """Install (once) the access-log filter."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _NoQueryStrings) for f in logger.filters):
        logger.addFilter(_NoQueryStrings())


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn options that bound slow and numerous clients."""
    _TIMEOUTS["header_s"] = settings.header_timeout_s
    _TIMEOUTS["body_s"] = settings.body_timeout_s
    hide_query_strings()
    return {
        "http": GuardedHttpToolsProtocol,
        "timeout_keep_alive": settings.keepalive_s,
        "limit_concurrency": settings.max_connections,
        "ws_max_size": settings.ws_max_message_bytes,
        "timeout_graceful_shutdown": 5,
    }


def run_api(
    settings: Settings, *, host: str, port: int, access_log: bool, workers: int = 1
) -> None:
    """Serve the API in this process until stopped; with ``workers`` > 1, in that many
    processes sharing the port (each with its own connections, hub and intake)."""
    from aijobs.api.main import create_app

    common: dict[str, Any] = {
        "host": host,
        "port": port,
        # uvicorn's error and access loggers write through the process's one handler (in
        # its format, JSON or text) rather than handlers of their own.
        "log_config": uvicorn_log_config(),
        "log_level": "info" if access_log else "warning",
        "access_log": access_log,
        **uvicorn_options(settings),
    }
    if workers <= 1:
        uvicorn.run(create_app(settings), **common)
        return
    # Each process counts its own metrics into files of one directory, which any of them
    # sums up when /metrics is scraped (prometheus_client's multiprocess mode).
    with tempfile.TemporaryDirectory(prefix="aijobs-api-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        uvicorn.run(f"{__name__}:app_from_environment", factory=True, workers=workers, **common)


def app_from_environment() -> FastAPI:
    """The app of one of several API processes, from the environment's settings (the
    module globals ``uvicorn_options`` sets must be set in each process too)."""
    from aijobs.api.main import create_app

    settings = Settings()
    uvicorn_options(settings)
    return create_app(settings)
