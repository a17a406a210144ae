"""Everything a worker process needs to run jobs, built once from settings."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from redis import BlockingConnectionPool, Redis

from aijobs.events.writer import EventWriter
from aijobs.providers.base import Provider
from aijobs.providers.openai_compat import OpenAIProvider
from aijobs.ratelimit import RateLimiter
from aijobs.settings import Settings, SettingsError
from aijobs.store import Database, JobRepository
from aijobs.store.migrate import require_current
from aijobs.worker.heartbeat import Heartbeat
from aijobs.worker.leases import LeaseKeeper
from aijobs.worker.reconciler import Reconciler, Send


def redis_client(url: str, *, max_connections: int = 50) -> Redis:
    """A sync Redis client whose pool waits for a free connection instead of failing."""
    pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=30)
    return Redis(connection_pool=pool)


def build_provider(settings: Settings, *, max_connections: int = 1000) -> Provider:
    """The configured OpenAI-compatible provider."""
    if settings.openai_api_key is None and not settings.openai_base_url:
        raise SettingsError(
            "no provider configured: set OPENAI_API_KEY (and OPENAI_BASE_URL for a "
            "compatible endpoint), or run `aijobs dev`, which starts the simulator"
        )
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unused"
    return OpenAIProvider(
        api_key=key,
        base_url=settings.openai_base_url,
        timeout_s=settings.provider_timeout_s,
        connect_timeout_s=settings.provider_connect_timeout_s,
        name=settings.provider_name,
        max_connections=max_connections,
    )


@dataclass(eq=False)
class WorkerContext:
    """The per-process parts of a worker: store, Redis, event writer, leases, provider."""

    settings: Settings
    repo: JobRepository
    redis: Redis
    writer: EventWriter
    leases: LeaseKeeper
    provider: Provider
    reconciler: Reconciler
    limiter: RateLimiter
    heartbeat: Heartbeat | None = None
    #: Set when the worker is shutting down and its grace period is over: running
    #: attempts stop between chunks and hand their job back to the queue.
    handing_off: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def build(
        cls, settings: Settings, *, send: Send, concurrency: int | None = None
    ) -> WorkerContext:
        """Build and start the runtime for ``concurrency`` concurrent jobs.

        ``send(job_id, kind)`` enqueues a job (the reconciler re-enqueues with it).
        """
        slots = concurrency or settings.worker_concurrency
        redis = redis_client(settings.require_redis_url(), max_connections=slots + 20)
        repo = JobRepository(Database(settings.database_url, pool_size=min(slots, 20)))
        require_current(repo.db.engine, settings.database_url)
        writer = EventWriter(
            redis,
            retention_s=settings.stream_retention_s,
            maxlen=settings.stream_maxlen,
            flush_interval_s=settings.delta_flush_ms / 1000,
        )
        leases = LeaseKeeper(redis, ttl_s=settings.lease_ttl_s)
        reconciler = Reconciler(
            repo=repo,
            redis=redis,
            send=send,
            lease_ttl_s=settings.lease_ttl_s,
            max_countdown_s=settings.max_countdown_s,
            interval_s=settings.reconcile_interval_s,
            queued_stale_s=settings.queued_reenqueue_s,
            retention_s=settings.data_retention_s,
            purge_interval_s=settings.purge_interval_s,
        )
        runtime = cls(
            settings=settings,
            repo=repo,
            redis=redis,
            writer=writer,
            leases=leases,
            provider=build_provider(settings, max_connections=slots + 10),
            reconciler=reconciler,
            limiter=RateLimiter(redis, settings.rate_limits, provider=settings.provider_name),
        )
        if settings.worker_heartbeat_file:
            runtime.heartbeat = Heartbeat(settings.worker_heartbeat_file)
            runtime.heartbeat.start()
        writer.start()
        leases.start()
        reconciler.start()
        return runtime

    def hand_off_after(self, grace_s: float) -> None:
        """Let running attempts finish for ``grace_s``, then make them hand their jobs back."""
        timer = threading.Timer(grace_s, self.handing_off.set)
        timer.daemon = True
        timer.start()

    def close(self) -> None:
        """Flush events, stop background threads, close connections."""
        if self.heartbeat is not None:
            self.heartbeat.stop()
        self.reconciler.stop()
        self.leases.stop()
        self.writer.stop()
        close = getattr(self.provider, "close", None)
        if close is not None:
            close()
        self.repo.db.dispose()
        self.redis.close()
