"""The event writer under Redis faults: a lost reply, a job whose write fails."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator

import pytest
import redis

from aijobs.devtools.redis_server import RedisServer
from aijobs.events.writer import EventWriter
from tests.faultproxy import FaultProxy


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(redis_server.port)
    yield fault_proxy
    fault_proxy.close()


def _writer(url: str) -> EventWriter:
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    return EventWriter(client, retention_s=600, maxlen=10_000, flush_interval_s=60)


def _deltas(rds: redis.Redis, job_id: str) -> list[tuple[int, str]]:
    entries = rds.xrange(f"aijobs:{{{job_id}}}:events")
    return [(int(i.split("-")[1]), f["d"]) for i, f in entries if f["e"] == "delta"]


def test_a_flush_retried_after_a_lost_reply_writes_nothing_twice(
    proxy: FaultProxy, rds: redis.Redis
) -> None:
    writer = _writer(proxy.url)
    job_id = uuid.uuid4().hex
    writer.begin(job_id, 1, [("status", {"status": "running", "attempt": 1})])
    writer.delta(job_id, 1, "one ")
    writer.flush()
    writer.delta(job_id, 1, "two ")
    # Redis runs the write; its answer never arrives (the flush is one EVALSHA pipeline).
    proxy.drop_after_reply(skip=0)
    with pytest.raises(redis.RedisError):
        writer.flush()
    assert proxy.dropped_replies == 1
    writer.delta(job_id, 1, "three")
    writer.flush()  # the retry, on a new connection
    texts = [data for _, data in _deltas(rds, job_id)]
    assert "".join(texts).count("two") == 1, texts
    ids = [int(i.split("-")[1]) for i, _ in rds.xrange(f"aijobs:{{{job_id}}}:events")]
    assert ids == list(range(1, len(ids) + 1))


def test_one_jobs_failing_write_does_not_stall_or_double_the_others(
    redis_url: str, rds: redis.Redis
) -> None:
    writer = _writer(redis_url)
    broken, healthy = uuid.uuid4().hex, uuid.uuid4().hex
    for job_id in (broken, healthy):
        writer.begin(job_id, 1, [("status", {"status": "running", "attempt": 1})])
    # The broken job's meta key is no longer a hash: its script call errors in Redis.
    rds.delete(f"aijobs:{{{broken}}}:meta")
    rds.set(f"aijobs:{{{broken}}}:meta", "not a hash")
    for round_ in range(3):
        writer.delta(broken, 1, f"b{round_} ")
        writer.delta(healthy, 1, f"h{round_} ")
        with contextlib.suppress(redis.RedisError):
            writer.flush()
    texts = "".join(data for _, data in _deltas(rds, healthy))
    for round_ in range(3):
        assert texts.count(f"h{round_} ") == 1, texts


def test_a_redis_that_lost_its_scripts_gets_the_write_in_the_same_flush(
    redis_url: str, rds: redis.Redis
) -> None:
    # The flush sends EVALSHA without asking SCRIPT EXISTS first; a Redis restarted
    # empty (or SCRIPT FLUSHed) answers NOSCRIPT, and the flush loads and writes again.
    writer = _writer(redis_url)
    job_id = uuid.uuid4().hex
    writer.begin(job_id, 1, [("status", {"status": "running", "attempt": 1})])
    for round_ in range(3):
        writer.delta(job_id, 1, f"t{round_} ")
        rds.script_flush()
        writer.flush()
        texts = "".join(json.loads(data)["text"] for _, data in _deltas(rds, job_id))
        assert texts == "".join(f"t{i} " for i in range(round_ + 1)), texts
    assert not writer.state(job_id, 1).broken  # NOSCRIPT is not the job's failure
