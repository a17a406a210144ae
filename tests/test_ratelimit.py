"""The fleet-wide limiter: exact request windows, token buckets, and waits learned from 429s."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis

from aijobs.ratelimit import RateLimiter
from aijobs.settings import RateLimit
from tests.conftest import LIMITED_MODEL
from tests.support import read_events


@pytest.fixture
def limiter(redis_url: str) -> RateLimiter:
    client = redis.Redis.from_url(redis_url)
    limits = {"rpm-model": RateLimit(requests=3, window_s=1.0), "tpm-model": RateLimit(tokens=100)}
    return RateLimiter(client, limits, provider=f"p-{uuid.uuid4().hex[:6]}", safety_ms=0)


def test_requests_per_window_are_exact(limiter: RateLimiter) -> None:
    assert [limiter.acquire("rpm-model", 0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire("rpm-model", 0)
    assert 0 < wait <= 1.001
    assert limiter.acquire("unlimited-model", 0) == 0.0


def test_token_bucket_charges_the_estimate_and_settles(limiter: RateLimiter) -> None:
    assert limiter.acquire("tpm-model", 80) == 0.0
    wait = limiter.acquire("tpm-model", 80)  # 20 left, 80 wanted: 60 tokens at 100/60 s
    assert 30 < wait <= 36
    limiter.settle("tpm-model", estimated=80, actual=10)  # 70 tokens come back
    assert limiter.acquire("tpm-model", 80) == 0.0


def test_a_provider_429_blocks_every_caller(limiter: RateLimiter) -> None:
    limiter.block_for("any-model", 5.0)
    wait = limiter.acquire("any-model", 0)
    assert 4.5 < wait <= 5.0
    assert limiter.acquire("other-model", 0) == 0.0


@pytest.mark.usefixtures("worker")
def test_many_jobs_never_exceed_the_providers_window(client: httpx.Client, simulator: Any) -> None:
    config = {"rpm_limit": 5, "rpm_window_s": 2.0, "tokens_per_second": 0}
    httpx.put(f"{simulator.base_url}/_sim/config", json=config).raise_for_status()
    body = {"kind": "generate", "model": LIMITED_MODEL, "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}]}  # fmt: skip
    ids = [client.post("/v1/jobs", json=body).json()["id"] for _ in range(18)]
    with ThreadPoolExecutor(max_workers=18) as pool:
        streams = list(pool.map(lambda i: read_events(client, i, timeout_s=90), ids))
    rows = [client.get(f"/v1/jobs/{i}").json() for i in ids]
    assert [r["status"] for r in rows] == ["succeeded"] * 18
    assert all(r["attempts"] == 1 for r in rows)  # waiting for budget costs no attempt
    stats = httpx.get(f"{simulator.base_url}/_sim/stats").json()
    assert stats["rate_limited"] == 0
    assert stats["max_in_window"] <= 5
    assert stats["requests_by_model"][LIMITED_MODEL] == 18
    deferred = [e for events in streams for e in events if e.data.get("reason") == "rate_limit"]
    assert deferred  # some jobs were told they wait for budget


@pytest.mark.usefixtures("worker")
def test_a_long_retry_wait_waits_in_the_queue(client: httpx.Client, simulator: Any) -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"
    fault = {"kind": "rate_limit", "model": model, "retry_after_s": 3.0}
    httpx.post(f"{simulator.base_url}/_sim/faults", json={"faults": [fault]}).raise_for_status()
    body = {"kind": "generate", "model": model, "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}]}  # fmt: skip
    job = client.post("/v1/jobs", json=body).json()
    events = read_events(client, job["id"], timeout_s=60)
    row = client.get(f"/v1/jobs/{job['id']}").json()
    assert row["status"] == "succeeded" and row["attempts"] == 2
    times = httpx.get(f"{simulator.base_url}/_sim/stats").json()["request_times"]["chat"]
    assert times[1] - times[0] >= 3.0
    retrying = [e.data for e in events if e.event == "status" and e.data["status"] == "retrying"]
    assert retrying[0]["wait_s"] >= 3.0  # longer than a worker sleeps: it waited in the queue
