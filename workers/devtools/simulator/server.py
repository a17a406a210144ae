"""Running the simulator: in the foreground (CLI) or in a background thread (tests, dev)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn

from aijobs.devtools.simulator.app import create_app
from aijobs.devtools.simulator.config import SimulatorConfig
from aijobs.logs import uvicorn_log_config

_UVICORN_OPTIONS = {
    "log_level": "warning",
    "access_log": False,
    "timeout_graceful_shutdown": 2,
    "lifespan": "off",
}


def serve(host: str, port: int, config: SimulatorConfig | None = None) -> None:
    """Serve the simulator with uvicorn until interrupted (never logs requests or prompts)."""
    app = create_app(config or SimulatorConfig.from_env())
    # Its uvicorn logs through the process's handler (aijobs.logs), in its format: that it
    # started and stopped, never a request.
    options = {**_UVICORN_OPTIONS, "log_config": uvicorn_log_config(), "log_level": "info"}
    uvicorn.run(app, host=host, port=port, **options)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class RunningSimulator:
    """A simulator served in a background thread.

    Attributes:
        base_url: root URL, e.g. ``http://127.0.0.1:54321``.
        api_base: ``base_url + "/v1"``, for ``openai.OpenAI(base_url=...)``.
        port: the bound port.
    """

    base_url: str
    api_base: str
    port: int


@contextlib.contextmanager
def running_simulator(
    config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> Iterator[RunningSimulator]:
    """Serve a fresh simulator in a daemon thread for the duration of the ``with`` block.

    ``port=0`` picks a free port. The server is stopped (open streams are cut after a short
    grace period) when the block exits.
    """
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets whose proto says TCP.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(config or SimulatorConfig()), **_UVICORN_OPTIONS)  # type: ignore[arg-type]
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as exc:  # surfaced to the caller below
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"aijobs-simulator-{bound}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if errors or not thread.is_alive():
            sock.close()
            raise RuntimeError(f"simulator failed to start: {errors[:1]!r}")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("simulator did not start within 10 s")
        time.sleep(0.01)
    base_url = f"http://{host}:{bound}"
    try:
        yield RunningSimulator(base_url=base_url, api_base=base_url + "/v1", port=bound)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
