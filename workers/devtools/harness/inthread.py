"""Servers in a background thread of this process (when a real process is not the point)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn

from aijobs.devtools.harness.process import HarnessError
from aijobs.devtools.simulator import RunningSimulator, SimulatorConfig, running_simulator

__all__ = ["InThreadServer", "RunningSimulator", "SimulatorConfig", "running_simulator",
           "serve_in_thread"]  # fmt: skip


@dataclass
class InThreadServer:
    """An ASGI app served by uvicorn in a daemon thread."""

    server: uvicorn.Server
    thread: threading.Thread
    url: str

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask uvicorn to exit and wait for its thread."""
        self.server.should_exit = True
        self.thread.join(timeout_s)


def serve_in_thread(
    app: Any, *, host: str = "127.0.0.1", timeout_s: float = 15.0
) -> InThreadServer:
    """Serve ``app`` on a free port of ``host`` in a daemon thread; returns once it listens."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])), name=f"asgi-{port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise HarnessError("the in-thread server did not start")
        time.sleep(0.02)
    return InThreadServer(server, thread, f"http://{host}:{port}")
