"""Everything a worker process needs to run jobs, built once from settings."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from redis import Redis

from aijobs.connections import sync_client
from aijobs.errors import ConfigurationError
from aijobs.events.writer import EventWriter
from aijobs.fairqueue import FairQueue
from aijobs.providers.base import Provider
from aijobs.providers.openai_compat import OpenAIProvider
from aijobs.ratelimit import RateLimiter
from aijobs.schemas import JobKind
from aijobs.settings import Settings
from aijobs.spend.counters import SpendCounters
from aijobs.store import Database, JobRepository
from aijobs.store.budgets import BudgetRepository
from aijobs.store.grouped import GroupedWrites
from aijobs.store.migrate import require_current
from aijobs.store.usage import spent_since
from aijobs.webhooks.sender import WebhookSender
from aijobs.worker.feeder import Feeder, Send
from aijobs.worker.heartbeat import Heartbeat
from aijobs.worker.leases import LeaseKeeper
from aijobs.worker.periodic import Periodic
from aijobs.worker.reconciler import Reconciler
from aijobs.worker.retry import RetryPolicy
from aijobs.worker.watchdog import Watchdog


def build_provider(settings: Settings, *, max_connections: int = 1000) -> Provider:
    """The configured OpenAI-compatible provider."""
    if settings.openai_api_key is None and not settings.openai_base_url:
        raise ConfigurationError(
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
        continuous_usage=settings.provider_continuous_usage,
    )


@dataclass(eq=False)
class WorkerContext:
    """The per-process parts of a worker: store, Redis, queue, events, leases, provider,
    and the background threads that keep them honest."""

    settings: Settings
    repo: JobRepository
    redis: Redis
    queue: FairQueue
    writer: EventWriter
    leases: LeaseKeeper
    provider: Provider
    reconciler: Reconciler
    feeder: Feeder
    limiter: RateLimiter
    watchdog: Watchdog
    retry_policy: RetryPolicy
    heartbeat: Heartbeat | None = None
    #: Webhooks: delivers due completion callbacks from the outbox (None: no secret).
    webhooks: WebhookSender | None = None
    #: Tenants' budgets (SQL over configuration) and their spend counters in Redis.
    budgets: BudgetRepository | None = None
    spend: SpendCounters | None = None
    #: Set when the worker is shutting down and its grace period is over: running
    #: attempts stop between chunks and hand their job back to the queue.
    handing_off: threading.Event = field(default_factory=threading.Event)
    #: Jobs running here whose cancel request is recorded in the store (read every few
    #: seconds, so a cancel survives a lost Redis flag).
    cancelled_in_store: set[str] = field(default_factory=set)
    _loops: list[Periodic] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        send: Send,
        concurrency: int | None = None,
        kinds: Sequence[str] | None = None,
        provider: Provider | None = None,
    ) -> WorkerContext:
        """Build and start the runtime of a worker process with ``concurrency`` slots for
        ``kinds`` (its queues). ``send(job_id, kind)`` hands a job to the broker;
        ``provider`` replaces the configured one (tests)."""
        slots = concurrency or settings.worker_concurrency
        redis = sync_client(
            settings.redis_target(), max_connections=slots + 20, name="aijobs-worker"
        )
        db = Database(settings.database_url, pool_size=min(slots, 20))
        # Job starts and ends of every thread share commits (a burst of starts would wait
        # for one commit each otherwise).
        repo = JobRepository(db, writes=GroupedWrites(db))
        require_current(repo.db.engine, settings.database_url)
        writer = EventWriter(
            redis,
            retention_s=settings.stream_retention_s,
            maxlen=settings.stream_maxlen,
            flush_interval_s=settings.delta_flush_ms / 1000,
            reserve=repo.reserve_events,
            id_block=settings.event_id_block,
        )
        queue = FairQueue(redis)
        leases = LeaseKeeper(redis, ttl_s=settings.lease_ttl_s)
        feeder = Feeder(
            queue,
            send,
            kinds=list(kinds or [k.value for k in JobKind]),
            slots=slots,
            tenant_cap=settings.tenant_max_running,
            dispatch_timeout_s=settings.dispatch_timeout_s,
            weights=settings.tenant_weights,
        )

        def on_epoch() -> None:
            # Redis was emptied: what this process holds there is gone too.
            feeder.register()
            leases.renew_all()

        reconciler = Reconciler(
            repo=repo,
            redis=redis,
            queue=queue,
            interval_s=settings.reconcile_interval_s,
            orphan_grace_s=settings.orphan_grace_s,
            lease_ttl_s=settings.lease_ttl_s,
            retention_s=settings.data_retention_s,
            purge_interval_s=settings.purge_interval_s,
            on_epoch=on_epoch,
            archived_stream_ttl_s=settings.archived_stream_ttl_s
            if settings.archive_events
            else None,
        )
        context = cls(
            settings=settings,
            repo=repo,
            redis=redis,
            queue=queue,
            writer=writer,
            leases=leases,
            provider=provider or build_provider(settings, max_connections=slots + 10),
            reconciler=reconciler,
            feeder=feeder,
            limiter=RateLimiter(
                redis,
                settings.rate_limits,
                provider=settings.provider_name,
                tenant_share=settings.tenant_budget_share,
            ),
            watchdog=Watchdog(),
            retry_policy=RetryPolicy(
                max_attempts=settings.max_attempts,
                base_s=settings.retry_base_s,
                cap_s=settings.retry_cap_s,
            ),
        )
        context.budgets = BudgetRepository.from_settings(settings, db)
        context.spend = SpendCounters(redis, lambda t, since: spent_since(db.engine, t, since))
        if settings.worker_heartbeat_file:
            context.heartbeat = Heartbeat(settings.worker_heartbeat_file)
            context.heartbeat.start()
        context._loops.append(
            Periodic("aijobs-cancel-poll", 2.0, context._poll_cancels, expected=(Exception,))
        )
        writer.start()
        leases.start()
        context.watchdog.start()
        reconciler.start()
        feeder.start()
        for loop in context._loops:
            loop.start()
        context.webhooks = WebhookSender.from_settings(settings, repo)  # webhooks
        if context.webhooks is not None:
            context.webhooks.start()
        return context

    def _poll_cancels(self) -> None:
        running = [lease.job_id for lease in self.leases.held()]
        self.cancelled_in_store = self.repo.cancel_requested(running) if running else set()

    def hand_off_after(self, grace_s: float) -> None:
        """Let running attempts finish for ``grace_s``, then make them hand their jobs back."""
        self.feeder.stop()  # take no more work: this process is leaving
        timer = threading.Timer(grace_s, self.handing_off.set)
        timer.daemon = True
        timer.start()

    def close(self) -> None:
        """Flush events, stop background threads, close connections."""
        if self.heartbeat is not None:
            self.heartbeat.stop()
        for loop in self._loops:
            loop.stop()
        if self.webhooks is not None:  # webhooks: let the attempts in flight end
            self.webhooks.stop()
        self.feeder.stop()
        self.reconciler.stop()
        self.watchdog.stop()
        self.leases.stop()
        self.writer.stop()
        self.repo.close()
        close = getattr(self.provider, "close", None)
        if close is not None:
            close()
        self.repo.db.dispose()
        self.redis.close()
