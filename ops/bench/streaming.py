"""Streaming benchmark: our worker vs a naive Celery baseline, same workload, one run.

    python ops/bench/streaming.py [--jobs 200] [--baseline-jobs 12] [--tokens 200]
                                  [--tps 50] [--concurrency N] [--processes P] [--json PATH]

Starts a private Redis, a fresh SQLite job store and the simulator (its own process,
pacing ``--tps`` tokens per second), then runs, one after the other:

* ours: ``aijobs worker --queues generate --concurrency N`` (threads pool); jobs are
  inserted in SQL and enqueued by task name, as the API does. With ``--processes P``,
  P such workers (each ``--concurrency ceil(N/P)`` and its own ``--hostname``) share
  the queue, and their CPU is summed;
* naive: ops/bench/naive_worker.py, prefork ``-c 2``, typed SDK chunks and one Redis
  round trip (XADD + PUBLISH, pipelined) per token.

Each job's start and finish come from SQL (ours) or from the job's Redis hash (naive);
jobs in flight, chunks per second and mean job time are derived from them. Worker CPU
is user+sys of the worker process(es) and all their children, read (psutil) right before
the first job is enqueued and right after the last one finished. Ours is also checked: every
job ``succeeded`` and its stream's deltas concatenate to ``result.text``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis
from celery import Celery
from sqlalchemy import func, select

from aijobs.devtools.redis_server import RedisServer, free_port, start_redis
from aijobs.schemas import GenerateInput
from aijobs.settings import Settings
from aijobs.store import Database, Job, JobRepository
from aijobs.store.migrate import upgrade
from aijobs.worker.celery_app import TASK_NAMES, create_celery_app

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

import naive_worker  # noqa: E402  (ops/bench is not a package)

MODEL = "gpt-4o-mini"
API_KEY = "sk-bench-not-a-real-key"
TERMINAL = ("succeeded", "failed", "cancelled")
LEASE_PATTERN = "aijobs:{*}:lease"
WARMUP_JOBS = 1


class BenchError(RuntimeError):
    """The benchmark could not run to the end (a process died, a phase timed out)."""


# -- processes ---------------------------------------------------------------------------


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a child: ours, without proxies (all traffic is to 127.0.0.1)."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Child:
    """A process we started: its Popen, name and log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (warm shutdown), then SIGKILL the process and its children, by PID."""
        if not self.alive():
            return
        try:
            kids = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            kids = []
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for kid in kids:
            with contextlib.suppress(psutil.Error):
                if kid.is_running():
                    kid.kill()


def spawn(name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> Child:
    log_path = log_dir / f"{name}.log"
    log = log_path.open("wb")
    try:
        process = subprocess.Popen(
            argv,
            env=env,
            cwd=str(ROOT),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only us; we stop children by PID
        )
    finally:
        log.close()
    return Child(name, process, log_path)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, sys) CPU seconds of a process and all its live (and reaped) descendants."""
    user = system = 0.0
    proc = psutil.Process(pid)
    procs = [proc]
    with contextlib.suppress(psutil.Error):
        procs += proc.children(recursive=True)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            user += t.user + t.children_user
            system += t.system + t.children_system
    return user, system


def aijobs_command() -> list[str]:
    script = Path(sys.executable).with_name("aijobs")
    return [str(script)] if script.exists() else [sys.executable, "-m", "aijobs.cli"]


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, *kids: Child) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        for kid in kids:
            if not kid.alive():
                raise BenchError(f"{kid.name} exited ({kid.process.returncode}):\n{kid.log_tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.1)


def start_simulator(args: argparse.Namespace, log_dir: Path) -> tuple[Child, str]:
    port = free_port()
    env = child_env(
        {
            "AIJOBS_SIM_TOKENS_PER_SECOND": str(args.tps),
            "AIJOBS_SIM_MAX_TOKENS": str(args.tokens),
            "AIJOBS_SIM_LATENCY_MS": str(args.latency_ms),
            "AIJOBS_SIM_RPM_LIMIT": "0",
        }
    )
    argv = [*aijobs_command(), "simulator", "--host", "127.0.0.1", "--port", str(port)]
    sim = spawn("simulator", argv, env, log_dir)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/_sim/stats", timeout=1.0, trust_env=False).is_success
        except httpx.HTTPError:
            return False

    wait_until(up, 30, "the simulator", sim)
    return sim, base


def wait_worker_ready(app: Celery, hostname: str, kid: Child, timeout_s: float = 60) -> None:
    def ready() -> bool:
        return bool(app.control.ping(destination=[hostname], timeout=0.5))

    wait_until(ready, timeout_s, f"worker {hostname}", kid)


# -- figures -----------------------------------------------------------------------------


@dataclass
class Phase:
    """What one worker did with its share of the workload."""

    name: str
    label: str
    jobs: int
    concurrency: int
    enqueued_at: float = 0.0
    intervals: list[tuple[float, float]] = field(default_factory=list)
    chunks: int = 0
    redis_entries: int = 0
    worker_cpu_s: float = 0.0
    worker_cpu_sys_s: float = 0.0
    redis_cpu_s: float = 0.0
    simulator_cpu_s: float = 0.0
    sampled_in_flight: list[int] = field(default_factory=list)
    processes: int = 1
    worker_cpu_by_process_s: list[float] = field(default_factory=list)
    provider: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    verified_jobs: int = 0

    def measured(self, before: dict[str, tuple[float, float]], after: dict) -> None:
        """Record the CPU used between two ``Context.cpu_snapshot`` readings."""

        def used(name: str) -> float:
            return sum(after[name]) - sum(before[name])

        self.worker_cpu_s = used("worker")
        self.worker_cpu_sys_s = after["worker"][1] - before["worker"][1]
        self.worker_cpu_by_process_s = [
            sum(after[name]) - sum(before[name])
            for name in sorted(k for k in after if k.startswith("worker-"))
        ]
        self.redis_cpu_s = used("redis")
        self.simulator_cpu_s = used("simulator")

    def figures(self, ideal_s: float) -> dict[str, Any]:
        starts = [s for s, _ in self.intervals]
        ends = [e for _, e in self.intervals]
        durations = [e - s for s, e in self.intervals]
        if not self.intervals:
            return {
                "name": self.name,
                "label": self.label,
                "jobs": self.jobs,
                "finished": 0,
                "problems": self.problems,
            }
        busy = max(ends) - min(starts)
        wall = max(ends) - self.enqueued_at
        chunks = max(self.chunks, 1)
        fig = {
            "name": self.name,
            "label": self.label,
            "jobs": self.jobs,
            "finished": len(self.intervals),
            "concurrency": self.concurrency,
            "processes": self.processes,
            "wall_s": wall,
            "busy_s": busy,
            "in_flight_max": max_overlap(self.intervals),
            "in_flight_mean": sum(durations) / busy if busy > 0 else 0.0,
            "in_flight_sampled_max": max(self.sampled_in_flight, default=None),
            "provider_streams_max": self.provider.get("max_in_flight"),
            "provider_streams_completed": self.provider.get("streams_completed"),
            "chunks": self.chunks,
            "chunks_per_s": self.chunks / busy if busy > 0 else 0.0,
            "redis_stream_entries": self.redis_entries,
            "chunks_per_redis_entry": self.chunks / max(self.redis_entries, 1),
            "worker_cpu_s": self.worker_cpu_s,
            "worker_cpu_sys_s": self.worker_cpu_sys_s,
            "worker_cpu_by_process_s": self.worker_cpu_by_process_s,
            "worker_cores_busy": self.worker_cpu_s / wall if wall > 0 else 0.0,
            "worker_cpu_per_chunk_us": self.worker_cpu_s / chunks * 1e6,
            "redis_cpu_per_chunk_us": self.redis_cpu_s / chunks * 1e6,
            "simulator_cpu_per_chunk_us": self.simulator_cpu_s / chunks * 1e6,
            "mean_job_s": statistics.fmean(durations),
            "p95_job_s": percentile(durations, 0.95),
            "max_job_s": max(durations),
            "ideal_job_s": ideal_s,
            "mean_queue_wait_s": statistics.fmean(s - self.enqueued_at for s in starts),
            "verified_jobs": self.verified_jobs,
            "problems": self.problems,
            "job_times": [
                [round(s - self.enqueued_at, 4), round(e - self.enqueued_at, 4)]
                for s, e in sorted(self.intervals)
            ],
        }
        return fig


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = current = 0
    for _, step in edges:  # at a tie, -1 sorts first: a job ending frees its slot
        current += step
        best = max(best, current)
    return best


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# -- phase: ours -------------------------------------------------------------------------


class LeaseSampler(threading.Thread):
    """Counts our running leases (``aijobs:{*}:lease``) every ``interval_s``."""

    def __init__(self, url: str, interval_s: float) -> None:
        super().__init__(name="lease-sampler", daemon=True)
        self.client = redis.Redis.from_url(url)
        self.interval_s = interval_s
        self.samples: list[int] = []
        self.stopping = threading.Event()

    def count(self) -> int:
        return sum(1 for _ in self.client.scan_iter(match=LEASE_PATTERN, count=1000))

    def run(self) -> None:
        while not self.stopping.wait(self.interval_s):
            with contextlib.suppress(redis.RedisError):
                self.samples.append(self.count())

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)
        self.client.close()


def job_messages(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Write a short story about lighthouse number {i}."}]


def run_ours(ctx: Context) -> Phase:
    args = ctx.args
    procs = args.processes
    per_process = math.ceil(args.concurrency / procs)
    pool = f"threads -c{per_process}" if procs == 1 else f"{procs} x threads -c{per_process}"
    phase = Phase("ours", f"ours ({pool})", args.jobs, per_process * procs, processes=procs)
    run_id = uuid.uuid4().hex[:8]
    hostnames = [f"bench-ours-{run_id}-{i}@127.0.0.1" for i in range(procs)]
    extra = {
        "REDIS_URL": ctx.redis.url,
        "DATABASE_URL": ctx.database_url,
        "OPENAI_BASE_URL": ctx.sim_base + "/v1",
        "OPENAI_API_KEY": API_KEY,
        "AIJOBS_LOG_LEVEL": "WARNING",
    }
    if args.flush_ms is not None:
        extra["AIJOBS_DELTA_FLUSH_MS"] = str(args.flush_ms)
    command = shlex.split(args.ours_command) if args.ours_command else aijobs_command()
    workers: list[Child] = []
    for i, hostname in enumerate(hostnames):
        argv = [
            *command,
            "worker",
            "--queues",
            "generate",
            "--concurrency",
            str(per_process),
            "--hostname",
            hostname,
        ]
        name = "worker-ours" if procs == 1 else f"worker-ours-{i}"
        workers.append(ctx.track(spawn(name, argv, child_env(extra), ctx.log_dir)))
    settings = Settings(redis_url=ctx.redis.url, database_url=ctx.database_url)
    app = create_celery_app(settings)
    db = Database(ctx.database_url)
    repo = JobRepository(db)
    sampler = LeaseSampler(ctx.redis.url, args.sample_ms / 1000)
    try:
        for hostname, worker in zip(hostnames, workers, strict=True):
            wait_worker_ready(app, hostname, worker)

        def create(tenant: str, i: int, tokens: int) -> str:
            payload = GenerateInput(
                kind="generate", model=MODEL, messages=job_messages(i), max_tokens=tokens
            ).model_dump(mode="json", by_alias=True, exclude={"metadata"})
            job = repo.create(tenant=tenant, kind="generate", model=MODEL, payload=payload, meta={})
            return job.id

        def finished(tenant: str) -> int:
            query = select(func.count()).select_from(Job)
            with db.session() as s:
                return s.scalar(query.where(Job.tenant == tenant, Job.status.in_(TERMINAL))) or 0

        # Warm-up: the first jobs build the workers' clients and connections; not measured.
        # (Which process takes which warm-up job is up to the broker.)
        warmup = WARMUP_JOBS * procs
        for i in range(warmup):
            app.send_task(TASK_NAMES["generate"], args=[create("warmup", i, 5)], queue="generate")
        wait_until(
            lambda: finished("warmup") >= warmup and sampler.count() == 0,
            60,
            "our warm-up jobs",
            *workers,
        )
        job_ids = [create("bench", i, args.tokens) for i in range(args.jobs)]
        ctx.sim_api("POST", "reset")
        before = ctx.cpu_snapshot(*workers)
        sampler.start()
        phase.enqueued_at = time.time()
        for job_id in job_ids:
            app.send_task(TASK_NAMES["generate"], args=[job_id], queue="generate")

        def done() -> bool:
            return finished("bench") >= args.jobs and sampler.count() == 0

        timeout = ctx.phase_timeout(args.jobs, phase.concurrency)
        wait_until(done, timeout, "our jobs", *workers)
        after = ctx.cpu_snapshot(*workers)
        phase.provider = ctx.sim_api("GET", "stats")
        sampler.stop()
        phase.sampled_in_flight = sampler.samples
        phase.measured(before, after)
        verify_ours(ctx, db, job_ids, phase)
    finally:
        if sampler.is_alive():
            sampler.stop()
        for worker in workers:
            worker.stop()
        db.dispose()
        app.close()
    return phase


def verify_ours(ctx: Context, db: Database, job_ids: list[str], phase: Phase) -> None:
    """Every job succeeded; its stream's deltas concatenate to ``result.text``."""
    with db.session() as s:
        rows = {j.id: j for j in s.scalars(select(Job).where(Job.id.in_(job_ids)))}
    rds = redis.Redis.from_url(ctx.redis.url, decode_responses=True)
    try:
        for job_id in job_ids:
            job = rows.get(job_id)
            if job is None or job.status != "succeeded":
                status = job.status if job else "missing"
                phase.problems.append(f"job {job_id}: {status} {job.error if job else ''}")
                continue
            if job.started_at is None or job.finished_at is None:
                phase.problems.append(f"job {job_id}: no started_at/finished_at")
                continue
            phase.intervals.append((job.started_at.timestamp(), job.finished_at.timestamp()))
            tokens = int((job.usage or {}).get("completion_tokens") or 0)
            phase.chunks += tokens
            if tokens != ctx.args.tokens:
                phase.problems.append(f"job {job_id}: {tokens} tokens, not {ctx.args.tokens}")
            entries = rds.xrange(f"aijobs:{{{job_id}}}:events")
            phase.redis_entries += len(entries)
            deltas, done = [], None
            for _, fields in entries:
                data = json.loads(fields["d"])
                if fields["e"] == "delta":
                    deltas.append(data["text"])
                elif fields["e"] == "done":
                    done = data.get("status")
            text = (job.result or {}).get("text")
            if "".join(deltas) != text:
                phase.problems.append(f"job {job_id}: stream deltas != result.text")
            elif done != "succeeded":
                phase.problems.append(f"job {job_id}: stream has no done/succeeded event")
            elif job.attempts != 1:
                phase.problems.append(f"job {job_id}: {job.attempts} attempts")
            else:
                phase.verified_jobs += 1
    finally:
        rds.close()


# -- phase: naive ------------------------------------------------------------------------


def run_naive(ctx: Context) -> Phase:
    args = ctx.args
    conc = args.baseline_concurrency
    per_token = "XADD+PUBLISH/token" if args.baseline_redis == "pipeline" else "XADD,PUBLISH/token"
    label = f"naive (prefork -c{conc}, {per_token})"
    phase = Phase("naive", label, args.baseline_jobs, conc)
    hostname = f"bench-naive-{uuid.uuid4().hex[:8]}@127.0.0.1"
    extra = {
        "REDIS_URL": ctx.redis.url,
        "OPENAI_BASE_URL": ctx.sim_base + "/v1",
        "OPENAI_API_KEY": API_KEY,
        "NAIVE_REDIS_MODE": args.baseline_redis,
    }
    argv = [
        sys.executable,
        str(HERE / "naive_worker.py"),
        "--concurrency",
        str(conc),
        "--hostname",
        hostname,
    ]
    worker = ctx.track(spawn("worker-naive", argv, child_env(extra), ctx.log_dir))
    app = Celery("bench-client", broker=ctx.redis.url)
    app.conf.update(broker_connection_retry_on_startup=True, task_ignore_result=True)
    rds = redis.Redis.from_url(ctx.redis.url, decode_responses=True)
    try:
        wait_worker_ready(app, hostname, worker)
        warm_naive(ctx, app, rds, worker)
        job_ids = [uuid.uuid4().hex for _ in range(args.baseline_jobs)]
        ctx.sim_api("POST", "reset")
        before = ctx.cpu_snapshot(worker)
        phase.enqueued_at = time.time()
        for i, job_id in enumerate(job_ids):
            app.send_task(
                naive_worker.TASK_NAME,
                args=[job_id, MODEL, job_messages(i), args.tokens],
                queue=naive_worker.QUEUE,
            )

        def done() -> bool:
            return int(rds.get(naive_worker.DONE_KEY) or 0) >= args.baseline_jobs

        wait_until(done, ctx.phase_timeout(args.baseline_jobs, conc), "naive jobs", worker)
        after = ctx.cpu_snapshot(worker)
        phase.provider = ctx.sim_api("GET", "stats")
        phase.measured(before, after)
        for job_id in job_ids:
            rec = rds.hgetall(naive_worker.job_key(job_id))
            if not rec:
                phase.problems.append(f"naive job {job_id}: no record")
                continue
            phase.intervals.append((float(rec["started"]), float(rec["finished"])))
            tokens = int(rec["tokens"])
            phase.chunks += tokens
            entries = rds.xrange(naive_worker.events_key(job_id))
            phase.redis_entries += len(entries)
            deltas = [json.loads(f["d"])["text"] for _, f in entries if f["e"] == "delta"]
            if tokens != args.tokens:
                phase.problems.append(f"naive job {job_id}: {tokens} tokens, not {args.tokens}")
            elif "".join(deltas) != rec["text"] or len(deltas) != tokens:
                phase.problems.append(f"naive job {job_id}: stream != text")
            else:
                phase.verified_jobs += 1
    finally:
        worker.stop()
        rds.close()
        app.close()
    return phase


def warm_naive(ctx: Context, app: Celery, rds: redis.Redis, worker: Child) -> None:
    """Run short jobs until every pool process has run one (built its clients); not measured."""
    conc = ctx.args.baseline_concurrency
    pids: set[str] = set()
    count = 2 * conc
    for _ in range(5):
        rds.delete(naive_worker.DONE_KEY)
        ids = [f"warmup-{uuid.uuid4().hex}" for _ in range(count)]
        for i, job_id in enumerate(ids):
            app.send_task(
                naive_worker.TASK_NAME,
                args=[job_id, MODEL, job_messages(i), 5],
                queue=naive_worker.QUEUE,
            )
        wait_until(
            lambda: int(rds.get(naive_worker.DONE_KEY) or 0) >= count,
            60,
            "the baseline's warm-up jobs",
            worker,
        )
        pids |= {rds.hget(naive_worker.job_key(j), "pid") or "" for j in ids}
        if len(pids) >= conc:
            break
    rds.delete(naive_worker.DONE_KEY)


# -- the run -----------------------------------------------------------------------------


@dataclass
class Context:
    args: argparse.Namespace
    log_dir: Path
    redis: RedisServer
    database_url: str
    sim: Child
    sim_base: str
    children: list[Child] = field(default_factory=list)

    def sim_api(self, method: str, path: str) -> dict[str, Any]:
        """Call the simulator's admin API."""
        url = f"{self.sim_base}/_sim/{path}"
        response = httpx.request(method, url, timeout=10, trust_env=False)
        response.raise_for_status()
        return dict(response.json())

    def track(self, kid: Child) -> Child:
        self.children.append(kid)
        return kid

    def cpu_snapshot(self, *workers: Child) -> dict[str, tuple[float, float]]:
        """(user, sys) CPU seconds so far: the workers (summed, and each), Redis, simulator."""
        each = {f"worker-{i:03d}": cpu_seconds(w.pid) for i, w in enumerate(workers)}
        return {
            "worker": (sum(u for u, _ in each.values()), sum(s for _, s in each.values())),
            **each,
            "redis": cpu_seconds(self.redis.process.pid),
            "simulator": cpu_seconds(self.sim.pid),
        }

    def phase_timeout(self, jobs: int, concurrency: int) -> float:
        ideal = self.args.tokens / self.args.tps if self.args.tps > 0 else 1.0
        return 60.0 + 3.0 * ideal * math.ceil(jobs / max(concurrency, 1))


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    def raise_interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def worker_cpu_cell(p: dict[str, Any]) -> str:
    """Total worker CPU seconds; with several processes, each one's share too."""
    each = p.get("worker_cpu_by_process_s") or []
    total = f"{p['worker_cpu_s']:.2f} s"
    if len(each) < 2:
        return total
    return f"{total} ({' + '.join(f'{c:.2f}' for c in each)})"


def fmt_row(name: str, values: list[str]) -> str:
    return f"{name:<29}" + "".join(f"{v:<25}" for v in values).rstrip()


def render(args: argparse.Namespace, phases: list[dict[str, Any]]) -> str:
    ideal = args.tokens / args.tps
    lines = [
        f"streaming benchmark: {args.jobs} jobs x {args.tokens} tokens at {args.tps:g} tok/s "
        f"(ideal job time {ideal:.1f} s); baseline {args.baseline_jobs} jobs",
        fmt_row("", [p["label"] for p in phases]),
    ]

    def row(name: str, show: Callable[[dict[str, Any]], str]) -> None:
        lines.append(fmt_row(name, [show(p) if p.get("finished") else "-" for p in phases]))

    row("jobs (verified/total)", lambda p: f"{p['verified_jobs']}/{p['jobs']}")
    row("wall time", lambda p: f"{p['wall_s']:.2f} s (busy {p['busy_s']:.2f} s)")
    row("jobs in flight (max/mean)", lambda p: f"{p['in_flight_max']} / {p['in_flight_mean']:.1f}")
    row("provider streams open (max)", lambda p: f"{p['provider_streams_max']}")
    row("chunks relayed / s", lambda p: f"{p['chunks_per_s']:,.0f}")
    row("chunks per Redis entry", lambda p: f"{p['chunks_per_redis_entry']:.1f}")
    row("worker CPU per chunk", lambda p: f"{p['worker_cpu_per_chunk_us']:,.0f} µs")
    row("worker CPU (cores busy)", lambda p: f"{p['worker_cores_busy']:.2f}")
    row("worker CPU s (per process)", worker_cpu_cell)
    row("redis CPU per chunk", lambda p: f"{p['redis_cpu_per_chunk_us']:,.1f} µs")
    row("simulator CPU per chunk", lambda p: f"{p['simulator_cpu_per_chunk_us']:,.1f} µs")
    row(
        "mean job time (ideal)",
        lambda p: f"{p['mean_job_s']:.2f} s ({p['ideal_job_s']:.2f}), p95 {p['p95_job_s']:.2f}",
    )
    row("mean queue wait", lambda p: f"{p['mean_queue_wait_s']:.2f} s")
    by = {p["name"]: p for p in phases}
    ours, naive = by.get("ours"), by.get("naive")
    if ours and naive and ours.get("finished") and naive.get("finished"):
        speed = ours["chunks_per_s"] / max(naive["chunks_per_s"], 1e-9)
        cpu = ours["worker_cpu_per_chunk_us"] / max(naive["worker_cpu_per_chunk_us"], 1e-9)
        lines.append(
            f"ratio ours/naive: chunks/s x{speed:.1f}, CPU per chunk x{cpu:.3f} "
            f"(naive spends {1 / max(cpu, 1e-9):.1f}x ours per chunk)"
        )
    for p in phases:
        for problem in p["problems"][:10]:
            lines.append(f"PROBLEM [{p['name']}]: {problem}")
        if len(p["problems"]) > 10:
            lines.append(f"PROBLEM [{p['name']}]: ... {len(p['problems']) - 10} more")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="jobs for our worker")
    parser.add_argument("--baseline-jobs", type=int, default=12, help="jobs for the baseline")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per job")
    parser.add_argument("--tps", type=float, default=50.0, help="provider tokens per second")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="our worker's threads (default: --jobs)"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="our worker processes sharing the queue, each --concurrency ceil(N/P)",
    )
    parser.add_argument(
        "--baseline-concurrency",
        type=int,
        default=2,
        help="the baseline's prefork processes (Celery's default here: cores)",
    )
    parser.add_argument(
        "--baseline-redis",
        choices=["pipeline", "separate"],
        default="pipeline",
        help="baseline per token: XADD+PUBLISH in one pipelined round trip, or two calls",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="simulator first-byte delay")
    parser.add_argument(
        "--flush-ms",
        type=float,
        default=None,
        help="AIJOBS_DELTA_FLUSH_MS for our worker (default: its own)",
    )
    parser.add_argument(
        "--ours-command",
        default=None,
        help="run our worker as CMD worker ... instead of `aijobs worker ...` (e.g. a profiler)",
    )
    parser.add_argument("--sample-ms", type=float, default=100.0, help="lease sampling period")
    parser.add_argument("--skip", choices=["ours", "naive"], default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.concurrency is None:
        args.concurrency = args.jobs
    if (
        min(
            args.jobs,
            args.baseline_jobs,
            args.tokens,
            args.concurrency,
            args.baseline_concurrency,
            args.processes,
        )
        < 1
        or args.tps <= 0
    ):
        parser.error("counts must be >= 1 and --tps > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    phases: list[Phase] = []
    started = time.time()
    with contextlib.ExitStack() as stack:
        stack.enter_context(sigterm_as_interrupt())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aijobs-bench-")))
        log_dir = tmp / "logs"
        log_dir.mkdir()
        server = start_redis(tmp / "redis")
        stack.callback(server.stop)
        database_url = f"sqlite:///{tmp / 'aijobs.db'}"
        upgrade(database_url)
        sim, sim_base = start_simulator(args, log_dir)
        stack.callback(sim.stop)
        ctx = Context(args, log_dir, server, database_url, sim, sim_base)
        stack.callback(lambda: [kid.stop() for kid in ctx.children])
        try:
            if args.skip != "ours":
                phases.append(run_ours(ctx))
            if args.skip != "naive":
                phases.append(run_naive(ctx))
        except BenchError as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 1
    ideal = args.tokens / args.tps
    figures = [p.figures(ideal) for p in phases]
    print(render(args, figures))
    if args.json:
        report = {
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "ideal_job_s": ideal,
            "total_run_s": time.time() - started,
            "phases": figures,
            "in_flight_sampled": {p.name: p.sampled_in_flight for p in phases},
        }
        args.json.write_text(json.dumps(report, indent=2, default=str))
    ok = all(not p.problems and p.verified_jobs == p.jobs for p in phases)
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; everything stopped", file=sys.stderr)
        sys.exit(130)
