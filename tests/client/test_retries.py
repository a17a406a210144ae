"""Retries: connection drops, 503 and 429 in front of the real API, and exactly one job
made however many times the submit had to be sent."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from aijobs.client import ApiError, ApiUnavailable, AsyncClient, Client, RetryPolicy
from aijobs.devtools.redis_server import free_port
from tests.client.httpproxy import Answer, Drop, ForwardThenCut, HttpProxy
from tests.conftest import KEY_A

pytestmark = pytest.mark.usefixtures("worker")
FAST = RetryPolicy(base_s=0.02, cap_s=0.1)
BUSY = b'{"detail": "too many submissions: at most 50 per second"}'


def jobs_marked(client: Client, marker: str) -> list[Any]:
    return [j for j in client.iter_jobs(page_size=100) if j.metadata.get("marker") == marker]


def test_a_submit_through_drops_503_and_429_makes_one_job(api_url: str) -> None:
    marker = uuid.uuid4().hex
    with HttpProxy.before(api_url) as proxy, Client(proxy.url, KEY_A, retry=FAST) as client:
        # The API makes the job but its answer is lost; then the connection is reset
        # before anything is sent; then the API is "unavailable", then "busy".
        proxy.plan("POST", "/v1/jobs", ForwardThenCut(), Drop(), Answer(503),
                   Answer(429, {"Retry-After": "1"}, BUSY))  # fmt: skip
        started = time.monotonic()
        job = client.generate("m", "hi", max_tokens=2, metadata={"marker": marker})
        took_s = time.monotonic() - started
        posts = proxy.requests("POST", "/v1/jobs")
        made = jobs_marked(client, marker)
    assert len(posts) == 5  # four failures, then the answer
    keys = {p.headers["idempotency-key"] for p in posts}
    assert len(keys) == 1 and len(keys.pop()) == 32  # one key, reused by every retry
    assert job.id in posts[0].swallowed.decode()  # the job the lost answer carried
    assert [j.id for j in made] == [job.id]  # and no other
    assert took_s >= 1.0  # the 429's Retry-After was waited out


def test_async_submit_through_the_same_faults_makes_one_job(api_url: str) -> None:
    marker = uuid.uuid4().hex

    async def main(proxy: HttpProxy) -> str:
        async with AsyncClient(proxy.url, KEY_A, retry=FAST) as client:
            job = await client.generate("m", "hi", max_tokens=2, metadata={"marker": marker})
            return job.id

    with HttpProxy.before(api_url) as proxy:
        proxy.plan("POST", "/v1/jobs", ForwardThenCut(), Answer(502), Drop(),
                   Answer(429, {"Retry-After": "0"}))  # fmt: skip
        job_id = asyncio.run(main(proxy))
        posts = proxy.requests("POST", "/v1/jobs")
    with Client(api_url, KEY_A) as client:
        assert [j.id for j in jobs_marked(client, marker)] == [job_id]
    assert len(posts) == 5 and len({p.headers["idempotency-key"] for p in posts}) == 1


def test_reads_and_cancels_are_retried(api_url: str) -> None:
    with Client(api_url, KEY_A) as direct:
        job = direct.generate("m", "hi", max_tokens=2)
        direct.wait(job.id)
    with HttpProxy.before(api_url) as proxy, Client(proxy.url, KEY_A, retry=FAST) as client:
        proxy.plan("GET", f"/v1/jobs/{job.id}", Answer(502), Drop(), Answer(504))
        proxy.plan("POST", f"/v1/jobs/{job.id}/cancel", Drop(), Answer(503))
        assert client.get(job.id).status == "succeeded"
        assert client.cancel(job.id).job.id == job.id
        assert len(proxy.requests("GET", f"/v1/jobs/{job.id}")) == 4
        assert len(proxy.requests("POST", f"/v1/jobs/{job.id}/cancel")) == 3


def test_what_is_not_retried_and_when_retries_run_out(api_url: str) -> None:
    with HttpProxy.before(api_url) as proxy, Client(proxy.url, KEY_A, retry=FAST) as client:
        # A refusal is final at once.
        proxy.plan("GET", "/v1/jobs/x", Answer(400, body=b'{"detail": "no", "code": "odd"}'))
        with pytest.raises(ApiError) as refused:
            client.get("x")
        error = refused.value
        assert (error.status, error.code, error.detail) == (400, "odd", "no")
        assert len(proxy.requests("GET", "/v1/jobs/x")) == 1
        # A Retry-After past the policy's patience is handed to the caller.
        proxy.plan("GET", "/v1/jobs/y", Answer(429, {"Retry-After": "3600"}, BUSY))
        with pytest.raises(ApiError) as later:
            client.get("y")
        assert later.value.status == 429 and later.value.retry_after_s == 3600
        assert later.value.code == "rate_limited" and "too many submissions" in later.value.detail
        # Five tries (the policy's attempts), then the last answer is the error.
        proxy.plan("GET", "/v1/jobs/z", *[Answer(503)] * 5)
        with pytest.raises(ApiError) as down:
            client.get("z")
        assert down.value.status == 503 and len(proxy.requests("GET", "/v1/jobs/z")) == 5
    dead = f"http://127.0.0.1:{free_port()}"
    with Client(dead, KEY_A, retry=FAST) as client, pytest.raises(ApiUnavailable) as gone:
        client.jobs()
    assert "cannot reach the API" in str(gone.value) and isinstance(gone.value, ConnectionError)
