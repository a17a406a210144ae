"""The outbox in SQL: written with the job's end (and only then), claimed by one sender at a
time across processes, retried with backoff, given up at the cap, every attempt recorded."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from aijobs.schemas import JobStatus
from aijobs.store import Database, JobRepository
from aijobs.store.models import utcnow
from aijobs.webhooks.models import DeliveryState
from aijobs.webhooks.outbox import LOST_ATTEMPT, Outbox
from aijobs.webhooks.sender import SenderConfig, WebhookSender, backoff_s
from aijobs.webhooks.signing import Signer
from tests.webhooks.receiver import Plan, Receiver, running_receiver

HOOK = "https://hooks.example.com/aijobs"


def config(**overrides: Any) -> SenderConfig:
    values: dict[str, Any] = {
        "allowed_hosts": ("127.0.0.1",), "timeout_s": 2.0, "max_attempts": 4,
        "retry_base_s": 60.0, "retry_cap_s": 120.0, "poll_interval_s": 0.05, "concurrency": 4,
    }  # fmt: skip
    return SenderConfig(**(values | overrides))


def ended_job(repo: JobRepository, url: str | None = HOOK, **result: Any) -> str:
    """A job that ran one attempt and succeeded (the worker's path: claim, transition)."""
    job = repo.create(tenant="t", kind="generate", model="m", payload={}, meta={},
                      webhook_url=url)  # fmt: skip
    assert repo.claim(job.id, seen_attempts=0, id_block=10) is not None
    assert repo.transition(job.id, attempt=1, status=JobStatus.SUCCEEDED,
                           result=result or {"text": "hi", "finish_reason": "stop"})  # fmt: skip
    return job.id


def deliver_due(sender: WebhookSender, outbox: Outbox, *, hold_s: float = 30.0) -> int:
    claimed = outbox.claim_due(limit=100, hold_s=hold_s)
    for event in claimed:
        sender.deliver(event)
    return len(claimed)


def make_due_now(outbox: Outbox) -> None:
    """Skip the backoff wait (the test checks what happens next, not how long it took)."""
    from sqlalchemy import update

    from aijobs.webhooks.models import WebhookEvent

    with outbox.db.engine.begin() as conn:
        conn.execute(
            update(WebhookEvent.__table__)
            .where(WebhookEvent.__table__.c.state == "pending")
            .values(next_at=utcnow() - timedelta(seconds=1))
        )


def test_each_way_a_job_ends_writes_its_event_with_the_transition(store: JobRepository) -> None:
    outbox = Outbox(store.db)
    succeeded = ended_job(store)
    assert [(e.event, e.state, e.url) for e in outbox.for_job(succeeded)] == [
        ("job.succeeded", "pending", HOOK)
    ]
    # A cancel of a waiting job (the API's path).
    queued = store.create(tenant="t", kind="generate", model="m", payload={}, meta={},
                          webhook_url=HOOK)  # fmt: skip
    store.request_cancel(queued.id, tenant="t")
    assert [e.event for e in outbox.for_job(queued.id)] == ["job.cancelled"]
    # A job failed without another attempt (out of attempts, poison: the runner's path).
    doomed = store.create(tenant="t", kind="generate", model="m", payload={}, meta={},
                          webhook_url=HOOK)  # fmt: skip
    error = {"code": "poison", "message": "lost", "retryable": False}
    assert store.fail_unclaimed(doomed.id, seen_attempts=0, error=error, events=2) is not None
    assert [e.event for e in outbox.for_job(doomed.id)] == ["job.failed"]


def test_no_event_without_a_url_without_an_end_or_for_a_transition_that_lost(
    store: JobRepository,
) -> None:
    outbox = Outbox(store.db)
    assert outbox.for_job(ended_job(store, url=None)) == []
    job = store.create(tenant="t", kind="generate", model="m", payload={}, meta={},
                       webhook_url=HOOK)  # fmt: skip
    store.claim(job.id, seen_attempts=0, id_block=10)
    assert store.transition(job.id, attempt=1, status=JobStatus.RETRYING, failed_attempt=True)
    assert outbox.for_job(job.id) == []  # retrying is not an end
    store.claim(job.id, seen_attempts=1, id_block=10)
    # A stale attempt's outcome loses its compare-and-set: no job end, no event.
    assert not store.transition(job.id, attempt=1, status=JobStatus.SUCCEEDED, result={})
    assert outbox.for_job(job.id) == []
    assert store.transition(job.id, attempt=2, status=JobStatus.FAILED, error={"code": "x"})
    assert store.request_cancel(job.id, tenant="t")[1] is None  # finished: nothing more
    assert [e.event for e in outbox.for_job(job.id)] == ["job.failed"]


def test_retention_takes_the_url_and_the_delivery_log_with_the_rest(store: JobRepository) -> None:
    outbox = Outbox(store.db)
    job_id = ended_job(store)
    store.scrub(job_id, error=None)
    assert outbox.for_job(job_id) == []
    job = store.get(job_id)
    assert job is not None and job.webhook_url is None and outbox.views([job]) == {}


def test_senders_in_two_processes_never_claim_the_same_event(store: JobRepository) -> None:
    ids = {ended_job(store) for _ in range(30)}
    # Two engines: two pools of connections, as two worker processes have.
    outboxes = [Outbox(store.db), Outbox(Database(store.db.url))]
    taken: list[list[str]] = [[], []]
    start = threading.Barrier(2)

    def claim_all(index: int) -> None:
        start.wait()
        while batch := outboxes[index].claim_due(limit=3, hold_s=60):
            taken[index].extend(e.job_id for e in batch)

    threads = [threading.Thread(target=claim_all, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    outboxes[1].db.dispose()
    assert sorted(taken[0] + taken[1]) == sorted(ids)  # each once, none twice


def test_failed_attempts_are_retried_then_delivered_and_all_recorded(
    store: JobRepository, secret: str
) -> None:
    outbox = Outbox(store.db)
    with running_receiver(secret, Plan(fail_first=2)) as receiver:
        job_id = ended_job(store, url=receiver.url)
        sender = WebhookSender(outbox, store, Signer.from_secret(secret), config())
        assert deliver_due(sender, outbox) == 1
        assert deliver_due(sender, outbox) == 0  # not due yet: it waits its backoff
        for _ in range(2):
            make_due_now(outbox)
            assert deliver_due(sender, outbox) == 1
        assert receiver.unverified() == []
        assert [msg_id for msg_id, _ in receiver.counts().items()] == list(receiver.events())
    view = outbox.views([store.get(job_id)])[job_id]
    assert view.state == "delivered" and view.delivered_at is not None
    assert [(d.status, d.error) for d in view.deliveries] == [
        (500, "HTTP 500"), (500, "HTTP 500"), (200, None),
    ]  # fmt: skip
    make_due_now(outbox)
    assert deliver_due(sender, outbox) == 0  # delivered: never sent again


def test_an_endpoint_that_keeps_failing_is_given_up_at_the_cap(
    store: JobRepository, secret: str
) -> None:
    outbox = Outbox(store.db)
    with running_receiver(secret, Plan(fail_first=100)) as receiver:
        job_id = ended_job(store, url=receiver.url)
        sender = WebhookSender(outbox, store, Signer.from_secret(secret), config(max_attempts=3))
        for _ in range(5):
            make_due_now(outbox)
            deliver_due(sender, outbox)
        assert sum(receiver.counts().values()) == 3
    view = outbox.views([store.get(job_id)])[job_id]
    assert view.state == "failed" and view.delivered_at is None
    assert [d.status for d in view.deliveries] == [500, 500, 500]


def test_an_attempt_whose_sender_died_is_recorded_and_tried_again(
    store: JobRepository, secret: str
) -> None:
    outbox = Outbox(store.db)
    with running_receiver(secret) as receiver:
        job_id = ended_job(store, url=receiver.url)
        # A sender claims the event and dies: its claim runs out (here at once).
        [dead] = outbox.claim_due(limit=10, hold_s=0)
        sender = WebhookSender(outbox, store, Signer.from_secret(secret), config())
        [event] = outbox.claim_due(limit=10, hold_s=30)
        assert event.attempt == 2 and event.lost_at is not None
        sender.deliver(event)
        # The dead sender's late outcome no longer counts: the row is not its own.
        assert not outbox.record(dead, [], state=DeliveryState.PENDING)
    view = outbox.views([store.get(job_id)])[job_id]
    assert view.state == "delivered"
    assert [(d.status, d.error) for d in view.deliveries] == [(None, LOST_ATTEMPT), (200, None)]


def test_the_last_attempt_lost_gives_up_without_another_post(
    store: JobRepository, secret: str, receiver: Receiver
) -> None:
    outbox = Outbox(store.db)
    job_id = ended_job(store, url=receiver.url)
    sender = WebhookSender(outbox, store, Signer.from_secret(secret), config(max_attempts=1))
    outbox.claim_due(limit=10, hold_s=0)  # the only attempt, lost
    assert deliver_due(sender, outbox) == 1
    assert receiver.arrivals == []
    view = outbox.views([store.get(job_id)])[job_id]
    assert view.state == "failed"
    assert [d.error for d in view.deliveries] == [LOST_ATTEMPT]


@pytest.mark.parametrize("attempt", [1, 2, 5, 12])
def test_backoff_grows_with_equal_jitter_under_the_cap(attempt: int) -> None:
    ceiling = min(60.0, 10.0 * 2 ** (attempt - 1))
    waits = [backoff_s(attempt, base_s=10, cap_s=60) for _ in range(200)]
    assert all(ceiling / 2 <= w <= ceiling for w in waits)
    assert len(set(waits)) > 100  # jittered
    assert backoff_s(attempt, base_s=10, cap_s=60, retry_after_s=120) == 60  # within the cap
