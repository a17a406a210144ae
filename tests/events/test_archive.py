"""A finished job's event log moves to SQL: readers resume exactly from any id once its
Redis stream is gone, Redis lets the stream expire soon, and deleting the job deletes it."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import update

from aijobs import redis_keys
from aijobs.events import archive
from aijobs.events.protocol import Event
from aijobs.settings import Settings
from aijobs.store import Database, JobRepository, event_logs
from aijobs.store.event_logs import Finished
from aijobs.store.migrate import upgrade
from aijobs.store.models import Job, utcnow
from tests.support import SseEvent, read_events, wait_for

ODD = "tab\there, line\nfeed, \u2028\u2029\u0085 and é€😀"


def test_the_compact_form_gives_back_every_event_after_a_cursor() -> None:
    events = [
        Event(1, "status", '{"status":"running","attempt":1}', 1),
        Event(2, "delta", '{"text":"' + ODD.replace("\t", "\\t").replace("\n", "\\n") + '"}', 1),
        Event(1001, "reset", '{"attempt":2}', 2),
        Event(1002, "done", '{"status":"succeeded"}', 2),
    ]
    blob = archive.encode(events)
    assert archive.decode(blob) == events
    assert archive.decode(blob, after=2) == events[2:]
    assert archive.decode(blob, after=1002) == []


def test_a_stream_without_its_end_is_kept_with_the_rows_closing_events() -> None:
    job = Finished("j1", "succeeded", {"text": "ab"}, None, 7, 1, utcnow())
    partial = [Event(1, "status", '{"status":"running","attempt":1}', 1),
               Event(2, "delta", '{"text":"a"}', 1)]  # fmt: skip
    assert archive.log_of(job, partial, give_up=False) is None  # not yet: it may still come
    kept = archive.log_of(job, partial, give_up=True)
    assert kept is not None and kept.last_event_id == 7 and kept.blob is not None
    assert [(e.id, e.event) for e in archive.decode(kept.blob)] == [
        (1, "status"), (2, "delta"), (6, "result"), (7, "done")]  # fmt: skip
    lost = archive.log_of(job, [], give_up=True)  # Redis lost all of it
    assert lost is not None and lost.blob is not None
    assert [e.event for e in archive.decode(lost.blob)] == ["result", "done"]


def _wait_archived(db: Database, job_id: str) -> None:
    def archived() -> bool:
        row = JobRepository(db).get(job_id)
        return row is not None and row.events_archived_at is not None

    wait_for(archived, timeout_s=30, what=f"job {job_id} archived")


def _key(e: SseEvent) -> tuple[int, str, Any]:
    return (e.id, e.event, e.data)


@pytest.mark.usefixtures("worker")
def test_an_archived_job_replays_exactly_without_its_redis_stream(
    client: httpx.Client, simulator: Any, settings: Settings, redis_url: str
) -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"
    # A cut mid-stream: two attempts, a reset, ids with a hole between the attempts.
    httpx.post(f"{simulator.base_url}/_sim/faults",
               json={"faults": [{"kind": "cut", "model": model, "after_chunks": 5}]})  # fmt: skip
    body = {"kind": "generate", "model": model, "max_tokens": 40,
            "messages": [{"role": "user", "content": "go"}]}  # fmt: skip
    job = client.post("/v1/jobs", json=body).json()
    before = read_events(client, job["id"], timeout_s=60)
    assert before[-1].event == "done" and "reset" in [e.event for e in before]

    db = Database(settings.database_url)
    rds = redis.Redis.from_url(redis_url)
    try:
        _wait_archived(db, job["id"])
        stream = redis_keys.events_key(job["id"])
        assert 0 < rds.ttl(stream) <= settings.archived_stream_ttl_s
        assert 0 < rds.ttl(redis_keys.meta_key(job["id"])) <= settings.archived_stream_ttl_s
        rds.delete(stream, redis_keys.meta_key(job["id"]))  # what the expiry does

        assert [_key(e) for e in read_events(client, job["id"])] == [_key(e) for e in before]
        for cursor in {before[0].id, before[3].id, before[-3].id, before[-2].id}:
            after = read_events(client, job["id"], last_event_id=cursor)
            assert [_key(e) for e in after] == [_key(e) for e in before if e.id > cursor]
        ended = client.get(f"/v1/jobs/{job['id']}/events", params={"after": before[-1].id})
        assert ended.status_code == 204

        # Deleting the job deletes its log with its data.
        assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
        assert event_logs.load(db, job["id"]) is None
    finally:
        rds.close()
        db.dispose()


@pytest.mark.usefixtures("worker")
def test_a_reader_resuming_into_a_hole_of_the_archive_waits_for_the_reset(
    client: httpx.Client, simulator: Any, settings: Settings
) -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"
    httpx.post(f"{simulator.base_url}/_sim/faults",
               json={"faults": [{"kind": "server_error", "model": model, "times": 1}]})  # fmt: skip
    body = {"kind": "generate", "model": model, "max_tokens": 10,
            "messages": [{"role": "user", "content": "go"}]}  # fmt: skip
    job = client.post("/v1/jobs", json=body).json()
    live = read_events(client, job["id"], timeout_s=60)
    reset = next(e for e in live if e.event == "reset")
    db = Database(settings.database_url)
    try:
        _wait_archived(db, job["id"])
    finally:
        db.dispose()
    # A cursor in the ids the first attempt reserved but never used: the same answer as
    # Redis gave, from the archive.
    hole = reset.id - 1
    assert hole not in {e.id for e in live}
    assert [_key(e) for e in read_events(client, job["id"], after=hole)] == [
        _key(e) for e in live if e.id > hole
    ]


def test_jobs_whose_stream_has_no_end_yet_hold_up_no_one(tmp_path: Path, rds: redis.Redis) -> None:
    # Its own store: the session's workers archive the session's store.
    url = f"sqlite:///{tmp_path / 'archive.db'}"
    upgrade(url)
    db = Database(url)
    try:
        repo = JobRepository(db)
        long_ago = utcnow() - timedelta(seconds=60)
        ids = []
        for i in range(5):
            job = repo.create(tenant="t", kind="generate", model="m", payload={}, meta={})
            with db.engine.begin() as conn:
                conn.execute(update(Job).where(Job.id == job.id).values(
                    status="succeeded", finished_at=long_ago + timedelta(seconds=i),
                    result={"text": ""}, last_event_id=2))  # fmt: skip
            ids.append(job.id)
        # The four oldest lost their streams a minute ago (Redis came back empty); the
        # newest has its whole stream.
        key = redis_keys.events_key(ids[-1])
        rds.xadd(key, {"e": "status", "a": 1, "d": '{"status":"running","attempt":1}'}, id="0-1")
        rds.xadd(key, {"e": "done", "a": 1, "d": '{"status":"succeeded"}'}, id="0-2")
        assert archive.archive_finished(db, rds, stream_ttl_s=60, batch=2) == 1
        assert event_logs.load(db, ids[-1]) is not None
        assert all(event_logs.load(db, job_id) is None for job_id in ids[:-1])
        assert 0 < rds.ttl(key) <= 60
    finally:
        db.dispose()
