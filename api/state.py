"""What the API process holds for its lifetime, built from settings.

It imports no worker code: a job is handed to the workers by pushing its id onto the fair
queue in Redis (``aijobs.fairqueue``), which the workers' feeders read.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis as SyncRedis
from redis.asyncio import Redis

from aijobs.api.admission import ActiveCounts, ReaderSlots
from aijobs.api.auth import Authenticator
from aijobs.api.intake import Intake
from aijobs.api.tokens import TokenSigner
from aijobs.connections import async_client, sync_client
from aijobs.events.live import LiveHub
from aijobs.fairqueue import FairQueue
from aijobs.ratelimit import RateLimiter
from aijobs.settings import RateLimit, Settings
from aijobs.spend.counters import SpendCounters
from aijobs.store import Database, JobRepository
from aijobs.store.api_keys import KeyRepository
from aijobs.store.budgets import BudgetRepository
from aijobs.store.migrate import require_current
from aijobs.store.usage import spent_since


@dataclass
class ApiState:
    """The API's connections: job store, Redis (asyncio and blocking), the live hub."""

    settings: Settings
    repo: JobRepository
    keys: KeyRepository
    redis: Redis
    hub: LiveHub
    sync_redis: SyncRedis
    queue: FairQueue
    submit_limiter: RateLimiter
    readers: ReaderSlots
    tokens: TokenSigner
    auth: Authenticator
    intake: Intake
    active: ActiveCounts
    #: Tenants' budgets (SQL over configuration) and their spend counters in Redis.
    budgets: BudgetRepository
    spend: SpendCounters

    @classmethod
    async def open(cls, settings: Settings) -> ApiState:
        """Connect everything and start the live hub."""
        target = settings.redis_target()
        redis = async_client(target, max_connections=64, name="aijobs-api")
        hub = LiveHub(redis)
        await hub.start()
        db = Database(settings.database_url)
        require_current(db.engine, settings.database_url)
        blocking = sync_client(target, max_connections=40, name="aijobs-api")
        queue = FairQueue(blocking)
        per_second = RateLimit(requests=settings.tenant_submits_per_s, window_s=1.0)
        secret = settings.token_secret.get_secret_value() if settings.token_secret else None
        keys = KeyRepository(db, cache_ttl_s=settings.key_cache_ttl_s)
        repo = JobRepository(db)
        return cls(
            settings=settings,
            repo=repo,
            keys=keys,
            redis=redis,
            hub=hub,
            sync_redis=blocking,
            queue=queue,
            submit_limiter=RateLimiter(
                blocking,
                {"*": per_second},
                provider="tenant-submits",
                safety_ms=0,
                async_redis=redis,
            ),
            readers=ReaderSlots(settings.tenant_max_readers),
            tokens=TokenSigner(secret),
            auth=Authenticator(settings, keys),
            intake=Intake(db, queue, idempotency_ttl_s=settings.idempotency_ttl_s),
            active=ActiveCounts(repo.count_active),
            budgets=BudgetRepository.from_settings(settings, db),
            spend=SpendCounters(blocking, lambda t, since: spent_since(db.engine, t, since)),
        )

    async def close(self) -> None:
        """Disconnect everything (submits being written are written first)."""
        self.intake.close()
        await self.hub.close()
        await self.redis.aclose()
        self.sync_redis.close()
        self.repo.db.dispose()
