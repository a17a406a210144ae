"""Tenants, keys and limits: nobody reads what is not theirs, nobody takes the whole fleet."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from aijobs.api.main import create_app
from aijobs.settings import Settings
from aijobs.store import JobRepository
from tests.conftest import KEY_A, KEY_B, KEY_C, TENANT_A, serve_in_thread
from tests.support import queued, read_events, wait_for

pytestmark = pytest.mark.usefixtures("worker")

GEN = {"kind": "generate", "model": "m", "max_tokens": 3,
       "messages": [{"role": "user", "content": "x"}]}  # fmt: skip


def finished_job(client: httpx.Client) -> str:
    job_id = client.post("/v1/jobs", json=GEN).json()["id"]
    read_events(client, job_id)
    return job_id


def test_cross_tenant_requests_are_exactly_unknown_ids(
    api_url: str, client: httpx.Client, client_b: httpx.Client
) -> None:
    """Two tenants, every route that takes an id, every id: 100% 404, and the same 404."""
    ids = {"a": finished_job(client), "b": finished_job(client_b), "unknown": "0" * 32}
    routes = [("GET", "/v1/jobs/{id}"), ("GET", "/v1/jobs/{id}?format=base64"),
              ("GET", "/v1/jobs/{id}/events"), ("GET", "/v1/jobs/{id}/events?after=1"),
              ("POST", "/v1/jobs/{id}/cancel"), ("POST", "/v1/jobs/{id}/token")]  # fmt: skip
    for caller, client_, own in (("a", client, "a"), ("b", client_b, "b")):
        for method, route in routes:
            for which, job_id in ids.items():
                answer = client_.request(method, route.format(id=job_id))
                if which == own:
                    assert answer.status_code < 400, (caller, route, answer.text)
                    continue
                assert answer.status_code == 404, (caller, method, route, which)
                assert answer.json() == {"detail": "job not found"}
                assert ids[which] not in answer.text or which == "unknown"
            for which, job_id in ids.items():
                if which == own:
                    continue
                url = api_url.replace("http", "ws") + f"/v1/jobs/{job_id}/ws"
                key = KEY_A if caller == "a" else KEY_B
                with pytest.raises(Exception, match="404"):
                    connect(url, additional_headers={"Authorization": f"Bearer {key}"}).close()
        listed = {j["id"] for j in client_.get("/v1/jobs", params={"limit": 100}).json()["data"]}
        assert ids["a" if caller == "b" else "b"] not in listed


def test_same_idempotency_key_200_times_at_once_makes_one_job(api_url: str) -> None:
    key = f"idem-{time.time_ns()}"
    body = {**GEN, "metadata": {"order": 42}}
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {KEY_A}"}) as c:

        def submit(_: int) -> httpx.Response:
            return c.post("/v1/jobs", json=body, headers={"Idempotency-Key": key}, timeout=60)

        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(submit, range(200)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 199
    # Replays count as submissions (a replay is never refused by a limit, but it uses the
    # tenant's rate): let this second's budget pass before the next test submits.
    time.sleep(1.1)


def test_idempotency_key_with_another_body_is_refused_and_keys_are_per_tenant(
    client: httpx.Client, client_b: httpx.Client
) -> None:
    key = {"Idempotency-Key": f"k-{time.time_ns()}"}
    first = client.post("/v1/jobs", json=GEN, headers=key)
    again = client.post("/v1/jobs", json=GEN, headers=key)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    other = client.post("/v1/jobs", json={**GEN, "max_tokens": 4}, headers=key)
    assert other.status_code == 409
    assert other.json()["detail"] == "Idempotency-Key: already used with a different request"
    theirs = client_b.post("/v1/jobs", json=GEN, headers=key)
    assert theirs.status_code == 202 and theirs.json()["id"] != first.json()["id"]
    bad = client.post("/v1/jobs", json=GEN, headers={"Idempotency-Key": "has space"})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("Idempotency-Key")


def test_keys_are_created_once_listed_without_secret_and_revoked(
    api_url: str, settings: Settings, repo: JobRepository
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIJOBS_")}
    env |= {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.require_redis_url()}

    def aijobs(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "aijobs.cli", *args], env=env,
                              capture_output=True, text=True, check=False, timeout=60)  # fmt: skip

    created = aijobs("keys", "create", "--tenant", "tenant-k", "--name", "ci")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("aij_") and len(key) > 40
    headers = {"Authorization": f"Bearer {key}"}
    job = httpx.post(f"{api_url}/v1/jobs", json=GEN, headers=headers)
    assert job.status_code == 202
    listing = aijobs("keys", "list", "--tenant", "tenant-k").stdout
    assert key not in listing and key[:12] in listing
    key_id = listing.split()[0]
    assert aijobs("keys", "revoke", key_id).returncode == 0
    assert httpx.get(f"{api_url}/v1/jobs", headers=headers).status_code == 401
    assert aijobs("keys", "revoke", key_id).returncode == 1
    rows = repo.get(job.json()["id"])
    assert rows is not None and key not in str(vars(rows))


@pytest.fixture
def strict_api(settings: Settings) -> Iterator[str]:
    """A second API process-in-a-thread with tight limits, on the same store and broker."""
    tight = settings.model_copy(
        update={
            "tenant_submits_per_s": 5,
            "tenant_max_active_jobs": 3,
            "tenant_max_readers": 2,
            "max_input_chars": 1000,
            "max_schema_bytes": 300,
            "cors_origins": ["https://app.example"],
            "token_ttl_s": 10,
        }
    )
    server, thread, url = serve_in_thread(create_app(tight))
    yield url
    server.should_exit = True
    thread.join(10)


def test_every_limit_answers_clearly_and_queues_nothing(
    strict_api: str, simulator: Any, rds: Any
) -> None:
    c = httpx.Client(base_url=strict_api, headers={"Authorization": f"Bearer {KEY_C}"}, timeout=30)
    long_text = {**GEN, "messages": [{"role": "user", "content": "x" * 1001}]}
    too_long = c.post("/v1/jobs", json=long_text)
    assert too_long.status_code == 422
    assert too_long.json()["detail"] == "messages: 1001 characters in all; the limit is 1000"
    props = {f"field_{i}": {"type": "string"} for i in range(20)}
    big_schema = {"kind": "extract", "model": "m", "text": "t",
                  "schema": {"type": "object", "properties": props}}  # fmt: skip
    schema = c.post("/v1/jobs", json=big_schema)
    assert schema.status_code == 422 and schema.json()["detail"].startswith("schema: ")
    assert "the limit is 300" in schema.json()["detail"]

    # Unfinished jobs: three slow ones fill the tenant's allowance.
    httpx.put(f"{simulator.base_url}/_sim/config", json={"tokens_per_second": 5}).raise_for_status()
    slow = {**GEN, "max_tokens": 200}
    ids = [c.post("/v1/jobs", json=slow).json()["id"] for _ in range(3)]
    before = queued(rds)

    def refused_for_unfinished() -> httpx.Response | None:
        # Refused submissions count against the per-second rate too (it is charged
        # first): poll past that window; none of these can make a job.
        answer = c.post("/v1/jobs", json=slow)
        assert answer.status_code == 429
        return answer if answer.json()["detail"].startswith("too many unfinished") else None

    busy = wait_for(refused_for_unfinished, timeout_s=10, interval_s=0.3)
    assert busy.headers["Retry-After"] == "5"
    assert busy.json()["detail"].startswith("too many unfinished jobs: 3")
    assert queued(rds) <= before

    # Readers: two open streams are the tenant's allowance on this process.
    streams = [c.stream("GET", f"/v1/jobs/{ids[i]}/events") for i in range(2)]
    opened = [s.__enter__() for s in streams]
    assert all(r.status_code == 200 for r in opened)
    third = c.get(f"/v1/jobs/{ids[2]}/events")
    assert third.status_code == 429
    assert third.json()["detail"] == "too many open event readers: at most 2 per tenant"
    for stream in streams:
        stream.__exit__(None, None, None)
    for job_id in ids:
        c.post(f"/v1/jobs/{job_id}/cancel")
    wait_for(lambda: all(c.get(f"/v1/jobs/{i}").json()["status"] == "cancelled" for i in ids))
    # The closed readers gave their slots back: two can read again.
    for job_id in ids[:2]:
        assert read_events(c, job_id)[-1].data == {"status": "cancelled"}

    # Submissions per second: a burst past 5 gets 429 with Retry-After (submissions in
    # the last second only make fewer of the burst pass).
    fast = {"tokens_per_second": 400}
    httpx.put(f"{simulator.base_url}/_sim/config", json=fast).raise_for_status()
    burst = [c.post("/v1/jobs", json=GEN) for _ in range(8)]
    statuses = [b.status_code for b in burst]
    assert statuses.count(202) <= 5 and 429 in statuses
    limited = next(b for b in burst if b.status_code == 429)
    assert limited.json()["detail"] == "too many submissions: at most 5 per second"
    assert int(limited.headers["Retry-After"]) >= 1
    c.close()


def test_event_token_opens_one_job_for_a_short_time(strict_api: str, client: httpx.Client) -> None:
    mine, other = finished_job(client), finished_job(client)
    issued = httpx.post(f"{strict_api}/v1/jobs/{mine}/token",
                        headers={"Authorization": f"Bearer {KEY_A}"}).json()  # fmt: skip
    token = issued["token"]
    assert issued["events_url"].endswith(f"/v1/jobs/{mine}/events?token={token}")
    events = httpx.get(f"{strict_api}/v1/jobs/{mine}/events", params={"token": token})
    assert events.status_code == 200 and "event: done" in events.text
    assert (
        httpx.get(f"{strict_api}/v1/jobs/{other}/events", params={"token": token}).status_code
        == 401
    )
    assert httpx.get(f"{strict_api}/v1/jobs/{mine}", params={"token": token}).status_code == 401
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert (
        httpx.get(f"{strict_api}/v1/jobs/{mine}/events", params={"token": forged}).status_code
        == 401
    )
    ws = strict_api.replace("http", "ws") + f"/v1/jobs/{mine}/ws?token={token}"
    with connect(ws) as socket:
        assert '"event":"status"' in socket.recv(timeout=10)


def test_cors_is_off_unless_configured(api_url: str, strict_api: str) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}  # fmt: skip
    allowed = httpx.options(f"{strict_api}/v1/jobs", headers=preflight)
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    stranger = httpx.options(
        f"{strict_api}/v1/jobs", headers={**preflight, "Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in stranger.headers
    default = httpx.options(f"{api_url}/v1/jobs", headers=preflight)
    assert "access-control-allow-origin" not in default.headers


def test_purge_deletes_inputs_outputs_and_streams(
    client: httpx.Client, settings: Settings, rds: Any, repo: JobRepository
) -> None:
    from aijobs.connections import sync_client
    from aijobs.store.retention import purge

    job_id = finished_job(client)
    assert rds.exists(f"aijobs:{{{job_id}}}:events")
    client_ = sync_client(settings.redis_target())
    report = purge(repo, client_, older_than_s=0)
    client_.close()
    assert report.jobs >= 1
    row = repo.get(job_id)
    assert row is not None and row.input == {} and row.result is None and row.purged_at
    assert not rds.exists(f"aijobs:{{{job_id}}}:events")
    shown = client.get(f"/v1/jobs/{job_id}").json()
    assert shown["purged"] is True and shown["status"] == "succeeded" and shown["result"] is None
    assert [e.event for e in read_events(client, job_id)] == ["done"]
    assert TENANT_A  # the row keeps its owner: still 404 for others (see the matrix)
