"""Celery's Redis transports, with one fault of kombu 5.7 fixed: a worker that lost its
broker for a moment must reconnect, not exit.

When the consumer's connection breaks, Celery first *collects* the connection (which
detaches its transport: ``transport.client = None``) and then *closes* it; closing the
default channel restores its unacked messages, which builds a Redis pool from
``transport.client`` — ``None`` by then — and raises ``AttributeError``. Only connection
errors are ignored there, so the consumer dies with "Unrecoverable error", the worker
finishes what it runs and exits with status 0 (reproduced by
``tests/chaos/test_worker_survives_redis_outage.py``).

Here a channel whose transport is already detached answers with a *connection* error
instead, which the close ignores as it would a Redis that is down. Nothing is lost by
not restoring then: the messages stay in kombu's unacked hash, restored after the
visibility timeout, and the fair queue's reconciler re-queues any job whose delivery did
not start (see ``aijobs.worker.reconciler``).
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class _Detached:
    """What a channel of a detached transport does instead of building a pool; and one
    Redis client per pool instead of one per command.

    kombu builds a new ``redis.Redis`` around the channel's pool for every command it
    sends outside the event loop: each unacked-index write, each ack, each publish (task
    sends, Flower's task events). Building one copies redis-py's table of ~200 response
    callbacks; at a burst of job starts that was 7 % of the worker's CPU (py-spy, 400
    tiny jobs). A client holds no connection of its own (each command borrows one from
    the pool) and redis-py shares them across threads, so one per pool is enough; a new
    pool (after a fork or a reconnect drops the old one) gets a new client.
    """

    connection: Any
    pool: Any
    _client_cache: tuple[Any, Any] | None = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[misc]
        pool = self.pool
        cached = self._client_cache
        if cached is not None and cached[0] is pool:
            return cached[1]
        client = super()._create_client(asynchronous=False)  # type: ignore[misc]
        self._client_cache = (pool, client)
        return client

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection is closed already")
        params: dict[str, Any] = super()._connparams(asynchronous)  # type: ignore[misc]
        return params


class Channel(_Detached, kombu_redis.Channel):
    """``redis://`` channel."""


class SentinelChannel(_Detached, kombu_redis.SentinelChannel):
    """``sentinel://`` channel."""


class Transport(kombu_redis.Transport):
    """``redis://`` (and ``rediss://``), as kombu's, with :class:`Channel`."""

    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    """``sentinel://``, as kombu's, with :class:`SentinelChannel`."""

    Channel = SentinelChannel


def transport_for(url: str) -> str | None:
    """The ``broker_transport`` setting for a broker URL (a ``module:Class`` path).

    None for ``rediss://``: kombu derives its TLS defaults from that scheme's name, which
    a transport given by path would lose; it keeps kombu's own transport.
    """
    if url.startswith("sentinel://"):
        return f"{__name__}:SentinelTransport"
    if url.startswith("redis://"):
        return f"{__name__}:Transport"
    return None
