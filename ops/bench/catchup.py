"""Catch-up: a finished job's whole event log read from the start, through the API vs XRANGE.

A private Redis, a fresh SQLite store and ``aijobs api`` (one process). The job is a row
marked succeeded whose Redis Stream holds ``--catchup-events`` deltas (written one flush
each by the project's ``EventWriter``, so one delta is one event), then ``result`` and
``done``. Ours: one SSE reader (``GET /v1/jobs/{id}/events``, the readers benchmark's raw
protocol, every frame's data parsed and checked: ids 1..last, every piece in order) from
connect to ``done``. Baseline: ``XRANGE`` of the whole stream with redis-py plus
``json.loads`` of every entry's data, in this process. Each is repeated ``REPEATS`` times;
the medians are reported, and the API's CPU per catch-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from array import array
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy import update

from aijobs import redis_keys as keys
from aijobs.devtools.harness import Harness, child_env, tree_cpu
from aijobs.events import archive
from aijobs.events.writer import EventWriter
from aijobs.store import Database, Job, JobRepository, event_logs
from ops.bench.common import Failed, Workload
from ops.bench.readers_load import API_KEY, TENANT, Track, run_sse_reader

MODEL = "gpt-4o-mini"
REPEATS = 3


def write_finished_job(database_url: str, redis_url: str, events: int) -> str:
    """A succeeded job row whose stream holds ``events`` deltas, a result and done."""
    db = Database(database_url)
    payload = {"kind": "generate", "model": MODEL, "messages": []}
    job_id = JobRepository(db).create(tenant=TENANT, kind="generate", model=MODEL,
                                      payload=payload, meta={}).id  # fmt: skip
    client = redis.Redis.from_url(redis_url)
    writer = EventWriter(client, retention_s=3600, maxlen=events + 100)
    writer.begin(job_id, 1, [("status", {"status": "running", "attempt": 1})])
    pieces = []
    for i in range(events):
        piece = f"{i}@{time.time():.6f};"
        pieces.append(piece)
        writer.delta(job_id, 1, piece)
        writer.flush()  # one delta, one event
    writer.finish(job_id, 1, [("result", {"text": "".join(pieces)}),
                              ("done", {"status": "succeeded"})])  # fmt: skip
    client.close()
    now = datetime.now(UTC)
    with db.session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(
            status="succeeded", attempts=1, started_at=now, finished_at=now,
            result={"text": "".join(pieces)}))  # fmt: skip
        s.commit()
    db.dispose()
    return job_id


def archive_job(database_url: str, redis_url: str, job_id: str) -> None:
    """Move the finished job's log to SQL as the workers do, then drop its stream (what
    its expiry does ``AIJOBS_ARCHIVED_STREAM_TTL_S`` later)."""
    db = Database(database_url)
    client = redis.Redis.from_url(redis_url)
    try:
        jobs = event_logs.unarchived(db, finished_before=event_logs.ago(-60), limit=10)
        if archive.archive_jobs(db, client, jobs, stream_ttl_s=60) != 1:
            raise Failed("the finished job was not archived")
        client.delete(keys.events_key(job_id), keys.meta_key(job_id))
    finally:
        client.close()
        db.dispose()


def read_sse(port: int, job_id: str) -> tuple[float, dict[str, Any]]:
    """One reader from the start to ``done``: (seconds, its checked summary)."""
    track = Track(0, array("d"), lambda: None)

    async def one() -> None:
        await run_sse_reader(track, "127.0.0.1", port, job_id, asyncio.Semaphore(1))

    started = time.perf_counter()
    asyncio.run(one())
    return time.perf_counter() - started, track.summary()


def read_xrange(redis_url: str, job_id: str) -> tuple[float, int]:
    """XRANGE of the whole stream and ``json.loads`` of each entry: (seconds, entries)."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.ping()  # connected before the clock starts, as the API's pool is
        started = time.perf_counter()
        entries = client.xrange(keys.events_key(job_id))
        for _id, fields in entries:
            json.loads(fields[b"d"])
        return time.perf_counter() - started, len(entries)
    finally:
        client.close()


def run(h: Harness, args: argparse.Namespace) -> Workload:
    server = h.start_redis()
    database_url = h.sqlite_url()
    job_id = write_finished_job(database_url, server.url, args.catchup_events)
    env = child_env(
        redis_url=server.url,
        database_url=database_url,
        aijobs={"api_keys": f"{TENANT}:{API_KEY}", "log_level": "WARNING"},
    )
    api = h.start_api(env)
    read_sse(api.port, job_id)  # warm-up: imports, pools; not measured
    ours, api_cpu, problems = [], [], []
    for _ in range(REPEATS):
        cpu0 = tree_cpu(api.pid)
        seconds, summary = read_sse(api.port, job_id)
        api_cpu.append((tree_cpu(api.pid) - cpu0).total)
        ours.append(seconds)
        if summary["errors"] or summary["pieces"] != args.catchup_events:
            problems.append(f"reader: {summary['pieces']} pieces, {summary['errors'][:2]}")
    base = [read_xrange(server.url, job_id) for _ in range(REPEATS)]
    if base[0][1] != args.catchup_events + 3:
        raise Failed(f"the stream holds {base[0][1]} entries, not {args.catchup_events + 3}")
    # The same job once its log moved to SQL and its stream expired: served from the row.
    archive_job(database_url, server.url, job_id)
    read_sse(api.port, job_id)  # warm-up of the archived path
    archived = []
    for _ in range(REPEATS):
        seconds, summary = read_sse(api.port, job_id)
        archived.append(seconds)
        if summary["errors"] or summary["pieces"] != args.catchup_events:
            problems.append(f"archived reader: {summary['pieces']} pieces, {summary['errors'][:2]}")
    ours_s, base_s = statistics.median(ours), statistics.median(s for s, _ in base)
    result = Workload("catchup", problems=problems[:5], details={
        "events": args.catchup_events, "sse_s": ours, "xrange_s": [s for s, _ in base],
        "api_cpu_s": api_cpu, "median_sse_s": ours_s, "median_xrange_s": base_s,
        "archived_sse_s": archived, "median_archived_sse_s": statistics.median(archived),
    })  # fmt: skip
    label = f"catch-up {args.catchup_events:,} events"
    result.add(label, "read from the start (SSE via API vs XRANGE + json.loads)",
               ours_s * 1e3, base_s * 1e3, "ms", ",.1f")  # fmt: skip
    result.add(label, "read from the start, archived in SQL (SSE via API vs XRANGE + json)",
               statistics.median(archived) * 1e3, base_s * 1e3, "ms", ",.1f")  # fmt: skip
    result.add(label, "events / s", args.catchup_events / ours_s, args.catchup_events / base_s)
    result.add(label, "API CPU per event", statistics.median(api_cpu) / args.catchup_events * 1e6,
               None, "µs", ".1f")  # fmt: skip
    return result
