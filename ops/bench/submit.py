"""Submitting: ``POST /v1/jobs`` through the API against raw Celery ``send_task``.

One API process (``aijobs api``; ``--api-workers N`` passes ``--workers N``) on a private
Redis and a fresh SQLite store, no worker (the jobs stay queued). Measured in one run:
``--clients`` concurrent clients and one sequential client (raw HTTP/1.1 keep-alive
connections on asyncio) POSTing generate jobs: jobs/s, latency percentiles, API CPU per
submit; the same counts of ``send_job`` (the workers' own ``send_task`` call, same Celery
configuration) from as many threads and from one: sends/s, CPU of the sending process per
send; and, as reference points, ``GET /healthz`` and an authenticated ``GET
/v1/jobs/{id}`` the same ways.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from aijobs.devtools.harness import CpuMeter, Harness, child_env, own_cpu, percentiles
from aijobs.settings import Settings
from aijobs.worker.celery_app import create_celery_app, send_job
from ops.bench.common import Failed, Workload

TENANT, API_KEY = "bench", "bench-key-0123456789"
BODY = {"kind": "generate", "model": "gpt-4o-mini", "max_tokens": 16,
        "messages": [{"role": "user", "content": "Say hello."}]}  # fmt: skip


@dataclass
class Load:
    """What one load (a request kind, a number of clients) measured."""

    requests: int = 0
    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    cpu_s: dict[str, float] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        n = max(self.requests, 1)
        return {
            "requests": self.requests,
            "wall_s": self.wall_s,
            "per_s": self.requests / self.wall_s if self.wall_s > 0 else 0.0,
            "latency_ms": percentiles(self.latencies_s).scaled(1e3).as_dict(),
            "statuses": dict(self.statuses),
            "cpu_s": self.cpu_s,
            "cpu_per_request_us": {k: v / n * 1e6 for k, v in self.cpu_s.items()},
        }


def http_request(method: str, path: str, port: int, json_body: dict[str, Any] = BODY) -> bytes:
    """One HTTP/1.1 request, built once and sent as it is by every client."""
    body = json.dumps(json_body).encode() if method == "POST" else b""
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")  # fmt: skip
    return head.encode() + body


async def http_load(port: int, method: str, path: str, total: int, clients: int) -> Load:
    """``total`` requests from ``clients`` concurrent keep-alive connections.

    Raw HTTP/1.1 on asyncio streams, not an HTTP client library: with 50 connections
    httpx's pool spent ~4 ms of CPU per request here, so it measured itself, not the API.
    """
    load = Load(requests=total)
    request = http_request(method, path, port)
    queue = iter(range(total))  # shared: each client takes the next request

    async def one_client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in queue:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if length is None:
                    raise Failed(f"{method} {path}: no Content-Length in {head[:200]!r}")
                await reader.readexactly(int(length.group(1)))
                load.latencies_s.append(time.perf_counter() - started)
                load.statuses[int(head[9:12])] += 1
        finally:
            writer.close()
            await writer.wait_closed()

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    load.wall_s = time.perf_counter() - started
    return load


def thread_load(send: Callable[[], None], total: int, clients: int) -> Load:
    """``total`` calls of ``send`` from ``clients`` threads."""
    load = Load(requests=total)
    shares = [total // clients + (1 if i < total % clients else 0) for i in range(clients)]

    def one_client(count: int) -> list[float]:
        spent = []
        for _ in range(count):
            started = time.perf_counter()
            send()
            spent.append(time.perf_counter() - started)
        return spent

    started = time.perf_counter()
    with ThreadPoolExecutor(clients, thread_name_prefix="send") as pool:
        for spent in pool.map(one_client, shares):
            load.latencies_s += spent
    load.wall_s = time.perf_counter() - started
    load.statuses[202] = total  # send_task raises rather than answer badly
    return load


def measured(meter: CpuMeter, run: Callable[[], Load]) -> Load:
    """Run a load between two CPU readings: the API's and Redis's trees, and this process."""
    mine = own_cpu()
    meter.start()
    load = run()
    used = meter.stop()
    load.cpu_s = {name: t.total for name, t in used.items()}
    load.cpu_s["sender"] = (own_cpu() - mine).total
    return load


def run(h: Harness, args: argparse.Namespace) -> Workload:
    """Every load, one after the other, in one stack."""
    server = h.start_redis()
    database_url = h.sqlite_url()
    env = child_env(
        redis_url=server.url,
        database_url=database_url,
        aijobs={"api_keys": f"{TENANT}:{API_KEY}", "log_level": "WARNING",
                # The point is the API's own cost: lift the per-tenant throttles (0 = off).
                "tenant_submits_per_s": 0, "tenant_max_active_jobs": 0},
    )  # fmt: skip
    api = h.start_api(env, workers=args.api_workers)
    meter = CpuMeter({"api": api.pid, "redis": server.process.pid})
    app = create_celery_app(Settings(redis_url=server.url, database_url=database_url))

    def http(method: str, path: str, total: int, clients: int) -> Load:
        return measured(meter, lambda: asyncio.run(http_load(api.port, method, path, total,
                                                             clients)))  # fmt: skip

    def send() -> None:
        send_job(app, uuid.uuid4().hex, "generate")

    try:
        http("POST", "/v1/jobs", 20, 4)  # warm-up: imports, pools, connections
        thread_load(send, 20, 4)
        with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {API_KEY}"},
                          trust_env=False) as client:  # fmt: skip
            job_id = client.post("/v1/jobs", json=BODY).raise_for_status().json()["id"]
        n, seq, clients = args.submits, args.sequential, args.clients
        loads = {
            "post_concurrent": http("POST", "/v1/jobs", n, clients),
            "post_sequential": http("POST", "/v1/jobs", seq, 1),
            "send_concurrent": measured(meter, lambda: thread_load(send, n, clients)),
            "send_sequential": measured(meter, lambda: thread_load(send, seq, 1)),
            "healthz_concurrent": http("GET", "/healthz", n, clients),
            "healthz_sequential": http("GET", "/healthz", seq, 1),
            "get_job_concurrent": http("GET", f"/v1/jobs/{job_id}", n, clients),
            "get_job_sequential": http("GET", f"/v1/jobs/{job_id}", seq, 1),
        }
    finally:
        app.close()
    return report(args, {name: load.figures() for name, load in loads.items()})


def report(args: argparse.Namespace, f: dict[str, dict[str, Any]]) -> Workload:
    """The table's rows: POST against send_task; the GETs against nothing (references)."""
    result = Workload("submit", details={"loads": f, "api_workers": args.api_workers})
    for name, load in f.items():
        want = 202 if name.startswith(("post", "send")) else 200
        bad = {s: c for s, c in load["statuses"].items() if int(s) != want}
        if bad:
            result.problems.append(f"{name}: answers other than {want}: {bad}")
    for mode, clients in (("concurrent", args.clients), ("sequential", 1)):
        label = f"submit, {clients} client{'s' if clients > 1 else ''}"
        post, send = f[f"post_{mode}"], f[f"send_{mode}"]
        result.add(label, "jobs / s (POST vs send_task)", post["per_s"], send["per_s"])
        for q in ("p50", "p99"):
            result.add(label, f"latency {q}", post["latency_ms"][q], send["latency_ms"][q],
                       "ms", ".2f")  # fmt: skip
        result.add(
            label,
            "CPU per submit (API vs sender)",
            post["cpu_per_request_us"]["api"],
            send["cpu_per_request_us"]["sender"],
            "µs",
        )
        result.add(label, "Redis CPU per submit", post["cpu_per_request_us"]["redis"],
                   send["cpu_per_request_us"]["redis"], "µs", ".1f")  # fmt: skip
        for ref, what in (("healthz", "GET /healthz"), ("get_job", "GET /v1/jobs/{id}")):
            load = f[f"{ref}_{mode}"]
            lat = load["latency_ms"]
            result.add(label, f"{what} (reference): requests / s", load["per_s"])
            result.add(label, f"{what} (reference): p50 / p99", f"{lat['p50']:.2f} / "
                       f"{lat['p99']:.2f}", unit="ms")  # fmt: skip
            result.add(label, f"{what} (reference): API CPU per request",
                       load["cpu_per_request_us"]["api"], unit="µs")  # fmt: skip
    return result
