"""Focused repro of a gap the chaos run found (seed 3: a generate job whose stream ran
while Redis came back empty; its readers, and a fresh reader from the start, held text
that was not its result's).

When Redis lost a job's events, the writer sends the unconfirmed batches again behind a
``reset`` carrying the attempt's text so far (``_Log.restore_batch``), and that text is
the whole transcript — including text the job thread buffered *after* the flush sealed
its batches, while the pipeline was on the wire. That text is still in the buffer, so
the next flush writes it once more as a ``delta`` after the reset: a reader holds it
twice. The job thread appending while a flush is in flight is the normal case (they are
different threads); here it is made to happen at exactly that moment.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from aijobs import redis_keys
from aijobs.devtools.redis_server import RedisServer, start_redis
from aijobs.events.writer import EventWriter
from tests.support import SseEvent, text_of

JOB = "restore-race-job"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    running = start_redis(tmp_path / "redis")
    yield running
    running.stop()


def _during_next_execute(client: redis.Redis, action: Callable[[], None]) -> None:
    """Run ``action`` while the next pipeline of ``client`` is on the wire (after its
    commands were queued, before its answers are read)."""
    make = client.pipeline
    pending = [action]

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = make(*args, **kwargs)
        execute = pipe.execute

        def execute_then(*eargs: Any, **ekwargs: Any) -> Any:
            while pending:
                pending.pop()()
            return execute(*eargs, **ekwargs)

        pipe.execute = execute_then  # type: ignore[method-assign]
        return pipe

    client.pipeline = pipeline  # type: ignore[method-assign]


def _stream(client: redis.Redis) -> list[SseEvent]:
    entries = client.xrange(redis_keys.events_key(JOB))
    return [SseEvent(redis_keys.event_id_of(i), f[b"e"].decode(), json.loads(f[b"d"]))
            for i, f in entries]  # fmt: skip


def test_text_buffered_during_a_restore_is_not_sent_twice(server: RedisServer) -> None:
    client = redis.Redis(port=server.port)
    writer = EventWriter(client, retention_s=600, maxlen=10_000)
    try:
        writer.begin(JOB, 1, [("status", {"status": "running", "attempt": 1})])
        writer.delta(JOB, 1, "Hello")
        writer.flush()
        client.flushall()  # Redis came back empty (a restart without its data)
        writer.delta(JOB, 1, " big")
        # The job thread streams on while the flusher's pipeline is out.
        _during_next_execute(client, lambda: writer.delta(JOB, 1, " world"))
        writer.flush()  # finds the loss: the batch goes again behind a reset
        writer.flush()  # and whatever was buffered since
        events = _stream(client)
        assert events and events[0].event == "reset", events
        assert text_of(events) == "Hello big world", events
    finally:
        with contextlib.suppress(redis.RedisError):
            client.close()
