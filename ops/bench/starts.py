"""Job starts: what one job costs a worker before and around its tokens, against the Celery floor.

A burst of ``--burst`` short jobs (``START_TOKENS`` tokens at ``START_TPS``, so the call
itself is brief) POSTed at once to ``aijobs api``, each followed by an SSE reader, run by
one ``aijobs worker`` of ``--burst`` threads: worker CPU per job (claim, lease, fence,
events, the call, the record, Celery's delivery and Flower's events), API CPU per job (the
POST and its reader), job starts a second, POST → ``running``.

The baselines (ops/bench/celery_floor.py), in the same run: a bare Celery worker with our
CPU-relevant settings (threads pool, late acks, prefetch 1, task events) running the same
burst sent with ``send_task`` — once doing nothing (``noop``: Celery's own cost per job),
once making the same provider call the way ours does (``call``). Ours over ``call`` is
what the job system adds per job: the record, the events, the fencing, the fair queue.
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

import redis

from aijobs.devtools.harness import CpuMeter, Harness, wait_for
from ops.bench import celery_floor, e2e
from ops.bench.common import Failed, Workload, role_argv
from ops.bench.dispatch import ms, verify

START_TOKENS = 2
START_TPS = 1000.0


def run_ours(stack: e2e.Stack, jobs: int) -> dict[str, Any]:
    stack.start_workers(1, concurrency=jobs)
    api = stack.start_api(1)
    e2e.warm_up(stack)
    e2e.idle(stack)
    stack.sim_call("POST", "reset")
    meter = stack.meter()
    meter.start()
    followed = e2e.burst(api.port, jobs, START_TOKENS, timeout_s=300)
    cpu = e2e.cpu_totals(meter)
    checked = verify(stack.database_url, followed, START_TOKENS)
    ok = [f for f in followed if f.finished and f.running]
    if len(ok) < jobs:
        raise Failed(f"{jobs - len(ok)} of the burst did not finish: {checked['problems'][:3]}")
    span = max(f.running for f in ok) - min(f.posted for f in ok)
    for worker in stack.workers:
        worker.stop()
    stack.workers = []
    return {
        "jobs": jobs,
        "verified": jobs - len(checked["problems"]),
        "problems": checked["problems"],
        "worker_cpu_ms": cpu["worker"] / jobs * 1e3,
        "api_cpu_ms": cpu["api"] / jobs * 1e3,
        "starts_per_s": jobs / span if span > 0 else 0.0,
        "running_ms": ms([f.running - f.posted for f in ok]),
    }


def run_floor(stack: e2e.Stack, jobs: int, mode: str) -> dict[str, Any]:
    hostname = f"floor-{mode}-{uuid.uuid4().hex[:6]}@127.0.0.1"
    argv = role_argv("celery_floor", "--concurrency", jobs, "--mode", mode,
                     "--hostname", hostname)  # fmt: skip
    worker = stack.h.start_celery_worker(f"floor-{mode}", argv, env=stack.env(),
                                         hostname=hostname)  # fmt: skip
    app = celery_floor.create_app(stack.redis.url)
    rds = redis.Redis.from_url(stack.redis.url, decode_responses=True)

    def burst(count: int) -> float:
        rds.delete(celery_floor.DONE_KEY)
        sent = time.time()
        with app.producer_or_acquire() as producer, producer.batch():
            for i in range(count):
                app.send_task(celery_floor.TASK_NAME, args=[i, START_TOKENS],
                              queue=celery_floor.QUEUE, producer=producer)  # fmt: skip
        wait_for(lambda: rds.hlen(celery_floor.DONE_KEY) >= count, timeout_s=120,
                 what=f"the floor's {mode} jobs", interval_s=0.05, watch=[worker])  # fmt: skip
        return sent

    try:
        burst(8)  # warm-up: imports, connections, the SDK client
        stack.sim_call("POST", "reset")
        meter = CpuMeter({"worker": worker.pid})
        meter.start()
        sent = burst(jobs)
        cpu = meter.stop()["worker"].total
        done = [float(v) for v in rds.hgetall(celery_floor.DONE_KEY).values()]
    finally:
        rds.close()
        worker.stop()
    span = max(done) - sent
    return {"mode": mode, "jobs": jobs, "worker_cpu_ms": cpu / jobs * 1e3,
            "jobs_per_s": jobs / span if span > 0 else 0.0,
            "done_ms": ms([d - sent for d in done])}  # fmt: skip


def run(h: Harness, args: argparse.Namespace) -> Workload:
    """The floor (noop, call), then ours, on one stack."""
    stack = e2e.start_stack(h, START_TPS, START_TOKENS)
    floors = {mode: run_floor(stack, args.burst, mode) for mode in ("noop", "call")}
    ours = run_ours(stack, args.burst)
    return report(args, ours, floors)


def report(args: argparse.Namespace, ours: dict[str, Any],
           floors: dict[str, dict[str, Any]]) -> Workload:  # fmt: skip
    result = Workload("starts", details={"ours": ours, "floor": floors})
    result.problems += ours["problems"][:5]
    noop, call = floors["noop"], floors["call"]
    label = f"starts, {args.burst} short jobs"
    base = "Celery threads worker, task makes the same call"
    result.add(label, "jobs verified", f"{ours['verified']}/{ours['jobs']}", base)
    result.add(label, "worker CPU per job (ours vs Celery + call)", ours["worker_cpu_ms"],
               call["worker_cpu_ms"], "ms", ".2f")  # fmt: skip
    result.add(label, "worker CPU per job (ours vs Celery no-op)", ours["worker_cpu_ms"],
               noop["worker_cpu_ms"], "ms", ".2f")  # fmt: skip
    result.add(label, "API CPU per job (POST + its SSE reader)", ours["api_cpu_ms"], None,
               "ms", ".2f")  # fmt: skip
    result.add(label, "job starts / s (ours: POST → running; Celery: send → done)",
               ours["starts_per_s"], call["jobs_per_s"])  # fmt: skip
    for q in ("p50", "p99"):
        result.add(label, f"POST → running {q} (Celery + call: send → done)",
                   ours["running_ms"][q], call["done_ms"][q], "ms", ".1f")  # fmt: skip
    return result
