"""Embeddings benchmark: many short texts through the whole system and through direct SDK calls.

    python ops/bench/embeddings.py [--texts 100000] [--dimensions 256] [--concurrency 4]
                                   [--json PATH]

Starts a private Redis, a fresh SQLite job store, the simulator (its own process),
``aijobs api`` and ``aijobs worker --queues embed --concurrency 4`` (with
``AIJOBS_EMBED_CONCURRENCY=--concurrency`` and ``AIJOBS_EMBED_BATCH_SIZE=2048``), then, one
after the other, on the same texts:

* system: ``POST /v1/jobs`` (one ``embed`` job with every text), follow
  ``GET /v1/jobs/{id}/events`` until ``done``, then ``GET /v1/jobs/{id}`` (floats) and, timed
  apart, ``GET /v1/jobs/{id}?format=base64`` (decoded to floats by the client);
* direct: ``openai.OpenAI(max_retries=0).embeddings.create`` over the same batches
  (``aijobs.kinds.embed.plan_batches``, 2048 inputs a request) from ``--concurrency``
  threads, vectors collected in input order.

The system's time runs from encoding the POST body to the parsed answer of the float GET
(the base64 variant is shown too); the direct time from the first request to the last
vectors. Provider requests are the simulator's ``requests_by_model`` for the model, per
phase. The system's vectors are checked against the direct ones on a sample of indices
(the simulator is deterministic per text). CPU seconds per process come from psutil.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gc
import json
import random
import sys
import tempfile
import threading
import time
import uuid
from array import array
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil

from aijobs.devtools.redis_server import RedisServer, free_port, start_redis
from aijobs.kinds.embed import plan_batches
from aijobs.settings import Settings
from aijobs.store.migrate import upgrade
from aijobs.worker.celery_app import create_celery_app

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from streaming import (  # noqa: E402  (ops/bench is not a package)
    BenchError,
    Child,
    aijobs_command,
    child_env,
    cpu_seconds,
    sigterm_as_interrupt,
    spawn,
    wait_until,
    wait_worker_ready,
)

MODEL = "text-embedding-3-small"
PROVIDER_KEY = "sk-bench"
API_KEY = "bench-key"
BATCH_SIZE = 2048
WORKER_CONCURRENCY = 4
TOLERANCE = 1e-6
SAMPLE = 1000

_WORDS = (
    "parcel", "arrived", "late", "but", "intact", "refund", "request", "invoice", "wrong", "size",
    "colour", "great", "support", "slow", "battery", "screen", "crack", "warranty", "billing",
    "address", "password", "reset", "shipping", "fast", "kind",
)  # fmt: skip


class Failed(RuntimeError):
    """A phase ran but its answer is wrong (a failed job, missing vectors)."""


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
    """The processes of one run and how to reach them."""

    tmp: Path
    redis: RedisServer
    database_url: str
    sim: Child
    sim_base: str
    api: Child
    api_base: str
    worker: Child
    children: list[Child] = field(default_factory=list)

    def sim_api(self, method: str, path: str) -> dict[str, Any]:
        response = httpx.request(
            method, f"{self.sim_base}/_sim/{path}", timeout=10, trust_env=False
        )
        response.raise_for_status()
        return dict(response.json())

    def provider_requests(self) -> int:
        return int(self.sim_api("GET", "stats").get("requests_by_model", {}).get(MODEL, 0))

    def cpu(self) -> dict[str, float]:
        """CPU seconds (user+sys, with children) of every process so far, and of this one."""
        pids = {
            "api": self.api.pid,
            "worker": self.worker.pid,
            "simulator": self.sim.pid,
            "redis": self.redis.process.pid,
        }
        out = {name: sum(cpu_seconds(pid)) for name, pid in pids.items()}
        me = psutil.Process().cpu_times()
        out["bench client"] = me.user + me.system
        return out

    def alive_check(self) -> None:
        for kid in (self.sim, self.api, self.worker):
            if not kid.alive():
                raise BenchError(f"{kid.name} exited ({kid.process.returncode}):\n{kid.log_tail()}")


def start_stack(
    args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack[bool | None]
) -> Stack:
    log_dir = tmp / "logs"
    log_dir.mkdir()
    server = start_redis(tmp / "redis")
    stack.callback(server.stop)
    database_url = f"sqlite:///{tmp / 'aijobs.db'}"
    upgrade(database_url)
    children: list[Child] = []
    stack.callback(lambda: [kid.stop() for kid in reversed(children)])

    sim_port = free_port()
    sim_env = child_env(
        {"AIJOBS_SIM_LATENCY_MS": str(args.latency_ms), "AIJOBS_SIM_RPM_LIMIT": "0"}
    )
    sim_argv = [*aijobs_command(), "simulator", "--host", "127.0.0.1", "--port", str(sim_port)]
    sim = spawn("simulator", sim_argv, sim_env, log_dir)
    children.append(sim)
    sim_base = f"http://127.0.0.1:{sim_port}"

    env = child_env(
        {
            "REDIS_URL": server.url,
            "DATABASE_URL": database_url,
            "OPENAI_BASE_URL": f"{sim_base}/v1",
            "OPENAI_API_KEY": PROVIDER_KEY,
            "AIJOBS_API_KEYS": f"bench:{API_KEY}",
            "AIJOBS_EMBED_CONCURRENCY": str(args.concurrency),
            "AIJOBS_EMBED_BATCH_SIZE": str(BATCH_SIZE),
            "AIJOBS_EMBED_MAX_INPUTS": str(max(100_000, args.texts)),
            "AIJOBS_MAX_BODY_BYTES": str(max(16 * 1024 * 1024, 200 * args.texts)),
            "AIJOBS_LOG_LEVEL": "WARNING",
        }
    )
    api_port = free_port()
    api_argv = [*aijobs_command(), "api", "--host", "127.0.0.1", "--port", str(api_port)]
    api = spawn("api", api_argv, env, log_dir)
    children.append(api)
    hostname = f"bench-embed-{uuid.uuid4().hex[:8]}@127.0.0.1"
    worker_argv = [
        *aijobs_command(),
        "worker",
        "--queues",
        "embed",
        "--concurrency",
        str(WORKER_CONCURRENCY),
        "--hostname",
        hostname,
    ]
    worker = spawn("worker", worker_argv, env, log_dir)
    children.append(worker)
    api_base = f"http://127.0.0.1:{api_port}"

    def answers(url: str) -> bool:
        try:
            return httpx.get(url, timeout=1.0, trust_env=False).is_success
        except httpx.HTTPError:
            return False

    wait_until(lambda: answers(f"{sim_base}/_sim/stats"), 30, "the simulator", sim)
    wait_until(lambda: answers(f"{api_base}/readyz"), 60, "the API", api)
    app = create_celery_app(Settings(redis_url=server.url, database_url=database_url))
    try:
        wait_worker_ready(app, hostname, worker)
    finally:
        app.close()
    return Stack(tmp, server, database_url, sim, sim_base, api, api_base, worker, children)


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
                raise BenchError(f"timed out after {timeout_s:.0f}s waiting for the job")
            stack.alive_check()
    raise BenchError("the event stream ended before `done`")


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
        cpu_before = stack.cpu()
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
        run.status = follow_until_done(client, stack, run.job_id, run, args.timeout)

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
        cpu_after = stack.cpu()
        run.cpu = {k: cpu_after[k] - cpu_before[k] for k in cpu_after}
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
        cpu_before = stack.cpu()
        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency, thread_name_prefix="direct") as pool:
            for future in [pool.submit(embed, batch) for batch in plan]:
                future.result()
        run.seconds = time.perf_counter() - started
        cpu_after = stack.cpu()
        run.cpu = {k: cpu_after[k] - cpu_before[k] for k in cpu_after}
        run.requests = stack.provider_requests()
    finally:
        client.close()
    return run, vectors


# -- checks and report -------------------------------------------------------------------


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


def row(name: str, *values: str) -> str:
    return f"{name:<36}" + "".join(f"{v:<42}" for v in values).rstrip()


def render(args: argparse.Namespace, report: dict[str, Any]) -> str:
    sysf, dirf = report["system"], report["direct"]
    check, check_b64 = report["check_float"], report["check_base64"]
    lines = [
        f"embeddings benchmark: {args.texts:,} texts, {args.dimensions} dimensions, "
        f"batches of {BATCH_SIZE} ({report['batches']} requests), {args.concurrency} in flight",
        row("", "system (API + worker)", f"direct (SDK, {args.concurrency} threads)"),
        row("texts / s", f"{sysf['texts_per_s']:,.0f}", f"{dirf['texts_per_s']:,.0f}"),
        row("total", f"{sysf['total_s']:.2f} s", f"{dirf['total_s']:.2f} s"),
        row("provider requests", str(sysf["provider_requests"]), str(dirf["provider_requests"])),
        row(
            "  submit (encode + POST)",
            f"{sysf['encode_s'] + sysf['post_s']:.2f} s "
            f"(encode {sysf['encode_s']:.2f}, {sysf['post_body_bytes'] / 1e6:.1f} MB)",
        ),
        row("  queue wait (created -> started)", f"{sysf['queue_wait_s']:.2f} s"),
        row(
            "  worker run (started -> finished)",
            f"{sysf['worker_run_s']:.2f} s (first batch {sysf['first_batch_s'] or 0:.2f} s)",
            f"{dirf['total_s']:.2f} s",
        ),
        row("  finished -> done event", f"{sysf['finished_to_done_event_s']:.2f} s"),
        row(
            "  GET floats (server, body, parse)",
            f"{sysf['get_s']:.2f} s ({sysf['get_headers_s']:.2f}, {sysf['get_body_s']:.2f}, "
            f"{sysf['get_parse_s']:.2f}; {sysf['get_bytes'] / 1e6:.0f} MB)",
        ),
        row(
            "  GET base64 (server, body, decode)",
            f"{sysf['get_base64_s']:.2f} s ({sysf['get_base64_headers_s']:.2f}, "
            f"{sysf['get_base64_body_s']:.2f}, {sysf['get_base64_decode_s']:.2f}; "
            f"{sysf['get_base64_bytes'] / 1e6:.0f} MB)",
        ),
        row(
            "texts / s with the base64 GET",
            f"{sysf['texts_per_s_base64']:,.0f} ({sysf['total_base64_s']:.2f} s)",
        ),
        row("/healthz worst during GET floats", f"{sysf['healthz_max_s_during_get']:.2f} s"),
        *[
            row(f"CPU s, {name}", f"{sysf['cpu_s'][name]:.2f}", f"{dirf['cpu_s'][name]:.2f}")
            for name in sysf["cpu_s"]
        ],
        row(
            "vectors equal direct (sampled)",
            f"floats {check['checked'] - len(check['problems'])}/{check['checked']}, "
            f"base64 {check_b64['checked'] - len(check_b64['problems'])}/{check_b64['checked']}"
            f" (max |diff| {max(check['max_abs_diff'], check_b64['max_abs_diff']):.1e})",
        ),
        f"ratio system/direct: texts/s x{report['ratio']:.2f} "
        f"(x{report['ratio_base64']:.2f} with the base64 GET)",
    ]
    for problem in report["problems"][:10]:
        lines.append(f"PROBLEM: {problem}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=100_000, help="texts to embed")
    parser.add_argument("--dimensions", type=int, default=256, help="vector size asked for")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="requests in flight (job and direct)"
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="simulator first-byte delay")
    parser.add_argument("--sample", type=int, default=SAMPLE, help="vectors compared")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds for the job")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if min(args.texts, args.dimensions, args.concurrency) < 1:
        parser.error("--texts, --dimensions and --concurrency must be >= 1")
    if not 1 <= args.concurrency <= 64:
        parser.error("--concurrency must be 1..64 (AIJOBS_EMBED_CONCURRENCY's range)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    texts = make_texts(args.texts)
    plan = plan_batches(
        texts, max_inputs=BATCH_SIZE, max_tokens=Settings.model_fields["embed_batch_tokens"].default
    )
    with contextlib.ExitStack() as stack:
        stack.enter_context(sigterm_as_interrupt())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aijobs-embed-")))
        try:
            procs = start_stack(args, tmp, stack)
            system, ours, ours_b64 = run_system(procs, args, texts)
            direct, theirs = run_direct(procs, args, texts, plan)
        except (BenchError, Failed, httpx.HTTPError, openai.OpenAIError) as exc:
            print(f"benchmark failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    check = compare(ours, theirs, args.dimensions, args.sample)
    check_b64 = compare(ours_b64, theirs, args.dimensions, args.sample)
    sysf, dirf = system.figures(args.texts), direct.figures(args.texts)
    problems = [f"floats: {p}" for p in check["problems"]]
    problems += [f"base64: {p}" for p in check_b64["problems"]]
    for name, fig in (("system", sysf), ("direct", dirf)):
        if fig["provider_requests"] != len(plan):
            problems.append(
                f"{name}: {fig['provider_requests']} provider requests, not {len(plan)}"
            )
    report = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "batch_size": BATCH_SIZE,
        "batches": len(plan),
        "system": sysf,
        "direct": dirf,
        "ratio": sysf["texts_per_s"] / max(dirf["texts_per_s"], 1e-9),
        "ratio_base64": sysf["texts_per_s_base64"] / max(dirf["texts_per_s"], 1e-9),
        "check_float": check,
        "check_base64": check_b64,
        "problems": problems,
        "total_run_s": time.time() - started,
    }
    print(render(args, report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if not problems else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; everything stopped", file=sys.stderr)
        sys.exit(130)
