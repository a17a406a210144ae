"""What the end-to-end workloads share: the whole stack, and a job POSTed then followed by SSE.

The stack is the shared harness's: a private Redis, a fresh SQLite store, the simulator,
``aijobs api`` (``--workers N``) and ``aijobs worker`` processes, loopback only. A client
job is raw HTTP/1.1 on asyncio (as in ops/bench/submit.py and readers_load.py, so the
load generator costs little): ``POST /v1/jobs``, then ``GET /v1/jobs/{id}/events`` read
with the readers benchmark's SSE protocol, every time stamped on arrival.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from aijobs.devtools.harness import (
    CpuMeter,
    Harness,
    RedisServer,
    Service,
    Worker,
    child_env,
    wait_for,
)
from ops.bench.readers_load import API_KEY, TENANT, SseReader, run_sse_reader
from ops.bench.streaming import leases
from ops.bench.submit import http_request

MODEL = "gpt-4o-mini"
PROVIDER_KEY = "sk-bench-not-a-real-key"


def generate_body(i: int, tokens: int) -> dict[str, Any]:
    content = f"Write a short story about lighthouse number {i}."
    return {"kind": "generate", "model": MODEL, "max_tokens": tokens,
            "messages": [{"role": "user", "content": content}]}  # fmt: skip


@dataclass
class Stack:
    """Redis, the store and the simulator; API and worker processes started on demand."""

    h: Harness
    redis: RedisServer
    database_url: str
    sim: Service
    api: Service | None = None
    workers: list[Worker] = field(default_factory=list)
    #: More AIJOBS_ settings for every process (a workload's own).
    settings: dict[str, Any] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return child_env(
            redis_url=self.redis.url, database_url=self.database_url,
            openai_base_url=f"{self.sim.url}/v1", openai_api_key=PROVIDER_KEY,
            aijobs={"api_keys": f"{TENANT}:{API_KEY}", "log_level": "WARNING",
                    # One tenant is the whole load here: its throttles off (0 = off).
                    "tenant_submits_per_s": 0, "tenant_max_active_jobs": 0,
                    "tenant_max_readers": 0, **self.settings},
        )  # fmt: skip

    def start_api(self, processes: int) -> Service:
        """A fresh ``aijobs api`` (the one before stopped)."""
        if self.api is not None:
            self.api.stop()
        self.api = self.h.start_api(self.env(), workers=processes, name=f"api-x{processes}")
        return self.api

    def start_workers(self, processes: int, concurrency: int) -> list[Worker]:
        """Fresh ``aijobs worker`` processes on the generate queue (those before stopped)."""
        for worker in self.workers:
            worker.stop()
        self.workers = self.h.start_workers(self.env(), processes, queues="generate",
                                            concurrency=concurrency)  # fmt: skip
        return self.workers

    def meter(self) -> CpuMeter:
        pids = {f"worker-{i}": w.pid for i, w in enumerate(self.workers)}
        if self.api is not None:
            pids["api"] = self.api.pid
        return CpuMeter(pids | {"redis": self.redis.process.pid, "simulator": self.sim.pid})

    def sim_call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        answer = httpx.request(method, f"{self.sim.url}/_sim/{path}", json=body, timeout=10,
                               trust_env=False)  # fmt: skip
        answer.raise_for_status()
        return answer.json()

    def redis_client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.redis.url)


def start_stack(h: Harness, tps: float, tokens: int) -> Stack:
    """Redis, a migrated SQLite store and the simulator (``tps`` tokens/s, no latency)."""
    server = h.start_redis()
    sim = h.start_simulator(config={"tokens_per_second": tps, "max_tokens": max(tokens, 64),
                                    "latency_ms": 0, "rpm_limit": 0})  # fmt: skip
    return Stack(h, server, h.sqlite_url(), sim)


def cpu_totals(meter: CpuMeter) -> dict[str, float]:
    """CPU seconds per tree since ``start()``, with ``worker``: every worker summed."""
    out = {name: t.total for name, t in meter.stop().items()}
    out["worker"] = sum(v for k, v in out.items() if k.startswith("worker-"))
    return out


@dataclass
class Followed:
    """One client job's story as its client saw it (epoch seconds)."""

    index: int
    posted: float = 0.0
    accepted: float = 0.0
    job_id: str = ""
    headers: float = 0.0
    running: float = 0.0
    first_delta: float = 0.0
    done: float = 0.0
    events: int = 0
    deltas: int = 0
    text: list[str] = field(default_factory=list)
    status: str = ""
    errors: list[str] = field(default_factory=list)
    finished: bool = False

    def error(self, text: str) -> None:
        if len(self.errors) < 3:
            self.errors.append(text)

    def on_event(self, event_id: int, event: str, data: bytes | str, now: float) -> None:
        self.events += 1
        payload = json.loads(data)
        if event == "status" and payload.get("status") == "running" and not self.running:
            self.running = now
        elif event == "delta":
            self.first_delta = self.first_delta or now
            self.deltas += 1
            self.text.append(payload["text"])
        elif event == "done":
            self.status = str(payload.get("status"))
            self.done = now
            self.finished = True


class TimedSseReader(SseReader):
    """The readers benchmark's SSE protocol, noting when the response head arrived."""

    def data_received(self, data: bytes) -> None:
        if not self.headers_done and not self.track.headers:
            self.track.headers = time.time()
        super().data_received(data)


async def post_json(port: int, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """One POST on its own connection: (status, JSON answer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(http_request("POST", path, port, body))
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))  # fmt: skip
        answer = json.loads(await reader.readexactly(length))
        return int(head[9:12]), answer
    finally:
        writer.close()
        await writer.wait_closed()


async def follow(port: int, job: Followed) -> None:
    """Read the job's event stream from the start until ``done``."""
    await run_sse_reader(job, "127.0.0.1", port, job.job_id, asyncio.Semaphore(1),
                         protocol=TimedSseReader)  # fmt: skip


async def post_and_follow(port: int, job: Followed, body: dict[str, Any]) -> None:
    """POST the job, then follow its events; failures are noted on ``job``, not raised."""
    try:
        job.posted = time.time()
        status, answer = await post_json(port, "/v1/jobs", body)
        job.accepted = time.time()
        if status != 202:
            job.error(f"POST: {status} {str(answer)[:200]}")
            return
        job.job_id = answer["id"]
        await follow(port, job)
    except (OSError, ValueError, KeyError, StopIteration) as exc:
        job.error(f"{type(exc).__name__}: {exc}")


def burst(port: int, jobs: int, tokens: int, timeout_s: float) -> list[Followed]:
    """``jobs`` clients at once, each POSTing one job and following it to the end."""

    async def run_all() -> list[Followed]:
        followed = [Followed(i) for i in range(jobs)]
        tasks = [post_and_follow(port, f, generate_body(f.index, tokens)) for f in followed]
        await asyncio.wait_for(asyncio.gather(*tasks), timeout_s)
        return followed

    return asyncio.run(run_all())


def warm_up(stack: Stack, tokens: int = 4, jobs: int = 4) -> None:
    """A few jobs end to end (pools, imports, connections); not measured."""
    assert stack.api is not None
    done = burst(stack.api.port, jobs, tokens, timeout_s=120)
    bad = [f.errors or f.status for f in done if f.status != "succeeded"]
    if bad:
        raise RuntimeError(f"warm-up jobs failed: {bad[:3]}")


def idle(stack: Stack) -> None:
    """Wait until no lease is held (every attempt released: the workers are idle)."""
    rds = stack.redis_client()
    try:
        wait_for(lambda: leases(rds) == 0, timeout_s=60, what="the workers to be idle",
                 interval_s=0.1, watch=stack.workers)  # fmt: skip
    finally:
        rds.close()
