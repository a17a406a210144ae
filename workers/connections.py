"""Every Redis connection aijobs opens, built in one place: hardened, and Sentinel-aware.

Hardened: every pool has connect and socket timeouts, TCP keepalive and health checks,
so a half-open socket (a peer that vanished without a FIN, a failover behind a NAT)
fails a call within seconds instead of blocking a thread — the event flusher, a lease
renewal, the live hub — forever.

``REDIS_URL`` is either a plain ``redis://`` / ``rediss://`` URL or a Sentinel one:
``sentinel://[:password@]host:port[,host:port...][/db]``, with the master's name in
``AIJOBS_REDIS_SENTINEL_MASTER`` (``mymaster`` by default). The broker, the event
writer, the API, leases and the limiter all follow the master through a failover.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import Sentinel

#: Seconds a command may wait for its answer. Blocking calls (BLPOP, pub/sub reads)
#: always ask Redis for a shorter timeout than this.
SOCKET_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 3.0
HEALTH_CHECK_INTERVAL_S = 10


def _keepalive_options() -> dict[int, int]:
    # Probe an idle connection after 10 s, every 5 s, give up after 3 misses: a dead
    # peer is noticed in ~25 s even on a connection nobody is using.
    options: dict[int, int] = {}
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            options[getattr(socket, name)] = value
    return options


def hardening() -> dict[str, Any]:
    """Connection options every aijobs Redis pool gets."""
    return {
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_keepalive": True,
        "socket_keepalive_options": _keepalive_options(),
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
    }


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where Redis is: a URL, or Sentinels and the name of the master they watch."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = "mymaster"
    db: int = 0
    username: str | None = None
    password: str | None = None

    @property
    def is_sentinel(self) -> bool:
        """True when the master is found through Sentinel."""
        return bool(self.sentinels)


def parse_redis_url(url: str, *, sentinel_master: str = "mymaster") -> RedisTarget:
    """Parse ``REDIS_URL`` (``redis://``, ``rediss://`` or ``sentinel://``)."""
    if not url.startswith("sentinel://"):
        return RedisTarget(url=url)
    parts = urlsplit(url)
    netloc = parts.netloc
    username = password = None
    if "@" in netloc:
        credentials, _, netloc = netloc.rpartition("@")
        user, _, secret = credentials.partition(":")
        username, password = unquote(user) or None, unquote(secret) or None
    sentinels: list[tuple[str, int]] = []
    for item in netloc.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host:
            host, port = port, "26379"
        sentinels.append((host, int(port)))
    path = parts.path.strip("/")
    db = int(path) if path.isdigit() else 0
    return RedisTarget(
        url=url,
        sentinels=tuple(sentinels),
        master=sentinel_master,
        db=db,
        username=username,
        password=password,
    )


def sync_client(
    target: RedisTarget,
    *,
    max_connections: int = 50,
    decode: bool = False,
    name: str = "aijobs",
) -> redis.Redis:
    """A thread-safe client whose pool waits for a free connection instead of failing."""
    options = hardening() | {"decode_responses": decode, "client_name": name}
    if target.is_sentinel:
        sentinel = Sentinel(
            list(target.sentinels),
            sentinel_kwargs={"socket_timeout": SOCKET_TIMEOUT_S,
                             "socket_connect_timeout": CONNECT_TIMEOUT_S},
            **options,
        )  # fmt: skip
        # A Sentinel pool fails past its size rather than waiting: size it generously.
        client: redis.Redis = sentinel.master_for(
            target.master,
            db=target.db,
            username=target.username,
            password=target.password,
            max_connections=max_connections * 2,
        )
        return client
    pool = redis.BlockingConnectionPool.from_url(
        target.url, max_connections=max_connections, timeout=30, **options
    )
    return redis.Redis(connection_pool=pool)


def async_client(
    target: RedisTarget,
    *,
    max_connections: int = 64,
    decode: bool = True,
    name: str = "aijobs",
) -> redis.asyncio.Redis:
    """An asyncio client (the API's); closing it closes its pool."""
    options = hardening() | {"decode_responses": decode, "client_name": name}
    if target.is_sentinel:
        sentinel = AsyncSentinel(
            list(target.sentinels),
            sentinel_kwargs={"socket_timeout": SOCKET_TIMEOUT_S,
                             "socket_connect_timeout": CONNECT_TIMEOUT_S},
            **options,
        )  # fmt: skip
        async_redis: redis.asyncio.Redis = sentinel.master_for(
            target.master,
            db=target.db,
            username=target.username,
            password=target.password,
            max_connections=max_connections * 2,
        )
        return async_redis
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        target.url, max_connections=max_connections, timeout=10, **options
    )
    return redis.asyncio.Redis.from_pool(pool)


def broker_settings(target: RedisTarget) -> tuple[str, dict[str, Any]]:
    """Celery's broker URL and the transport options that harden (and route) it."""
    options: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_keepalive": True,
        "socket_keepalive_options": _keepalive_options(),
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "retry_on_timeout": True,
    }
    if not target.is_sentinel:
        return target.url, options
    auth = ""
    if target.password:
        auth = f"{target.username or ''}:{target.password}@"
    url = ";".join(f"sentinel://{auth}{host}:{port}/{target.db}" for host, port in target.sentinels)
    options |= {
        "master_name": target.master,
        "sentinel_kwargs": {"socket_timeout": SOCKET_TIMEOUT_S,
                            "socket_connect_timeout": CONNECT_TIMEOUT_S},
    }  # fmt: skip
    if target.password:
        options["sentinel_kwargs"]["password"] = target.password
    return url, options
