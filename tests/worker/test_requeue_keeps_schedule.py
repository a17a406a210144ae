"""Every path that puts a job back in the queue keeps its priority and its run_at: the
feeder after a failed send, the reconciler for a job lost in flight and for one Redis
never heard of (on a real Redis and store)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis

from aijobs import redis_keys
from aijobs.devtools.redis_server import start_redis
from aijobs.fairqueue import FairQueue, QueuedJob
from aijobs.store import Database, JobRepository
from aijobs.store.migrate import upgrade
from aijobs.store.models import utcnow
from aijobs.worker.feeder import Feeder
from aijobs.worker.reconciler import Reconciler
from tests.support import wait_for

TENANT = "tenant-q"


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[JobRepository, redis.Redis]]:
    server = start_redis(tmp_path / "redis")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    repo = JobRepository(Database(url))
    client = redis.Redis.from_url(server.url, decode_responses=True)
    yield repo, client
    client.close()
    repo.db.dispose()
    server.stop()


def _priority_of(client: redis.Redis, job_id: str) -> int:
    score = client.zscore(redis_keys.pending_key("generate", TENANT), job_id)
    assert score is not None, job_id
    return 9 - int(score // 1e13)


def test_a_job_the_feeder_could_not_send_goes_back_with_its_priority(
    parts: tuple[JobRepository, redis.Redis],
) -> None:
    _, client = parts
    queue = FairQueue(client)

    def broker_down(_job_id: str, _kind: str) -> None:
        raise ConnectionError("broker unreachable")

    feeder = Feeder(queue, broker_down, kinds=["generate"], slots=4, tenant_cap=0,
                    dispatch_timeout_s=20)  # fmt: skip
    feeder.register()
    urgent, usual = uuid.uuid4().hex, uuid.uuid4().hex
    queue.push(QueuedJob(usual, "generate", TENANT, 5))
    queue.push(QueuedJob(urgent, "generate", TENANT, 9))
    assert feeder.feed_once() == 0
    assert _priority_of(client, urgent) == 9 and _priority_of(client, usual) == 5
    taken = queue.take("generate", 1, tenant_cap=0, dispatch_ttl_s=20)
    assert [(job.id, job.priority) for job in taken] == [(urgent, 9)]


def test_the_feeder_takes_and_sends_after_redis_lost_its_scripts(
    parts: tuple[JobRepository, redis.Redis],
) -> None:
    # The feeder's round is one pipeline of EVALSHAs (every kind's take) and the delayed
    # set's head; a Redis restarted empty answers NOSCRIPT, and the round loads the
    # script and takes all the same, each job once.
    _, client = parts
    queue = FairQueue(client)
    sent: list[tuple[str, list[str]]] = []
    feeder = Feeder(queue, lambda kind, ids: sent.append((kind, ids)), kinds=["generate"],
                    slots=4, tenant_cap=0, dispatch_timeout_s=20)  # fmt: skip
    feeder.register()
    jobs = [uuid.uuid4().hex for _ in range(3)]
    for job_id in jobs:
        queue.push(QueuedJob(job_id, "generate", TENANT, 5))
    client.script_flush()
    assert feeder.feed_once() == 3
    assert sorted(job for _, ids in sent for job in ids) == sorted(jobs)
    assert {kind for kind, _ in sent} == {"generate"}
    assert feeder.feed_once() == 0  # nothing twice
    queue.push(QueuedJob("later", "generate", TENANT, 5), run_at_epoch_s=time.time() + 30)
    _, due_s = queue.take_all(["generate"], 8, tenant_cap=0, dispatch_ttl_s=20)
    assert due_s is not None and 25 < due_s < 31


def _scheduled_row(repo: JobRepository, *, ahead_s: float, priority: int) -> str:
    payload = {"kind": "generate", "model": "m", "max_tokens": 1, "temperature": None,
               "messages": [{"role": "user", "content": "x"}]}  # fmt: skip
    job = repo.create(tenant=TENANT, kind="generate", model="m", payload=payload, meta={},
                      priority=priority, run_at=utcnow() + timedelta(seconds=ahead_s))  # fmt: skip
    return job.id


def _tick(reconciler: Reconciler, client: redis.Redis) -> None:
    client.delete(redis_keys.RECONCILER_LOCK)
    reconciler.tick()


def test_the_reconciler_requeues_lost_and_unknown_jobs_delayed_with_their_priority(
    parts: tuple[JobRepository, redis.Redis],
) -> None:
    repo, client = parts
    queue = FairQueue(client)
    reconciler = Reconciler(repo=repo, redis=client, queue=queue, interval_s=1.0,
                            orphan_grace_s=0.0, lease_ttl_s=2.0)  # fmt: skip
    _tick(reconciler, client)  # sets the epoch (a fresh Redis looks emptied once)
    # Lost in flight: handed out (active, deadline passed, no lease) though not yet due.
    lost = _scheduled_row(repo, ahead_s=600, priority=8)
    active_until = int(time.time() * 1000) - 1
    client.zadd(redis_keys.kind_active_key("generate"), {lost: active_until})
    # Never queued: the API died between its INSERT and its push.
    unknown = _scheduled_row(repo, ahead_s=600, priority=2)

    def delayed(job_id: str, priority: int) -> bool:
        member = redis_keys.delayed_member("generate", TENANT, priority, job_id)
        return client.zscore(redis_keys.DELAYED, member) is not None

    def both_back() -> bool:
        _tick(reconciler, client)
        return delayed(lost, 8) and delayed(unknown, 2)

    wait_for(both_back, timeout_s=10, interval_s=0.2)
    for job_id in (lost, unknown):
        row = repo.get(job_id)
        assert row is not None and row.run_at is not None
        member = redis_keys.delayed_member("generate", TENANT, row.priority, job_id)
        due_ms = client.zscore(redis_keys.DELAYED, member)
        assert due_ms is not None and due_ms >= row.run_at.timestamp() * 1000
    # Known where they are now: a further pass leaves them be (no scan, no duplicate).
    assert queue.where([QueuedJob(lost, "generate", TENANT, 8)]) == [True]
    _tick(reconciler, client)
    assert client.zcard(redis_keys.DELAYED) == 2
