"""Streaming jobs: ``aijobs worker`` (threads pool) against a naive Celery worker.

Our points sweep the number of streams (jobs = threads, one process) and the number of
worker processes sharing the queue; the naive baseline (ops/bench/naive_worker.py: prefork
``-c 2``, the SDK's typed chunks, one XADD+PUBLISH round trip per token) runs once in the
same stack. Jobs are rows inserted in SQL and pushed onto the fair queue, as the API does.
Each job's start and finish come from SQL (ours) or its Redis hash (naive); worker CPU is
user+sys of the worker process trees between the first enqueue and the last finish. Ours
is verified: every job succeeded once, its stream's deltas concatenate to ``result.text``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis
from sqlalchemy import func, select

from aijobs.devtools.harness import (
    CpuMeter,
    Harness,
    Service,
    Worker,
    child_env,
    max_overlap,
    percentiles,
    wait_for,
)
from aijobs.fairqueue import FairQueue, QueuedJob
from aijobs.schemas import GenerateInput
from aijobs.store import Database, Job, JobRepository
from ops.bench import naive_worker
from ops.bench.common import Workload, role_argv

MODEL = "gpt-4o-mini"
PROVIDER_KEY = "sk-bench-not-a-real-key"
TERMINAL = ("succeeded", "failed", "cancelled")
LEASES = "aijobs:{*}:lease"


@dataclass
class Point:
    """One measured run: who, how many streams and processes, and what happened."""

    name: str
    streams: int
    processes: int
    concurrency: int
    enqueued_at: float = 0.0
    intervals: list[tuple[float, float]] = field(default_factory=list)
    chunks: int = 0
    redis_entries: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)
    provider_streams_max: int | None = None
    verified: int = 0
    problems: list[str] = field(default_factory=list)

    def figures(self, ideal_s: float) -> dict[str, Any]:
        """Throughput, CPU per chunk, job times (all derived from intervals and CPU)."""
        if not self.intervals:
            return {"name": self.name, "streams": self.streams, "finished": 0}
        starts, ends = zip(*self.intervals, strict=True)
        durations = [e - s for s, e in self.intervals]
        busy = max(ends) - min(starts)
        chunks = max(self.chunks, 1)
        worker_cpu = self.cpu_s.get("worker", 0.0)
        return {
            "name": self.name,
            "streams": self.streams,
            "processes": self.processes,
            "concurrency": self.concurrency,
            "finished": len(self.intervals),
            "verified": self.verified,
            "wall_s": max(ends) - self.enqueued_at,
            "busy_s": busy,
            "in_flight_max": max_overlap(self.intervals),
            "in_flight_mean": sum(durations) / busy if busy > 0 else 0.0,
            "provider_streams_max": self.provider_streams_max,
            "chunks": self.chunks,
            "chunks_per_s": self.chunks / busy if busy > 0 else 0.0,
            "chunks_per_redis_entry": self.chunks / max(self.redis_entries, 1),
            "cpu_s": self.cpu_s,
            "worker_cpu_per_chunk_us": worker_cpu / chunks * 1e6,
            "redis_cpu_per_chunk_us": self.cpu_s.get("redis", 0.0) / chunks * 1e6,
            "simulator_cpu_per_chunk_us": self.cpu_s.get("simulator", 0.0) / chunks * 1e6,
            "mean_job_s": statistics.fmean(durations),
            "job_s": percentiles(durations).as_dict(),
            "ideal_job_s": ideal_s,
            "job_time_ratio": statistics.fmean(durations) / ideal_s,
            "mean_queue_wait_s": statistics.fmean(s - self.enqueued_at for s in starts),
            "problems": self.problems,
        }


@dataclass
class Stack:
    """Redis, the job store and the simulator shared by every point of the run."""

    h: Harness
    redis_url: str
    redis_pid: int
    database_url: str
    sim: Service
    args: argparse.Namespace

    def env(self) -> dict[str, str]:
        return child_env(
            redis_url=self.redis_url,
            database_url=self.database_url,
            openai_base_url=f"{self.sim.url}/v1",
            openai_api_key=PROVIDER_KEY,
            aijobs={"log_level": "WARNING"},
            extra={"NAIVE_REDIS_MODE": "pipeline"},
        )

    def sim_call(self, method: str, path: str) -> dict[str, Any]:
        answer = httpx.request(method, f"{self.sim.url}/_sim/{path}", timeout=10, trust_env=False)
        answer.raise_for_status()
        return dict(answer.json())

    def meter(self, workers: list[Worker]) -> CpuMeter:
        pids = {f"worker-{i}": w.pid for i, w in enumerate(workers)}
        return CpuMeter(pids | {"redis": self.redis_pid, "simulator": self.sim.pid})

    def timeout_s(self, jobs: int, concurrency: int) -> float:
        ideal = self.args.tokens / self.args.tps
        return 60.0 + 3.0 * ideal * math.ceil(jobs / max(concurrency, 1))


def cpu_seconds(used: dict[str, Any]) -> dict[str, float]:
    """CPU seconds per tree, plus ``worker``: every worker process summed."""
    out = {name: t.total for name, t in used.items()}
    out["worker"] = sum(v for k, v in out.items() if k.startswith("worker-"))
    return out


def messages(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Write a short story about lighthouse number {i}."}]


def leases(rds: redis.Redis) -> int:
    return sum(1 for _ in rds.scan_iter(match=LEASES, count=1000))


def run_ours(stack: Stack, streams: int, processes: int) -> Point:
    """``streams`` jobs on ``processes`` workers of ``ceil(streams / processes)`` threads."""
    args = stack.args
    per_process = math.ceil(streams / processes)
    point = Point("ours", streams, processes, per_process * processes)
    run = uuid.uuid4().hex[:6]
    env = stack.env()
    workers = stack.h.start_workers(env, processes, queues="generate", concurrency=per_process,
                                    name=f"ours-{streams}x{processes}-{run}")  # fmt: skip
    db = Database(stack.database_url)
    repo = JobRepository(db)
    rds = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    queue = FairQueue(rds)

    def enqueue(job_id: str, tenant: str) -> None:
        queue.push(QueuedJob(job_id, "generate", tenant))

    def create(tenant: str, i: int, tokens: int) -> str:
        body = GenerateInput(kind="generate", model=MODEL, messages=messages(i), max_tokens=tokens)
        payload = body.model_dump(mode="json", by_alias=True, exclude={"metadata"})
        return repo.create(tenant=tenant, kind="generate", model=MODEL, payload=payload, meta={}).id

    def finished(tenant: str) -> int:
        query = select(func.count()).select_from(Job)
        with db.session() as s:
            return s.scalar(query.where(Job.tenant == tenant, Job.status.in_(TERMINAL))) or 0

    try:
        # Warm-up: the first jobs build each worker's clients and connections; not measured.
        warm = f"warm-{run}"
        for i in range(processes):
            enqueue(create(warm, i, 5), warm)
        wait_for(lambda: finished(warm) >= processes and leases(rds) == 0, timeout_s=60,
                 what="our warm-up jobs", interval_s=0.1, watch=workers)  # fmt: skip
        tenant = f"bench-{run}"
        job_ids = [create(tenant, i, args.tokens) for i in range(streams)]
        stack.sim_call("POST", "reset")
        meter = stack.meter(workers)
        meter.start()
        point.enqueued_at = time.time()
        for job_id in job_ids:
            enqueue(job_id, tenant)
        wait_for(lambda: finished(tenant) >= streams and leases(rds) == 0,
                 timeout_s=stack.timeout_s(streams, point.concurrency), what="our jobs",
                 interval_s=0.1, watch=workers)  # fmt: skip
        point.cpu_s = cpu_seconds(meter.stop())
        point.provider_streams_max = stack.sim_call("GET", "stats").get("max_in_flight")
        verify_ours(point, db, rds, job_ids, args.tokens)
    finally:
        for worker in workers:
            worker.stop()
        rds.close()
        db.dispose()
    return point


def verify_ours(point: Point, db: Database, rds: redis.Redis, ids: list[str], tokens: int) -> None:
    """Every job succeeded in one attempt; its stream's deltas concatenate to its text."""
    with db.session() as s:
        rows = {j.id: j for j in s.scalars(select(Job).where(Job.id.in_(ids)))}
    for job_id in ids:
        job = rows.get(job_id)
        if job is None or job.status != "succeeded" or not job.started_at or not job.finished_at:
            point.problems.append(f"job {job_id}: {job.status if job else 'missing'}")
            continue
        point.intervals.append((job.started_at.timestamp(), job.finished_at.timestamp()))
        used = int((job.usage or {}).get("completion_tokens") or 0)
        point.chunks += used
        entries = rds.xrange(f"aijobs:{{{job_id}}}:events")
        point.redis_entries += len(entries)
        deltas = [json.loads(f["d"])["text"] for _, f in entries if f["e"] == "delta"]
        done = [json.loads(f["d"]).get("status") for _, f in entries if f["e"] == "done"]
        if used != tokens:
            point.problems.append(f"job {job_id}: {used} tokens, not {tokens}")
        elif "".join(deltas) != (job.result or {}).get("text") or done != ["succeeded"]:
            point.problems.append(f"job {job_id}: stream deltas != result.text, or no done")
        elif job.attempts != 1:
            point.problems.append(f"job {job_id}: {job.attempts} attempts")
        else:
            point.verified += 1


def run_naive(stack: Stack) -> Point:
    """The baseline: ``--baseline-jobs`` jobs on prefork ``-c 2``, one round trip a token."""
    args = stack.args
    conc = args.baseline_concurrency
    point = Point("naive", args.baseline_jobs, 1, conc)
    hostname = f"naive-{uuid.uuid4().hex[:6]}@127.0.0.1"
    argv = role_argv("naive_worker", "--concurrency", conc, "--hostname", hostname)
    worker = stack.h.start_celery_worker("naive", argv, env=stack.env(), hostname=hostname)
    app = naive_worker.create_app(stack.redis_url)
    rds = redis.Redis.from_url(stack.redis_url, decode_responses=True)

    def send(job_id: str, i: int, tokens: int) -> None:
        app.send_task(naive_worker.TASK_NAME, args=[job_id, MODEL, messages(i), tokens],
                      queue=naive_worker.QUEUE)  # fmt: skip

    def done_count() -> int:
        return int(rds.get(naive_worker.DONE_KEY) or 0)

    try:
        # Warm-up: short jobs until every pool process ran one (built its clients).
        pids: set[str] = set()
        for _ in range(5):
            rds.delete(naive_worker.DONE_KEY)
            warm = [f"warm-{uuid.uuid4().hex}" for _ in range(2 * conc)]
            for i, job_id in enumerate(warm):
                send(job_id, i, 5)
            wait_for(lambda: done_count() >= 2 * conc, timeout_s=60,
                     what="the baseline's warm-up", interval_s=0.1, watch=[worker])  # fmt: skip
            pids |= {rds.hget(naive_worker.job_key(j), "pid") or "" for j in warm}
            if len(pids) >= conc:
                break
        rds.delete(naive_worker.DONE_KEY)
        ids = [uuid.uuid4().hex for _ in range(args.baseline_jobs)]
        stack.sim_call("POST", "reset")
        meter = stack.meter([worker])
        meter.start()
        point.enqueued_at = time.time()
        for i, job_id in enumerate(ids):
            send(job_id, i, args.tokens)
        wait_for(lambda: done_count() >= len(ids), timeout_s=stack.timeout_s(len(ids), conc),
                 what="the baseline's jobs", interval_s=0.1, watch=[worker])  # fmt: skip
        point.cpu_s = cpu_seconds(meter.stop())
        point.provider_streams_max = stack.sim_call("GET", "stats").get("max_in_flight")
        for job_id in ids:
            rec = rds.hgetall(naive_worker.job_key(job_id))
            if not rec:
                point.problems.append(f"naive job {job_id}: no record")
                continue
            point.intervals.append((float(rec["started"]), float(rec["finished"])))
            point.chunks += int(rec["tokens"])
            entries = rds.xrange(naive_worker.events_key(job_id))
            point.redis_entries += len(entries)
            deltas = [json.loads(f["d"])["text"] for _, f in entries if f["e"] == "delta"]
            if int(rec["tokens"]) != args.tokens or "".join(deltas) != rec["text"]:
                point.problems.append(f"naive job {job_id}: tokens or stream wrong")
            else:
                point.verified += 1
    finally:
        worker.stop()
        rds.close()
        app.close()
    return point


def plan(args: argparse.Namespace) -> list[tuple[int, int]]:
    """(streams, processes) of every point of ours: the stream sweep, then the process one."""
    points = [(s, 1) for s in args.streams]
    points += [(args.process_streams, p) for p in args.processes if (args.process_streams, p)
               not in points]  # fmt: skip
    return points


def run(h: Harness, args: argparse.Namespace) -> Workload:
    """Every point of ours and the naive baseline, in one stack."""
    server = h.start_redis()
    sim = h.start_simulator(config={"tokens_per_second": args.tps, "max_tokens": args.tokens,
                                    "latency_ms": 0, "rpm_limit": 0})  # fmt: skip
    stack = Stack(h, server.url, server.process.pid, h.sqlite_url(), sim, args)
    ideal = args.tokens / args.tps
    result = Workload("streaming")
    naive = run_naive(stack).figures(ideal)
    ours = [run_ours(stack, s, p).figures(ideal) for s, p in plan(args)]
    result.details = {"ideal_job_s": ideal, "tokens": args.tokens, "tps": args.tps,
                      "naive": naive, "ours": ours}  # fmt: skip
    base_label = f"naive prefork -c{args.baseline_concurrency}, {args.baseline_jobs} jobs"
    for fig in [*ours, naive]:
        for problem in fig.get("problems", [])[:5]:
            result.problems.append(f"{fig['name']} {fig['streams']} streams: {problem}")
        if not fig.get("finished"):
            result.problems.append(f"{fig['name']} {fig['streams']} streams: no job finished")
    if not naive.get("finished"):
        return result
    for fig in ours:
        if not fig.get("finished"):
            continue
        label = f"streaming {fig['streams']} x{fig['processes']}p"
        result.add(
            label,
            "jobs verified",
            f"{fig['verified']}/{fig['streams']}",
            f"{naive['verified']}/{naive['streams']} ({base_label})",
        )
        result.add(label, "chunks relayed / s", fig["chunks_per_s"], naive["chunks_per_s"])
        result.add(
            label,
            "worker CPU per chunk",
            fig["worker_cpu_per_chunk_us"],
            naive["worker_cpu_per_chunk_us"],
            "µs",
        )
        result.add(
            label,
            "Redis CPU per chunk",
            fig["redis_cpu_per_chunk_us"],
            naive["redis_cpu_per_chunk_us"],
            "µs",
            ".1f",
        )
        result.add(
            label,
            "mean job time / ideal",
            fig["job_time_ratio"],
            naive["job_time_ratio"],
            f"ideal {ideal:.2f} s",
            ".2f",
        )
        result.add(label, "jobs in flight max / mean",
                   f"{fig['in_flight_max']} / {fig['in_flight_mean']:.1f}",
                   f"{naive['in_flight_max']} / {naive['in_flight_mean']:.1f}")  # fmt: skip
    return result


def chart_series(result: Workload) -> dict[str, Any]:
    """What the chart draws: ours by streams (one process) and by processes; naive flat."""
    ours = [f for f in result.details.get("ours", []) if f.get("finished")]
    naive = result.details.get("naive", {})
    by_streams = sorted((f for f in ours if f["processes"] == 1), key=lambda f: f["streams"])
    streams_at = max((f["streams"] for f in ours if f["processes"] > 1), default=None)
    by_procs = sorted((f for f in ours if f["streams"] == streams_at), key=lambda f: f["processes"])
    return {"by_streams": by_streams, "by_processes": by_procs, "naive": naive}
