"""The reconciler on a real Redis and store: lapsed leases found by expiry at any fleet
size, jobs Redis never heard of queued again, finished jobs left alone."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from aijobs import redis_keys
from aijobs.devtools.redis_server import RedisServer, start_redis
from aijobs.fairqueue import FairQueue
from aijobs.schemas import JobStatus
from aijobs.store import Database, JobRepository
from aijobs.store.migrate import upgrade
from aijobs.worker.leases import LeaseKeeper
from aijobs.worker.reconciler import Reconciler
from tests.support import wait_for

TENANT = "tenant-r"


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[JobRepository, redis.Redis, RedisServer]]:
    server = start_redis(tmp_path / "redis")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    repo = JobRepository(Database(url))
    client = redis.Redis.from_url(server.url, decode_responses=True)
    yield repo, client, server
    client.close()
    repo.db.dispose()
    server.stop()


def _running_job(repo: JobRepository) -> str:
    payload = {"kind": "generate", "model": "m", "max_tokens": 1, "temperature": None,
               "messages": [{"role": "user", "content": uuid.uuid4().hex}]}  # fmt: skip
    job = repo.create(tenant=TENANT, kind="generate", model="m", payload=payload, meta={})
    assert repo.claim(job.id, seen_attempts=0, id_block=10) is not None
    return job.id


def _reconciler(repo: JobRepository, client: redis.Redis) -> Reconciler:
    return Reconciler(repo=repo, redis=client, queue=FairQueue(client), interval_s=1.0,
                      orphan_grace_s=0.5, lease_ttl_s=2.0)  # fmt: skip


def test_a_lapsed_lease_is_found_among_hundreds_of_live_ones(
    parts: tuple[JobRepository, redis.Redis, RedisServer],
) -> None:
    repo, client, _ = parts
    alive = LeaseKeeper(client, ttl_s=120)
    live = [_running_job(repo) for _ in range(600)]
    for job_id in live:
        assert alive.acquire(job_id, "generate", TENANT) is not None
    dying = LeaseKeeper(client, ttl_s=0.2)
    lost = _running_job(repo)  # the newest: an oldest-first scan of 500 would miss it
    assert dying.acquire(lost, "generate", TENANT) is not None
    reconciler = _reconciler(repo, client)
    reconciler.tick()  # sets the epoch: a fresh Redis looks emptied the first time
    client.delete(redis_keys.RECONCILER_LOCK)

    def requeued() -> bool:
        client.delete(redis_keys.RECONCILER_LOCK)
        return lost in reconciler.tick().lost_in_flight

    wait_for(requeued, timeout_s=10, interval_s=0.1)
    pending = client.zrange(redis_keys.pending_key("generate", TENANT), 0, -1)
    assert pending == [lost]  # only the lost one: the 600 live ones stay where they are


def test_a_job_redis_never_heard_of_is_queued_and_a_finished_one_is_left(
    parts: tuple[JobRepository, redis.Redis, RedisServer],
) -> None:
    repo, client, _ = parts
    payload = {"kind": "generate", "model": "m", "max_tokens": 1, "temperature": None,
               "messages": [{"role": "user", "content": "x"}]}  # fmt: skip
    orphan = repo.create(tenant=TENANT, kind="generate", model="m", payload=payload, meta={})
    done = _running_job(repo)
    assert repo.transition(done, attempt=1, status=JobStatus.SUCCEEDED, result={"text": ""})
    reconciler = _reconciler(repo, client)

    def queued() -> bool:
        client.delete(redis_keys.RECONCILER_LOCK)
        report = reconciler.tick()
        return orphan.id in report.never_queued

    wait_for(queued, timeout_s=10, interval_s=0.2)
    pending = client.zrange(redis_keys.pending_key("generate", TENANT), 0, -1)
    assert pending == [orphan.id]
