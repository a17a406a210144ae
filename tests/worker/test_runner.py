"""One delivery's story, on a real Redis and store with the fake provider (no Celery, no
HTTP): claim, stream, finish; leave a duplicate alone; wait in the queue; poison; cancel."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aijobs import redis_keys
from aijobs.devtools.redis_server import start_redis
from aijobs.errors import ErrorCode, ProviderError
from aijobs.providers.fake import FakeAnswer, FakeProvider
from aijobs.settings import Settings
from aijobs.store.migrate import upgrade
from aijobs.worker.attempt import Outcome
from aijobs.worker.context import WorkerContext
from aijobs.worker.leases import LeaseKeeper
from aijobs.worker.runner import run_delivery

TENANT = "tenant-r"


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[WorkerContext]:
    server = start_redis(tmp_path / "redis")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    settings = Settings(redis_url=server.url, database_url=url, openai_base_url="http://x",
                        retry_base_s=0.01, max_attempts=3, poison_after_losses=2)  # fmt: skip
    context = WorkerContext.build(settings, send=lambda *_: None, concurrency=2,
                                  provider=FakeProvider())  # fmt: skip
    yield context
    context.close()
    server.stop()


def job(ctx: WorkerContext, **fields: Any) -> str:
    payload = {"kind": "generate", "model": "m", "max_tokens": 5, "temperature": None,
               "messages": [{"role": "user", "content": "x"}], **fields}  # fmt: skip
    return ctx.repo.create(tenant=TENANT, kind="generate", model="m", payload=payload,
                           meta={}).id  # fmt: skip


def events(ctx: WorkerContext, job_id: str) -> list[tuple[int, str, dict[str, Any]]]:
    entries = ctx.redis.xrange(redis_keys.events_key(job_id))
    return [(int(i.decode().split("-")[1]), f[b"e"].decode(), json.loads(f[b"d"]))
            for i, f in entries]  # fmt: skip


def test_a_delivery_claims_streams_and_finishes(ctx: WorkerContext) -> None:
    job_id = job(ctx)
    report = run_delivery(ctx, job_id)
    assert report.outcome is Outcome.SUCCEEDED
    row = ctx.repo.get(job_id)
    assert row is not None and row.status == "succeeded" and row.attempts == 1
    seen = events(ctx, job_id)
    assert [e for _, e, _ in seen] == ["status", "delta", "result", "done"]
    assert [i for i, _, _ in seen] == [1, 2, 3, 4] and row.last_event_id == 4
    assert seen[2][2] == {"text": "Hello world", "finish_reason": "stop"}


def test_a_duplicate_finds_the_live_lease_and_leaves(ctx: WorkerContext) -> None:
    job_id = job(ctx)
    other = LeaseKeeper(ctx.redis, ttl_s=30)
    assert other.acquire(job_id, "generate", TENANT) is not None
    assert run_delivery(ctx, job_id).outcome is Outcome.SKIPPED
    assert ctx.repo.get(job_id).status == "queued"  # type: ignore[union-attr]


def test_a_retryable_failure_waits_in_the_queue_holding_no_slot(ctx: WorkerContext) -> None:
    failing = ProviderError(ErrorCode.STREAM_INTERRUPTED, "cut", retryable=True)
    ctx.provider.answers = [FakeAnswer(error=failing)]  # type: ignore[attr-defined]
    job_id = job(ctx)
    report = run_delivery(ctx, job_id)
    assert report.outcome is Outcome.WAITING and report.code == "stream_interrupted"
    row = ctx.repo.get(job_id)
    assert row is not None and row.status == "retrying" and row.failures == 1 and row.run_at


def test_a_job_that_keeps_losing_its_worker_is_poison(ctx: WorkerContext) -> None:
    job_id = job(ctx)
    for seen in range(2):  # two workers claimed it and vanished
        assert ctx.repo.claim(job_id, seen_attempts=seen, id_block=10) is not None
    report = run_delivery(ctx, job_id)
    assert report.outcome is Outcome.FAILED and report.code == "poison"
    assert [e for _, e, _ in events(ctx, job_id)][-2:] == ["error", "done"]


def test_a_cancel_recorded_in_the_store_stops_the_attempt(ctx: WorkerContext) -> None:
    from sqlalchemy import update

    from aijobs.store.models import Job

    ctx.provider.answers = [FakeAnswer(("a", "b", "c", "d"))]  # type: ignore[attr-defined]
    job_id = job(ctx)
    with ctx.repo.db.session() as session:  # queued jobs are cancelled at once; this one
        session.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
    report = run_delivery(ctx, job_id)
    assert report.outcome is Outcome.CANCELLED
