"""Embeddings: one ``embed`` job through API and worker against direct SDK calls.

A private Redis, a fresh SQLite store, the simulator, ``aijobs api`` and ``aijobs worker
--queues embed --concurrency 4`` (``AIJOBS_EMBED_CONCURRENCY=--embed-concurrency``,
batches of 2048), then, on the same texts:

* system: ``POST /v1/jobs`` (one job with every text), follow ``GET /v1/jobs/{id}/events``
  until ``done``, then ``GET /v1/jobs/{id}`` (floats) and, timed apart, ``?format=base64``;
* direct: ``openai.OpenAI(max_retries=0).embeddings.create`` over the same batches
  (``aijobs.kinds.embed.plan_batches``) from ``--embed-concurrency`` threads.

The system's time runs from encoding the POST body to the parsed answer of the float GET
(the base64 variant too); the direct time from the first request to the last vectors.
Provider requests are the simulator's count for the model, per phase. The system's
vectors are checked against the direct ones on a sample of indices (the simulator is
deterministic per text).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gc
import json
import random
import sys
import threading
import time
from array import array
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import openai

from aijobs.devtools.harness import (
    CpuMeter,
    Harness,
    HarnessError,
    Service,
    Worker,
    child_env,
    own_cpu,
)
from aijobs.kinds.embed import plan_batches
from aijobs.settings import Settings
from ops.bench.common import Failed, Workload

MODEL = "text-embedding-3-small"
PROVIDER_KEY = "sk-bench"
API_KEY = "bench-key-0123456789"
BATCH_SIZE = 2048
WORKER_CONCURRENCY = 4
TOLERANCE = 1e-6

_WORDS = (
    "parcel", "arrived", "late", "but", "intact", "refund", "request", "invoice", "wrong", "size",
    "colour", "great", "support", "slow", "battery", "screen", "crack", "warranty", "billing",
    "address", "password", "reset", "shipping", "fast", "kind",
)  # fmt: skip


def settle_gc() -> None:
    """Collect, then keep everything alive so far out of later collections (a fair start)."""
    gc.collect()
    gc.freeze()


def make_texts(count: int) -> list[str]:
    """``count`` distinct short texts (~50 characters), the same every run."""
    rng = random.Random(1234)
    return [f"ticket {i}: {' '.join(rng.choices(_WORDS, k=4 + i % 4))}" for i in range(count)]


# -- the system under test ---------------------------------------------------------------


@dataclass
class Stack:
    """The processes of the run and how to reach them."""

    redis_pid: int
    sim: Service
    api: Service
    worker: Worker

    @property
    def sim_base(self) -> str:
        return self.sim.url

    @property
    def api_base(self) -> str:
        return self.api.url

    def sim_api(self, method: str, path: str) -> dict[str, Any]:
        response = httpx.request(method, f"{self.sim.url}/_sim/{path}", timeout=10, trust_env=False)
        response.raise_for_status()
        return dict(response.json())

    def provider_requests(self) -> int:
        return int(self.sim_api("GET", "stats").get("requests_by_model", {}).get(MODEL, 0))

    def meter(self) -> CpuMeter:
        pids = {"api": self.api.pid, "worker": self.worker.pid, "simulator": self.sim.pid,
                "redis": self.redis_pid}  # fmt: skip
        return CpuMeter(pids)

    def alive_check(self) -> None:
        for kid in (self.sim, self.api, self.worker):
            if not kid.alive():
                raise HarnessError(kid.describe_exit())


def start_stack(h: Harness, args: argparse.Namespace) -> Stack:
    server = h.start_redis()
    database_url = h.sqlite_url()
    sim = h.start_simulator(config={"latency_ms": 0, "rpm_limit": 0})
    env = child_env(
        redis_url=server.url,
        database_url=database_url,
        openai_base_url=f"{sim.url}/v1",
        openai_api_key=PROVIDER_KEY,
        aijobs={
            "api_keys": f"bench:{API_KEY}",
            "embed_concurrency": args.embed_concurrency,
            "embed_batch_size": BATCH_SIZE,
            "embed_max_inputs": max(100_000, args.texts),
            "max_jobs_body_bytes": max(16 * 1024 * 1024, 200 * args.texts),
            "log_level": "WARNING",
        },
    )
    api = h.start_api(env, workers=args.api_workers)
    worker = h.start_worker(env, queues="embed", concurrency=WORKER_CONCURRENCY, name="embed")
    return Stack(server.process.pid, sim, api, worker)


# -- phase: the whole system -------------------------------------------------------------


@dataclass
class SystemRun:
    """Timestamps (``time.time()``) and figures of one job through the API."""

    job_id: str = ""
    t_start: float = 0.0
    t_encoded: float = 0.0
    t_accepted: float = 0.0
    created_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    t_done: float = 0.0
    progress_times: list[float] = field(default_factory=list)
    get_headers_s: float = 0.0
    get_body_s: float = 0.0
    get_parse_s: float = 0.0
    get_bytes: int = 0
    b64_headers_s: float = 0.0
    b64_body_s: float = 0.0
    b64_decode_s: float = 0.0
    b64_bytes: int = 0
    body_bytes: int = 0
    healthz_max_s_during_get: float = 0.0
    requests: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    status: str = ""

    def figures(self, texts: int) -> dict[str, Any]:
        total = self.t_done - self.t_start + self.get_s
        total_b64 = self.t_done - self.t_start + self.b64_s
        return {
            "job_id": self.job_id,
            "status": self.status,
            "texts": texts,
            "total_s": total,
            "texts_per_s": texts / total if total > 0 else 0.0,
            "total_base64_s": total_b64,
            "texts_per_s_base64": texts / total_b64 if total_b64 > 0 else 0.0,
            "post_body_bytes": self.body_bytes,
            "encode_s": self.t_encoded - self.t_start,
            "post_s": self.t_accepted - self.t_encoded,
            "post_to_created_s": self.created_at - self.t_encoded,
            "queue_wait_s": self.started_at - self.created_at,
            "worker_run_s": self.finished_at - self.started_at,
            "first_batch_s": (self.progress_times[0] - self.started_at)
            if self.progress_times
            else None,
            "finished_to_done_event_s": self.t_done - self.finished_at,
            "submit_to_done_s": self.t_done - self.t_start,
            "get_s": self.get_s,
            "get_headers_s": self.get_headers_s,
            "get_body_s": self.get_body_s,
            "get_parse_s": self.get_parse_s,
            "get_bytes": self.get_bytes,
            "get_base64_s": self.b64_s,
            "get_base64_headers_s": self.b64_headers_s,
            "get_base64_body_s": self.b64_body_s,
            "get_base64_decode_s": self.b64_decode_s,
            "get_base64_bytes": self.b64_bytes,
            "healthz_max_s_during_get": self.healthz_max_s_during_get,
            "provider_requests": self.requests,
            "cpu_s": self.cpu,
            "progress_events": len(self.progress_times),
        }

    @property
    def get_s(self) -> float:
        return self.get_headers_s + self.get_body_s + self.get_parse_s

    @property
    def b64_s(self) -> float:
        return self.b64_headers_s + self.b64_body_s + self.b64_decode_s


def epoch(stamp: str | None) -> float:
    if not stamp:
        return 0.0
    return datetime.fromisoformat(stamp).timestamp()


class HealthProbe(threading.Thread):
    """Times ``GET /healthz`` back to back: the API's event loop is blocked when it is slow."""

    def __init__(self, base: str) -> None:
        super().__init__(name="healthz-probe", daemon=True)
        self.client = httpx.Client(base_url=base, timeout=120, trust_env=False)
        self.stopping = threading.Event()
        self.worst = 0.0

    def run(self) -> None:
        while not self.stopping.is_set():
            started = time.perf_counter()
            with contextlib.suppress(httpx.HTTPError):
                self.client.get("/healthz")
            self.worst = max(self.worst, time.perf_counter() - started)
            self.stopping.wait(0.05)

    def stop(self) -> float:
        self.stopping.set()
        self.join(130)
        self.client.close()
        return self.worst


def timed_get(client: httpx.Client, url: str, **params: str) -> tuple[float, float, bytes]:
    """(seconds to the response headers, seconds to the whole body, the body)."""
    started = time.perf_counter()
    with client.stream("GET", url, params=params) as response:
        headers_at = time.perf_counter()
        body = response.read()
        ended = time.perf_counter()
        if response.status_code != 200:
            raise Failed(f"GET {url}: {response.status_code} {body[:300]!r}")
    return headers_at - started, ended - headers_at, body


def follow_until_done(
    client: httpx.Client, stack: Stack, job_id: str, run: SystemRun, timeout_s: float
) -> str:
    """Read the job's SSE events until ``done``; returns its status."""
    deadline = time.monotonic() + timeout_s
    event = ""
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        if response.status_code != 200:
            raise Failed(f"events: {response.status_code} {response.read()[:300]!r}")
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
                if event == "progress":
                    run.progress_times.append(time.time())
            elif line.startswith("data:") and event == "done":
                run.t_done = time.time()
                return str(json.loads(line[5:]).get("status"))
            if time.monotonic() > deadline:
                raise HarnessError(f"timed out after {timeout_s:.0f}s waiting for the job")
            stack.alive_check()
    raise HarnessError("the event stream ended before `done`")


def submit(client: httpx.Client, texts: list[str], dims: int) -> tuple[str, dict[str, Any], int]:
    body = json.dumps(
        {"kind": "embed", "model": MODEL, "input": texts, "dimensions": dims},
        separators=(",", ":"),
    ).encode()
    response = client.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
    if response.status_code != 202:
        raise Failed(f"POST /v1/jobs: {response.status_code} {response.text[:300]}")
    job = response.json()
    return str(job["id"]), job, len(body)


def decode_base64(items: list[str]) -> list[list[float]]:
    out = []
    for item in items:
        values = array("f")
        values.frombytes(base64.b64decode(item))
        if sys.byteorder != "little":  # pragma: no cover
            values.byteswap()
        out.append(values.tolist())
    return out


def run_system(
    stack: Stack, args: argparse.Namespace, texts: list[str]
) -> tuple[SystemRun, list[list[float]], list[list[float]]]:
    """One job with every text; returns its figures, float vectors and base64 vectors."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    timeout = httpx.Timeout(600.0, connect=10.0)
    with httpx.Client(
        base_url=stack.api_base, headers=headers, timeout=timeout, trust_env=False
    ) as client:
        # Warm-up: a small job, so imports, pools and connections exist; not measured.
        warm_id, _, _ = submit(client, texts[:8], args.dimensions)
        if follow_until_done(client, stack, warm_id, SystemRun(), 120) != "succeeded":
            raise Failed("the warm-up job did not succeed")
        client.get(f"/v1/jobs/{warm_id}").raise_for_status()

        stack.sim_api("POST", "reset")
        run = SystemRun()
        settle_gc()
        meter = stack.meter()
        meter.start()
        own_before = own_cpu()
        run.t_start = time.time()
        body = json.dumps(
            {"kind": "embed", "model": MODEL, "input": texts, "dimensions": args.dimensions},
            separators=(",", ":"),
        ).encode()
        run.t_encoded = time.time()
        run.body_bytes = len(body)
        response = client.post(
            "/v1/jobs", content=body, headers={"Content-Type": "application/json"}
        )
        run.t_accepted = time.time()
        del body
        if response.status_code != 202:
            raise Failed(f"POST /v1/jobs: {response.status_code} {response.text[:300]}")
        job = response.json()
        run.job_id = job["id"]
        run.created_at = epoch(job["created_at"])
        run.status = follow_until_done(client, stack, run.job_id, run, 900.0)

        probe = HealthProbe(stack.api_base)
        probe.start()
        try:
            run.get_headers_s, run.get_body_s, raw = timed_get(client, f"/v1/jobs/{run.job_id}")
            started = time.perf_counter()
            answer = json.loads(raw)
            run.get_parse_s = time.perf_counter() - started
            run.get_bytes = len(raw)
            del raw
        finally:
            run.healthz_max_s_during_get = probe.stop()
        run.cpu = {k: t.total for k, t in meter.stop().items()}
        run.cpu["bench client"] = (own_cpu() - own_before).total
        run.requests = stack.provider_requests()
        run.started_at = epoch(answer.get("started_at"))
        run.finished_at = epoch(answer.get("finished_at"))
        run.status = answer.get("status", run.status)
        if run.status != "succeeded":
            raise Failed(f"job {run.job_id}: {run.status} {answer.get('error')}")
        floats = (answer.get("result") or {}).get("embeddings") or []
        del answer

        run.b64_headers_s, run.b64_body_s, raw = timed_get(
            client, f"/v1/jobs/{run.job_id}", format="base64"
        )
        started = time.perf_counter()
        b64 = decode_base64((json.loads(raw).get("result") or {}).get("embeddings") or [])
        run.b64_decode_s = time.perf_counter() - started
        run.b64_bytes = len(raw)
        del raw
    return run, floats, b64


# -- phase: direct SDK calls -------------------------------------------------------------


@dataclass
class DirectRun:
    seconds: float = 0.0
    requests: int = 0
    batches: int = 0
    cpu: dict[str, float] = field(default_factory=dict)

    def figures(self, texts: int) -> dict[str, Any]:
        return {
            "texts": texts,
            "total_s": self.seconds,
            "texts_per_s": texts / self.seconds if self.seconds > 0 else 0.0,
            "batches": self.batches,
            "provider_requests": self.requests,
            "cpu_s": self.cpu,
        }


def run_direct(
    stack: Stack, args: argparse.Namespace, texts: list[str], plan: list[tuple[int, int]]
) -> tuple[DirectRun, list[list[float]]]:
    """The same batches straight to the provider with the SDK, ``--concurrency`` at a time."""
    client = openai.OpenAI(
        base_url=f"{stack.sim_base}/v1",
        api_key=PROVIDER_KEY,
        max_retries=0,
        timeout=600.0,
        http_client=openai.DefaultHttpxClient(trust_env=False),
    )
    vectors: list[list[float]] = [[] for _ in texts]

    def embed(batch: tuple[int, int]) -> None:
        start, end = batch
        answer = client.embeddings.create(
            model=MODEL, input=texts[start:end], dimensions=args.dimensions
        )
        items = sorted(answer.data, key=lambda item: item.index)
        if len(items) != end - start:
            raise Failed(f"direct: {len(items)} vectors for {end - start} texts")
        vectors[start:end] = [item.embedding for item in items]

    try:
        embed((0, min(8, len(texts))))  # warm-up: connection, SDK imports; not measured
        stack.sim_api("POST", "reset")
        run = DirectRun(batches=len(plan))
        settle_gc()
        meter = stack.meter()
        meter.start()
        own_before = own_cpu()
        started = time.perf_counter()
        with ThreadPoolExecutor(args.embed_concurrency, thread_name_prefix="direct") as pool:
            for future in [pool.submit(embed, batch) for batch in plan]:
                future.result()
        run.seconds = time.perf_counter() - started
        run.cpu = {k: t.total for k, t in meter.stop().items()}
        run.cpu["bench client"] = (own_cpu() - own_before).total
        run.requests = stack.provider_requests()
    finally:
        client.close()
    return run, vectors


# -- checks ------------------------------------------------------------------------------


def compare(
    ours: list[list[float]], direct: list[list[float]], dims: int, sample: int
) -> dict[str, Any]:
    """Sampled indices (and the ends of the first batches) within ``TOLERANCE``."""
    n = len(direct)
    problems: list[str] = []
    if len(ours) != n:
        problems.append(f"{len(ours)} vectors, expected {n}")
    count = min(n, len(ours))
    picks = set(random.Random(7).sample(range(count), min(count, sample)))
    picks |= {i for i in (0, count - 1, BATCH_SIZE - 1, BATCH_SIZE) if 0 <= i < count}
    worst = 0.0
    for i in sorted(picks):
        a, b = ours[i], direct[i]
        if len(a) != dims or len(b) != dims:
            problems.append(f"index {i}: {len(a)} / {len(b)} dimensions, expected {dims}")
            continue
        diff = max(abs(x - y) for x, y in zip(a, b, strict=True))
        worst = max(worst, diff)
        if diff > TOLERANCE:
            problems.append(f"index {i}: differs by {diff:.3g}")
    return {"checked": len(picks), "max_abs_diff": worst, "problems": problems}


def run(h: Harness, args: argparse.Namespace) -> Workload:
    """The whole system, then direct calls, on the same texts; vectors compared."""
    texts = make_texts(args.texts)
    max_tokens = Settings.model_fields["embed_batch_tokens"].default
    plan = plan_batches(texts, max_inputs=BATCH_SIZE, max_tokens=max_tokens)
    stack = start_stack(h, args)
    system, ours, ours_b64 = run_system(stack, args, texts)
    direct, theirs = run_direct(stack, args, texts, plan)
    check = compare(ours, theirs, args.dimensions, args.sample)
    check_b64 = compare(ours_b64, theirs, args.dimensions, args.sample)
    sysf, dirf = system.figures(args.texts), direct.figures(args.texts)
    result = Workload("embeddings", details={
        "batch_size": BATCH_SIZE, "batches": len(plan), "system": sysf, "direct": dirf,
        "check_float": check, "check_base64": check_b64,
    })  # fmt: skip
    result.problems += [f"floats: {p}" for p in check["problems"]]
    result.problems += [f"base64: {p}" for p in check_b64["problems"]]
    for name, fig in (("system", sysf), ("direct", dirf)):
        if fig["provider_requests"] != len(plan):
            result.problems.append(f"{name}: {fig['provider_requests']} provider requests, "
                                   f"not {len(plan)}")  # fmt: skip
    label = f"embeddings {args.texts:,} x {args.dimensions}"
    result.add(label, "texts / s, base64 GET (system vs direct SDK)",
               sysf["texts_per_s_base64"], dirf["texts_per_s"])  # fmt: skip
    result.add(label, "texts / s, JSON floats GET", sysf["texts_per_s"], dirf["texts_per_s"])
    result.add(label, "worker run vs direct loop", sysf["worker_run_s"], dirf["total_s"], "s",
               ".2f")  # fmt: skip
    result.add(label, "GET floats vs GET base64", sysf["get_s"], sysf["get_base64_s"], "s", ".2f")
    result.add(label, "provider requests", sysf["provider_requests"], dirf["provider_requests"])
    result.add(label, "/healthz worst during GET floats", sysf["healthz_max_s_during_get"],
               None, "s", ".2f")  # fmt: skip
    result.add(label, "CPU, worker vs direct client", sysf["cpu_s"]["worker"],
               dirf["cpu_s"]["bench client"], "s", ".2f")  # fmt: skip
    result.add(label, "CPU, API", sysf["cpu_s"]["api"], None, "s", ".2f")
    checked = check["checked"] + check_b64["checked"]
    wrong = len(check["problems"]) + len(check_b64["problems"])
    result.add(label, "vectors equal direct (sampled, floats + base64)",
               f"{checked - wrong}/{checked}")  # fmt: skip
    return result
