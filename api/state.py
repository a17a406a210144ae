"""What the API process holds for its lifetime, built from settings."""

from __future__ import annotations

from dataclasses import dataclass

import redis as sync_redis
from celery import Celery
from redis.asyncio import BlockingConnectionPool, Redis

from workers import metrics
from workers.celery_app import QUEUES, create_celery_app
from workers.events.live import LiveHub
from workers.settings import Settings
from workers.store import Database, JobRepository


@dataclass
class ApiState:
    """The API's connections: job store, Celery producer, Redis, shared live hub."""

    settings: Settings
    repo: JobRepository
    celery: Celery
    redis: Redis
    hub: LiveHub

    @classmethod
    async def open(cls, settings: Settings) -> ApiState:
        """Connect everything and start the live hub."""
        url = settings.require_redis_url()
        pool = BlockingConnectionPool.from_url(
            url, max_connections=64, timeout=10, decode_responses=True, client_name="aijobs-api"
        )
        redis = Redis.from_pool(pool)  # closing the client closes the pool
        hub = LiveHub(redis)
        await hub.start()
        _watch_queues(url)
        return cls(
            settings=settings,
            repo=JobRepository(Database(settings.database_url)),
            celery=create_celery_app(settings),
            redis=redis,
            hub=hub,
        )

    async def close(self) -> None:
        """Disconnect everything."""
        await self.hub.close()
        await self.redis.aclose()
        self.repo.db.dispose()
        self.celery.close()


_queue_redis: list[sync_redis.Redis] = []


def _watch_queues(url: str) -> None:
    """Report the broker's queue depths on /metrics (the collector is registered once)."""
    if _queue_redis:
        _queue_redis[0] = sync_redis.Redis.from_url(url, socket_timeout=2)
        return
    _queue_redis.append(sync_redis.Redis.from_url(url, socket_timeout=2))

    def depths() -> dict[str, int]:
        client = _queue_redis[0]
        pipe = client.pipeline(transaction=False)
        for queue in QUEUES:
            pipe.llen(queue)
        return dict(zip(QUEUES, (int(n) for n in pipe.execute()), strict=True))

    metrics.register_queue_depth(depths)
