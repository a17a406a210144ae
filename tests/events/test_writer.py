"""The event writer on a real Redis: fenced attempts, ids, closing."""

from __future__ import annotations

import uuid

import pytest
import redis

from aijobs.events.writer import EventWriter, Fenced


def _writer(url: str) -> EventWriter:
    return EventWriter(redis.Redis.from_url(url), retention_s=600, maxlen=10_000)


def test_a_stale_attempt_cannot_write_events(redis_url: str, rds: redis.Redis) -> None:
    writer = _writer(redis_url)
    job_id = uuid.uuid4().hex
    writer.begin(job_id, 1, [("status", {"status": "running", "attempt": 1})])
    writer.delta(job_id, 1, "old ")
    writer.flush()
    writer.begin(job_id, 2, [("reset", {"attempt": 2})])
    writer.delta(job_id, 1, "stale")
    writer.emit(job_id, 1, "result", {"text": "stale"})
    writer.flush()
    assert writer.state(job_id, 1).fenced
    writer.delta(job_id, 2, "new")
    last = writer.finish(job_id, 2, [("done", {"status": "succeeded"})])
    entries = rds.xrange(f"aijobs:{{{job_id}}}:events")
    assert [f["e"] for _, f in entries] == ["status", "delta", "reset", "delta", "done"]
    assert last == 5
    with pytest.raises(Fenced, match="already has attempt"):
        writer.begin(job_id, 2, [])


def test_a_new_attempt_starts_above_the_ids_reserved_before_it(
    redis_url: str, rds: redis.Redis
) -> None:
    writer = _writer(redis_url)
    job_id = uuid.uuid4().hex
    writer.begin(job_id, 1, [("status", {"status": "running", "attempt": 1})], reserved=100)
    writer.delta(job_id, 1, "a")
    writer.flush()
    # Attempt 2's reservation starts above attempt 1's (ids 1..100): a jump, behind a reset.
    writer.begin(job_id, 2, [("reset", {"attempt": 2}), ("status", {"status": "running",
                 "attempt": 2})], floor=100, reserved=200)  # fmt: skip
    ids = [int(i.split("-")[1]) for i, _ in rds.xrange(f"aijobs:{{{job_id}}}:events")]
    assert ids == [1, 2, 101, 102]


def test_a_writer_whose_redis_lost_the_job_restores_the_text_behind_a_reset(
    redis_url: str, rds: redis.Redis
) -> None:
    writer = _writer(redis_url)
    job_id = uuid.uuid4().hex
    writer.begin(job_id, 1, [("status", {"status": "running", "attempt": 1})])
    writer.delta(job_id, 1, "one ")
    writer.flush()
    writer.delta(job_id, 1, "two ")
    writer.flush()
    for key in rds.keys(f"aijobs:{{{job_id}}}:*"):  # Redis came back without the job
        rds.delete(key)
    writer.delta(job_id, 1, "three")
    writer.flush()
    entries = rds.xrange(f"aijobs:{{{job_id}}}:events")
    ids = [int(i.split("-")[1]) for i, _ in entries]
    assert ids == [4]  # above every id readers may have seen (1..3)
    assert entries[0][1]["e"] == "reset"
    assert '"text":"one two three"' in entries[0][1]["d"]
    writer.delta(job_id, 1, " four")
    writer.flush()
    assert [f["e"] for _, f in rds.xrange(f"aijobs:{{{job_id}}}:events")] == ["reset", "delta"]
