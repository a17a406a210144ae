"""Fan-out to readers: SSE readers on the API processes against one XREAD connection each.

A private Redis, a fresh SQLite store with ``2 x --reader-jobs`` queued jobs (rows only,
no worker) and ``aijobs api --workers N`` (``--fanout-api-workers``, 2 by default); then
two phases, each on its own jobs:

* ours: ``--readers`` SSE connections (``GET /v1/jobs/{id}/events``) to the API, spread
  evenly over the jobs; each API process holds one pub/sub connection for all its own;
* baseline: the same readers, each on its own Redis connection blocked in ``XREAD BLOCK 0``
  on its job's Stream (what a naive API would hold per client).

A writer process plays the worker with the project's ``EventWriter`` (flush window
``--flush-ms``): once every reader has the opening status event it writes ``--rate``
deltas per second per job for ``--seconds``, each stamped with its write time, then
``result`` + ``done`` (see ops/bench/readers_load.py). Latency is receive time minus
write time (so it includes the flush window). Every reader is checked: ids 1..last with
no gap or duplicate, every delta piece in order, ``result`` then ``done``, the writer's
last id. CPU is user+sys over the delivery window (writer's first delta to the last
``done``); Redis connections are sampled with CLIENT LIST (by client name).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis

from aijobs.devtools.harness import (
    CpuMeter,
    Harness,
    LinePipe,
    Service,
    child_env,
    percentiles,
    tree_cpu,
)
from aijobs.store import Database, JobRepository
from ops.bench.common import Workload, role_argv
from ops.bench.readers_load import API_KEY, TENANT, XREAD_CLIENT_NAME, raise_nofile

MODEL = "gpt-4o-mini"
API_CLIENT_NAME = "aijobs-api"  # what the API names its Redis connections
CONTROL_CLIENT_NAME = "bench-control"


class Sampler(threading.Thread):
    """Every ``interval_s``: Redis clients by name and the API's RSS (its whole tree)."""

    def __init__(self, redis_url: str, api_pid: int, interval_s: float) -> None:
        super().__init__(name="sampler", daemon=True)
        self.client = redis.Redis.from_url(redis_url, client_name=CONTROL_CLIENT_NAME)
        self.api = psutil.Process(api_pid)
        self.interval_s = interval_s
        self.samples: list[dict[str, float]] = []
        self.api_last_commands: dict[str, int] = {}
        self.stopping = threading.Event()

    def sample(self) -> None:
        row: dict[str, float] = {"t": time.time()}
        with contextlib.suppress(redis.RedisError):
            clients = self.client.client_list()
            api = [c for c in clients if c.get("name") == API_CLIENT_NAME]
            row["api_named"] = len(api)
            if row["api_named"] >= max(self.peak("api_named") or 0, 1):
                # What the API's connections last ran (subscribe = the live hub).
                self.api_last_commands = dict(Counter(c.get("cmd", "?") for c in api))
            row["xread_named"] = sum(1 for c in clients if c.get("name") == XREAD_CLIENT_NAME)
            row["clients"] = sum(1 for c in clients if c.get("name") != CONTROL_CLIENT_NAME)
        with contextlib.suppress(psutil.Error):
            procs = [self.api, *self.api.children(recursive=True)]
            row["api_rss"] = sum(p.memory_info().rss for p in procs)
        self.samples.append(row)

    def run(self) -> None:
        self.sample()
        while not self.stopping.wait(self.interval_s):
            self.sample()

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)
        self.sample()
        self.client.close()

    def peak(self, name: str, since: float = 0.0) -> float | None:
        values = [s[name] for s in self.samples if name in s and s["t"] >= since]
        return max(values) if values else None


@dataclass
class Stack:
    h: Harness
    args: argparse.Namespace
    redis_url: str
    redis_pid: int
    api: Service


def run_phase(stack: Stack, name: str, mode: str, job_ids: list[str]) -> dict[str, Any]:
    """One phase: the writer, the load generators, GO, and everything they report."""
    args, h = stack.args, stack.h
    work = h.workdir / name
    work.mkdir()
    jobs_file = work / "jobs.json"
    jobs_file.write_text(json.dumps(job_ids))
    env = child_env(aijobs={"log_level": "WARNING"})
    common = ["--redis-url", stack.redis_url, "--jobs-file", jobs_file]
    timeout = args.seconds + 120
    sampler = Sampler(stack.redis_url, stack.api.pid, 0.5)
    sampler.start()
    try:
        writer = h.spawn(f"{name}-writer", role_argv("readers_load", "--role", "writer", *common,
                         "--rate", args.rate, "--seconds", args.seconds, "--flush-ms",
                         args.flush_ms, "--out", work / "writer.json"),
                         env=env, pipe_stdin=True, pipe_stdout=True)  # fmt: skip
        writer_lines = LinePipe(writer)
        writer_lines.expect("READY", 60)
        connect_t0, api_cpu0 = time.time(), tree_cpu(stack.api.pid)
        loadgen = h.spawn(f"{name}-readers", role_argv("readers_load", "--role", mode, *common,
                          "--api", stack.api.url.removeprefix("http://"), "--readers",
                          args.readers, "--timeout", timeout, "--out", work / "readers.json"),
                          env=env, pipe_stdin=True, pipe_stdout=True)  # fmt: skip
        loadgen_lines = LinePipe(loadgen)
        ready = int(loadgen_lines.expect("READY", timeout).split()[1])
        connect_s = time.time() - connect_t0
        api_cpu_connect_s = (tree_cpu(stack.api.pid) - api_cpu0).total
        meter = CpuMeter({"api": stack.api.pid, "redis": stack.redis_pid, "writer": writer.pid,
                          "readers": loadgen.pid})  # fmt: skip
        meter.start()
        t_go = time.time()
        writer_lines.send("GO")
        writer_lines.expect("DONE", timeout)
        loadgen_lines.expect("DONE", timeout)
        used = meter.stop()
    finally:
        sampler.stop()
    writer.stop()
    loadgen.stop()
    written = json.loads((work / "writer.json").read_text())
    got = json.loads((work / "readers.json").read_text())
    latencies = array("d")
    latencies.frombytes(Path(got["latency_file"]).read_bytes())
    measured = {"t_go": t_go, "connect_s": connect_s, "api_cpu_connect_s": api_cpu_connect_s,
                "ready": ready, "used": used}  # fmt: skip
    return phase_figures(name, job_ids, written, got["readers"], latencies, measured, sampler)


def phase_figures(
    name: str,
    job_ids: list[str],
    written: dict[str, Any],
    readers: list[dict[str, Any]],
    latencies: array,
    measured: dict[str, Any],
    sampler: Sampler,
) -> dict[str, Any]:
    """Check every reader against what the writer wrote; derive rates and CPU."""
    per_job = written["pieces_per_job"]
    problems: list[str] = []
    for r in readers:
        errs = list(r["errors"])
        job_id = job_ids[r["job"]]
        if r["pieces"] != per_job:
            errs.append(f"{r['pieces']} delta pieces, expected {per_job}")
        if r["last_id"] != written["last_ids"][job_id]:
            errs.append(f"last id {r['last_id']}, the writer's is {written['last_ids'][job_id]}")
        if errs:
            problems.append(f"reader of job {r['job']}: " + "; ".join(errs))
    done_at = [r["done_at"] for r in readers if r["done_at"]]
    window = (max(done_at) - measured["t_go"]) if done_at else float("nan")
    events = sum(r["events"] for r in readers)
    cpu = {k: t.total for k, t in measured["used"].items()}
    cpu["api_sys"] = measured["used"]["api"].system
    return {
        "name": name,
        "readers": len(readers),
        "jobs": len(job_ids),
        "ready_before_go": measured["ready"],
        "connect_s": measured["connect_s"],
        "api_cpu_connect_s": measured["api_cpu_connect_s"],
        "events": events,
        "pieces": sum(r["pieces"] for r in readers),
        "window_s": window,
        "events_per_s": events / window if window > 0 else float("nan"),
        "latency_ms": percentiles(latencies).scaled(1e3).as_dict(),
        "writer_max_lag_ms": written["max_lag_s"] * 1e3,
        "cpu_s": cpu,
        "api_cpu_per_event_us": cpu["api"] / events * 1e6 if events else float("nan"),
        "api_rss_mb_max": (sampler.peak("api_rss") or 0) / 2**20,
        "redis_conns": {
            "api_named_max": sampler.peak("api_named"),
            "api_named_delivery_max": sampler.peak("api_named", measured["t_go"]),
            "xread_named_max": sampler.peak("xread_named"),
            "all_clients_max": sampler.peak("clients"),
            "api_last_commands_at_peak": sampler.api_last_commands,
        },
        "verified_readers": len(readers) - len(problems),
        "problems": problems,
    }


def run(h: Harness, args: argparse.Namespace) -> Workload:
    """Both phases on ``--fanout-api-workers`` API processes (``aijobs api --workers N``)."""
    raise_nofile()  # the API and the load generator inherit it: 1,000 sockets each
    server = h.start_redis()
    database_url = h.sqlite_url()
    db = Database(database_url)
    repo = JobRepository(db)
    payload = {"kind": "generate", "model": MODEL, "messages": []}
    job_ids = [repo.create(tenant=TENANT, kind="generate", model=MODEL, payload=payload,
                           meta={}).id for _ in range(2 * args.reader_jobs)]  # fmt: skip
    db.dispose()
    env = child_env(redis_url=server.url, database_url=database_url, aijobs={
        "api_keys": f"{TENANT}:{API_KEY}", "sse_keepalive_s": 10, "log_level": "WARNING",
        "tenant_max_readers": 0,  # one tenant opens every reader: no per-tenant cap (0 = off)
    })  # fmt: skip
    api = h.start_api(env, workers=args.fanout_api_workers)
    stack = Stack(h, args, server.url, server.process.pid, api)
    ours = run_phase(stack, "ours", "sse", job_ids[: args.reader_jobs])
    base = run_phase(stack, "baseline", "xread", job_ids[args.reader_jobs :])
    return report(args, ours, base)


def report(args: argparse.Namespace, ours: dict[str, Any], base: dict[str, Any]) -> Workload:
    result = Workload("readers", details={"ours": ours, "baseline": base})
    for phase in (ours, base):
        result.problems += [f"{phase['name']}: {p}" for p in phase["problems"][:5]]
    label = f"readers {args.readers} / {args.reader_jobs} jobs, API x{args.fanout_api_workers}"
    ol, bl = ours["latency_ms"], base["latency_ms"]
    oc, bc = ours["redis_conns"], base["redis_conns"]
    result.add(label, "readers verified (SSE vs XREAD BLOCK each)",
               f"{ours['verified_readers']}/{ours['readers']}",
               f"{base['verified_readers']}/{base['readers']}")  # fmt: skip
    result.add(label, "events delivered / s", ours["events_per_s"], base["events_per_s"])
    for q in ("p50", "p99", "max"):
        result.add(label, f"latency {q}", ol[q], bl[q], "ms", ".1f")
    window = ours["window_s"]
    result.add(label, "API CPU (share of a core)", ours["cpu_s"]["api"] / window * 100,
               None, "%")  # fmt: skip
    result.add(label, "API CPU per event-reader pair", ours["api_cpu_per_event_us"], None, "µs")
    result.add(label, "Redis CPU (share of a core)", ours["cpu_s"]["redis"] / window * 100,
               base["cpu_s"]["redis"] / base["window_s"] * 100, "%")  # fmt: skip
    result.add(label, "Redis connections held (API vs readers)",
               oc["api_named_delivery_max"], bc["xread_named_max"])  # fmt: skip
    result.add(label, "API RSS max", ours["api_rss_mb_max"], None, "MB")
    return result
