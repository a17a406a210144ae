"""The delivery loop: every worker process sends the webhooks that are due.

Each round claims as many due events as this process has free senders, and each sender
makes one attempt: check the URL against the policy of now, build the body from the job's
row, sign it, POST it (``aijobs.webhooks.transport``), record the outcome. A 2xx delivers
the event; anything else — another status, a timeout, a refused address — is tried again
after an exponential backoff with jitter (or the receiver's longer ``Retry-After``), up to
``AIJOBS_WEBHOOK_MAX_ATTEMPTS``; then the event is given up, and the job's record says
so. A claim lasts one POST's time plus a margin: a sender that dies mid-attempt leaves the
event due again then, for any process (the receiver gets the same ``webhook-id`` again).

The loop needs only SQL: a Redis outage delays no webhook.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from prometheus_client import Counter
from sqlalchemy.exc import SQLAlchemyError

from aijobs.schemas import WebhookAttempt
from aijobs.settings import Settings
from aijobs.store.jobs import JobRepository
from aijobs.store.models import utcnow
from aijobs.webhooks.models import DeliveryState
from aijobs.webhooks.outbox import LOST_ATTEMPT, Claimed, Outbox
from aijobs.webhooks.payload import job_body
from aijobs.webhooks.signing import Signer
from aijobs.webhooks.transport import Answer, Resolver, post, system_resolver
from aijobs.webhooks.urls import UrlRejected, check_url

log = logging.getLogger(__name__)

ATTEMPTS = Counter(
    "aijobs_webhook_attempts", "Webhook delivery attempts, by how they ended", ["outcome"]
)
#: A claim outlasts one POST by this much (the time to read the job and record).
_CLAIM_MARGIN_S = 5.0


@dataclass(frozen=True, slots=True)
class SenderConfig:
    """What the loop needs from the settings."""

    allowed_hosts: tuple[str, ...]
    timeout_s: float
    max_attempts: int
    retry_base_s: float
    retry_cap_s: float
    poll_interval_s: float
    concurrency: int

    @classmethod
    def from_settings(cls, settings: Settings) -> SenderConfig:
        """The webhook settings."""
        return cls(
            allowed_hosts=tuple(settings.webhook_allowed_hosts),
            timeout_s=settings.webhook_timeout_s,
            max_attempts=settings.webhook_max_attempts,
            retry_base_s=settings.webhook_retry_base_s,
            retry_cap_s=settings.webhook_retry_cap_s,
            poll_interval_s=settings.webhook_poll_interval_s,
            concurrency=settings.webhook_concurrency,
        )


def backoff_s(
    attempt: int,
    *,
    base_s: float,
    cap_s: float,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """The wait after failed attempt ``attempt`` (1-based): exponential with "equal"
    jitter — between half and all of the ceiling, so a receiver that just failed always
    gets a breather and a fleet does not come back in step — or the receiver's
    Retry-After when that is longer (within the cap)."""
    ceiling = min(cap_s, base_s * 2 ** max(0, attempt - 1))
    wait: float = ceiling / 2 + (rng or random).uniform(0.0, ceiling / 2)
    if retry_after_s is not None:
        wait = max(wait, min(retry_after_s, cap_s))
    return wait


class WebhookSender:
    """Delivers due webhooks from the outbox, ``concurrency`` at a time, until stopped."""

    def __init__(
        self,
        outbox: Outbox,
        jobs: JobRepository,
        signer: Signer,
        config: SenderConfig,
        *,
        resolve: Resolver = system_resolver,
    ) -> None:
        self._outbox = outbox
        self._jobs = jobs
        self._signer = signer
        self._config = config
        self._resolve = resolve
        self._pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="aijobs-webhook")
        self._lock = threading.Lock()
        self._inflight: set[Future[None]] = set()
        self._stopping = threading.Event()
        self._freed = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings, jobs: JobRepository) -> WebhookSender | None:
        """A sender on the job store's database, or None when webhooks are off (no
        secret: the events wait for a process that can sign them)."""
        if settings.webhook_secret is None:
            return None
        signer = Signer.from_secret(settings.webhook_secret.get_secret_value())
        return cls(Outbox(jobs.db), jobs, signer, SenderConfig.from_settings(settings))

    # -- the loop -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the loop (once)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="aijobs-webhook-loop", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Claim nothing more; let the attempts in flight end (each has a deadline)."""
        self._stopping.set()
        self._freed.set()
        if self._thread is not None:
            self._thread.join(timeout=self._config.poll_interval_s + 5.0)
            self._thread = None
        with self._lock:
            inflight = list(self._inflight)
        wait_all(inflight, timeout=self._config.timeout_s + _CLAIM_MARGIN_S)
        self._pool.shutdown(wait=False)

    def _run(self) -> None:
        interval = self._config.poll_interval_s
        while not self._stopping.is_set():
            try:
                busy = self.round()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("webhooks: %s", exc)
                busy = False
            except Exception:
                log.exception("webhooks: a round crashed")
                busy = False
            # With every sender busy more may be due: go again when one is free.
            (self._freed if busy else self._stopping).wait(interval)
            self._freed.clear()

    def round(self) -> bool:
        """Claim due events for the free senders and start them; True if every sender
        is now busy."""
        with self._lock:
            free = self._config.concurrency - len(self._inflight)
        if free <= 0:
            return True
        hold_s = self._config.timeout_s + _CLAIM_MARGIN_S
        claimed = self._outbox.claim_due(limit=free, hold_s=hold_s)
        for event in claimed:
            future = self._pool.submit(self.deliver, event)
            with self._lock:
                self._inflight.add(future)
            future.add_done_callback(self._done)
        return len(claimed) >= free

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._inflight.discard(future)
        self._freed.set()

    # -- one attempt --------------------------------------------------------------------

    def deliver(self, event: Claimed) -> None:
        """Make one attempt at ``event`` and record it (with the lost attempt before it,
        if its last sender died)."""
        config = self._config
        entries: list[WebhookAttempt] = []
        if event.lost_at is not None:
            entries.append(WebhookAttempt(at=event.lost_at, status=None, error=LOST_ATTEMPT))
        if event.attempt > config.max_attempts:  # the last allowed attempt was the lost one
            self._record(event, entries, DeliveryState.FAILED)
            return
        at = utcnow()
        started = time.monotonic()
        answer = self._attempt(event)
        entries.append(WebhookAttempt(at=at, status=answer.status, error=answer.error))
        elapsed_s = round(time.monotonic() - started, 3)
        if answer.ok:
            self._record(event, entries, DeliveryState.DELIVERED, elapsed_s=elapsed_s)
        elif event.attempt >= config.max_attempts:
            self._record(event, entries, DeliveryState.FAILED, elapsed_s=elapsed_s)
        else:
            wait_s = backoff_s(
                event.attempt, base_s=config.retry_base_s, cap_s=config.retry_cap_s,
                retry_after_s=answer.retry_after_s,
            )  # fmt: skip
            self._record(event, entries, DeliveryState.PENDING, elapsed_s=elapsed_s,
                         next_at=utcnow() + timedelta(seconds=wait_s))  # fmt: skip

    def _attempt(self, event: Claimed) -> Answer:
        try:
            # The policy of now: a host taken off the allow-list is refused from then on.
            target = check_url(event.url, self._config.allowed_hosts)
        except UrlRejected as exc:
            return Answer(None, f"refused: {exc}")
        try:
            job = self._jobs.get(event.job_id, without=("input",))
            if job is None:
                return Answer(None, "the job no longer exists")
            body = job_body(job)
        except SQLAlchemyError as exc:
            return Answer(None, f"the job could not be read ({type(exc).__name__})")
        headers = self._signer.headers(event.id, int(time.time()), body)
        try:
            return post(
                target, body, headers, timeout_s=self._config.timeout_s, resolve=self._resolve
            )
        except Exception as exc:  # a bug of ours must not look like the receiver's fault
            log.exception("webhook %s: the POST crashed", event.id)
            return Answer(None, f"internal error ({type(exc).__name__})")

    def _record(
        self,
        event: Claimed,
        entries: list[WebhookAttempt],
        state: DeliveryState,
        *,
        elapsed_s: float | None = None,
        next_at: datetime | None = None,
    ) -> None:
        try:
            kept = self._outbox.record(event, entries, state=state, next_at=next_at)
        except SQLAlchemyError as exc:
            # The claim runs out and the event is tried again: a duplicate the receiver
            # drops by its id, never a webhook lost.
            log.warning("webhook %s: outcome not recorded (%s)", event.id, exc)
            return
        outcome = {DeliveryState.PENDING: "retrying"}.get(state, state.value)
        ATTEMPTS.labels(outcome).inc()
        last = entries[-1] if entries else None
        fields = {
            "webhook_id": event.id, "job_id": event.job_id, "attempt": event.attempt,
            "host": urlsplit(event.url).hostname, "outcome": outcome,
            "http_status": last.status if last else None, "elapsed_s": elapsed_s,
        }  # fmt: skip
        if not kept:
            fields["outcome"] = "superseded"  # our claim ran out and another sender took it
        level = logging.WARNING if state == DeliveryState.FAILED else logging.INFO
        detail = f": {last.error}" if last and last.error else ""
        log.log(level, "webhook %s %s%s", event.id, fields["outcome"], detail,
                extra={"fields": fields})  # fmt: skip
