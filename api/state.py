"""What the API process holds for its lifetime, built from settings."""

from __future__ import annotations

from dataclasses import dataclass

import redis as sync_redis
from celery import Celery
from redis.asyncio import BlockingConnectionPool, Redis

from aijobs import metrics
from aijobs.api.readers import ReaderSlots
from aijobs.api.tokens import TokenSigner
from aijobs.events.live import LiveHub
from aijobs.ratelimit import RateLimiter
from aijobs.settings import RateLimit, Settings
from aijobs.store import Database, JobRepository
from aijobs.store.api_keys import KeyRepository
from aijobs.store.migrate import require_current
from aijobs.worker.celery_app import QUEUES, create_celery_app


@dataclass
class ApiState:
    """The API's connections: job store, Celery producer, Redis, shared live hub."""

    settings: Settings
    repo: JobRepository
    keys: KeyRepository
    celery: Celery
    redis: Redis
    hub: LiveHub
    sync_redis: sync_redis.Redis
    submit_limiter: RateLimiter
    readers: ReaderSlots
    tokens: TokenSigner

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
        db = Database(settings.database_url)
        require_current(db.engine, settings.database_url)
        blocking = sync_redis.Redis(
            connection_pool=sync_redis.BlockingConnectionPool.from_url(
                url, max_connections=40, timeout=10, client_name="aijobs-api"
            )
        )
        per_second = RateLimit(rpm=settings.tenant_submits_per_s, window_s=1.0)
        secret = settings.token_secret.get_secret_value() if settings.token_secret else None
        return cls(
            settings=settings,
            repo=JobRepository(db),
            keys=KeyRepository(db, cache_ttl_s=settings.key_cache_ttl_s),
            celery=create_celery_app(settings),
            redis=redis,
            hub=hub,
            sync_redis=blocking,
            submit_limiter=RateLimiter(
                blocking, {"*": per_second}, provider="tenant-submits", safety_ms=0
            ),
            readers=ReaderSlots(settings.tenant_max_readers),
            tokens=TokenSigner(secret),
        )

    async def close(self) -> None:
        """Disconnect everything."""
        await self.hub.close()
        await self.redis.aclose()
        self.sync_redis.close()
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
