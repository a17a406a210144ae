"""Memory: what Redis holds for each finished job.

The whole stack (ops/bench/e2e.py: Redis, SQLite, the simulator at 1,000 tokens/s,
``aijobs api``, one ``aijobs worker`` of ``CONCURRENCY`` threads). After a warm-up (whose
streams are then dropped), Redis's memory (``used_memory_dataset``) and key count are read;
``--memory-jobs`` short generate jobs (``TOKENS`` tokens) are submitted through
``POST /v1/jobs/batch`` and run to the end with the archive off, so their streams are all
there; once the workers are idle the same are read again. Reported: bytes and keys per
finished job, beside the bytes of the events themselves (field values of a sample of the
jobs' streams), so the ratio is Redis's overhead on the payload. Then the worker is
restarted with the archive on and a short ``ARCHIVED_TTL_S`` (600 s by default): once every
job's log has moved to SQL and its stream expired, the same again — what Redis still holds
per finished job — and the SQL bytes of a job's compressed log.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

import httpx
from sqlalchemy import func, select

from aijobs import redis_keys as keys
from aijobs.devtools.harness import Harness, wait_for
from aijobs.store import Database, Job
from aijobs.store.models import EventLog
from ops.bench import e2e
from ops.bench.common import Failed, Workload
from ops.bench.readers_load import API_KEY

TOKENS = 10
CONCURRENCY = 50
BATCH = 500
SAMPLE = 50
TERMINAL = ("succeeded", "failed", "cancelled")
#: How long a finished job's stream outlives its archive here (a short wait, same effect).
ARCHIVED_TTL_S = 3


def used(stack: e2e.Stack) -> tuple[int, int]:
    """Redis ``used_memory_dataset`` (bytes: the data, without the clients' buffers, which
    come and go with connections) and key count, now."""
    rds = stack.redis_client()
    try:
        return int(rds.info("memory")["used_memory_dataset"]), int(rds.dbsize())
    finally:
        rds.close()


def submit_all(api_url: str, jobs: int) -> list[str]:
    """``jobs`` generate jobs in batches of ``BATCH``; their ids."""
    ids: list[str] = []
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {API_KEY}"},
                      timeout=120, trust_env=False) as client:  # fmt: skip
        for start in range(0, jobs, BATCH):
            bodies = [e2e.generate_body(i, TOKENS) for i in range(start, min(jobs, start + BATCH))]
            answer = client.post("/v1/jobs/batch", json={"jobs": bodies})
            if answer.status_code not in (200, 202, 207):
                raise Failed(f"POST /v1/jobs/batch: {answer.status_code} {answer.text[:200]}")
            results = answer.json()["results"]
            ids += [r["job"]["id"] for r in results if r["status"] == 202 and r.get("job")]
    return ids


def payload_bytes(stack: e2e.Stack, ids: list[str]) -> float:
    """Mean bytes of field names and values in the streams of a sample of jobs."""
    rds = stack.redis_client()
    try:
        sample = ids[:: max(1, len(ids) // SAMPLE)][:SAMPLE]
        total = sum(len(k) + len(v) for job_id in sample
                    for _id, fields in rds.xrange(keys.events_key(job_id))
                    for k, v in fields.items())  # fmt: skip
        return total / max(len(sample), 1)
    finally:
        rds.close()


def run(h: Harness, args: argparse.Namespace) -> Workload:
    stack = e2e.start_stack(h, tps=1000.0, tokens=TOKENS)
    stack.settings = {"archive_events": "false"}
    stack.start_workers(1, concurrency=CONCURRENCY)
    api = stack.start_api(1)
    e2e.warm_up(stack, tokens=TOKENS)
    e2e.idle(stack)
    db = Database(stack.database_url)
    finished = select(func.count()).select_from(Job).where(Job.status.in_(TERMINAL))
    archived = select(func.count()).select_from(Job).where(Job.events_archived_at.is_not(None))

    def all_archived() -> bool:  # this run's jobs (the warm-up's streams were dropped)
        with db.session() as s:
            return (s.scalar(archived.where(Job.created_at >= started)) or 0) >= len(ids)

    # The warm-up's streams go first: the baseline is a Redis that holds no job's events.
    with db.session() as s:
        warm_ids = list(s.scalars(select(Job.id)))
    rds = stack.redis_client()
    for job_id in warm_ids:
        rds.delete(keys.events_key(job_id), keys.meta_key(job_id))
    rds.close()
    mem0, keys0 = used(stack)
    with db.session() as s:
        done0 = s.scalar(finished) or 0
    t0 = time.time()
    started = datetime.now(UTC)
    ids = submit_all(api.url, args.memory_jobs)
    if len(ids) != args.memory_jobs:
        raise Failed(f"{len(ids)} jobs accepted of {args.memory_jobs}")

    def all_done() -> bool:
        with db.session() as s:
            return (s.scalar(finished) or 0) - done0 >= len(ids)

    wait_for(all_done, timeout_s=120 + args.memory_jobs / 20, what="the memory jobs",
             interval_s=0.25, watch=stack.workers)  # fmt: skip
    run_s = time.time() - t0
    with db.session() as s:
        failed = s.scalar(select(func.count()).select_from(Job).where(
            Job.id.in_(ids[:1000]), Job.status != "succeeded")) or 0  # fmt: skip
    e2e.idle(stack)
    time.sleep(1.0)  # a last flush of the writers, the feeders' bookkeeping
    mem1, keys1 = used(stack)
    n = len(ids)
    per_job, payload = (mem1 - mem0) / n, payload_bytes(stack, ids)
    # Archived: a worker with the archive on moves every finished job's log to SQL, and
    # the streams expire.
    stack.settings = {"archived_stream_ttl_s": ARCHIVED_TTL_S, "reconcile_interval_s": 1}
    stack.start_workers(1, concurrency=CONCURRENCY)
    wait_for(all_archived, timeout_s=120 + args.memory_jobs / 50, what="the archive",
             interval_s=0.5, watch=stack.workers)  # fmt: skip
    # (A few keys of the fleet's own come and go: locks, the new worker's registration.)
    wait_for(lambda: used(stack)[1] <= keys0 + 5, timeout_s=ARCHIVED_TTL_S + 60,
             what="the archived streams to expire", interval_s=0.5)  # fmt: skip
    mem2, keys2 = used(stack)
    with db.session() as s:
        blob_bytes = s.scalar(select(func.sum(func.length(EventLog.blob)))) or 0
        logs = s.scalar(select(func.count()).select_from(EventLog)) or 1
    db.dispose()
    result = Workload("memory", details={
        "jobs": n, "tokens": TOKENS, "used_memory_before": mem0, "used_memory_after": mem1,
        "keys_before": keys0, "keys_after": keys1, "bytes_per_job": per_job,
        "keys_per_job": (keys1 - keys0) / n, "payload_bytes_per_job": payload,
        "run_s": run_s, "jobs_per_s": n / run_s, "used_memory_archived": mem2,
        "keys_archived": keys2, "sql_bytes_per_log": blob_bytes / logs,
    })  # fmt: skip
    if failed:
        result.problems.append(f"{failed} of the first 1,000 jobs did not succeed")
    label = f"memory {n:,} finished jobs"
    result.add(label, "Redis memory (dataset) per finished job vs its event bytes", per_job,
               payload, "bytes")  # fmt: skip
    result.add(label, "Redis keys per finished job", (keys1 - keys0) / n, None, "", ".2f")
    result.add(label, "Redis memory (dataset) per finished job, archived vs just finished",
               (mem2 - mem0) / n, per_job, "bytes")  # fmt: skip
    result.add(label, "Redis keys per finished job, archived", (keys2 - keys0) / n, None, "",
               ".2f")  # fmt: skip
    result.add(label, "SQL bytes of a job's archived log vs its event bytes", blob_bytes / logs,
               payload, "bytes")  # fmt: skip
    result.add(label, "jobs / s through batch submit and a worker", n / run_s, None, "")
    return result
