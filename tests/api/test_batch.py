"""``POST /v1/jobs/batch``: many jobs in one request, one transaction and one pipeline; a
bad item fails alone; idempotency keys make a re-sent batch create nothing new."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import func, select, update

from aijobs import redis_keys
from aijobs.api.main import create_app
from aijobs.fairqueue import FairQueue, QueuedJob
from aijobs.settings import Settings
from aijobs.store import Job, JobRepository
from tests.conftest import KEY_C, TENANT_A, TENANT_C, serve_in_thread
from tests.support import queued, read_events

TENANT_D, KEY_D = "tenant-d", "key-d-0123456789"


def body(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "generate", "model": "m", "max_tokens": 2,
            "messages": [{"role": "user", "content": prompt}], **extra}  # fmt: skip


def rows_of(repo: JobRepository, tenant: str) -> int:
    with repo.db.session() as session:
        return int(session.scalar(select(func.count()).where(Job.tenant == tenant)) or 0)


@pytest.fixture
def client_c(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=api_url, headers={"Authorization": f"Bearer {KEY_C}"}, timeout=60
    ) as c:
        yield c


def test_a_batch_of_500_in_one_request_and_resending_it_creates_nothing(
    client_c: httpx.Client, repo: JobRepository, rds: redis.Redis
) -> None:
    run = uuid.uuid4().hex[:8]
    # Scheduled an hour ahead, so the 500 wait in Redis without loading the worker.
    jobs = [body(f"{run} {i}", delay_s=3600, priority=i % 10,
                 metadata={"run": run, "i": i}, idempotency_key=f"{run}-{i}")
            for i in range(500)]  # fmt: skip
    before = rows_of(repo, TENANT_C)
    answer = client_c.post("/v1/jobs/batch", json={"jobs": jobs})
    assert answer.status_code == 200, answer.text[:500]
    results = answer.json()["results"]
    assert [r["status"] for r in results] == [202] * 500
    assert [r["job"]["metadata"]["i"] for r in results] == list(range(500))  # input order
    assert [r["job"]["priority"] for r in results] == [i % 10 for i in range(500)]
    assert not any(r["replayed"] for r in results)
    assert rows_of(repo, TENANT_C) == before + 500
    ids = [r["job"]["id"] for r in results]
    held = FairQueue(rds).where(
        [QueuedJob(job_id, "generate", TENANT_C, i % 10) for i, job_id in enumerate(ids)]
    )
    assert all(held)  # pushed, in one pipeline, delayed with their priorities

    again = client_c.post("/v1/jobs/batch", json={"jobs": jobs})
    assert again.status_code == 200
    replayed = again.json()["results"]
    assert [r["job"]["id"] for r in replayed] == ids
    assert all(r["status"] == 202 and r["replayed"] for r in replayed)
    assert rows_of(repo, TENANT_C) == before + 500
    _cancel_waiting(repo, TENANT_C)


def _cancel_waiting(repo: JobRepository, tenant: str) -> None:
    # Clean up what waits an hour: they would count as the tenant's unfinished jobs.
    with repo.db.session() as session:
        session.execute(
            update(Job)
            .where(Job.tenant == tenant, Job.status == "queued")
            .values(status="cancelled", cancel_requested=True)
        )


def test_mixed_good_and_bad_items_each_get_their_own_answer(
    client: httpx.Client, repo: JobRepository, rds: redis.Redis, settings: Settings, worker: Any
) -> None:
    run = uuid.uuid4().hex[:8]
    too_big = body(run, messages=[{"role": "user", "content": "x" * 800_000}] * 3)
    items: list[Any] = [
        body(f"{run} good", idempotency_key=f"{run}-a"),  # 0: 202
        body(run, messages=[{"role": "wizard", "content": "x"}]),  # 1: 422
        {"kind": "extract", "model": "m", "text": "t",
         "schema": {"type": "object", "properties": {"a": {"type": "string"}}, "oneOf": []}},
        "not an object",  # 3: 422
        too_big,  # 4: 413, as it would be alone
        body(f"{run} other", idempotency_key=f"{run}-b"),  # 5: 202
        body(f"{run} good", idempotency_key=f"{run}-a"),  # 6: the same key and body as 0
        body(f"{run} changed", idempotency_key=f"{run}-a"),  # 7: the key, another body
        body(run, idempotency_key=17),  # 8: a key that is not text
        body(run, run_at="2030-01-01T00:00:00"),  # 9: a naive run_at
        body(run, status="succeeded"),  # 10: a server-owned field
    ]  # fmt: skip
    before_rows, before_queue = rows_of(repo, TENANT_A), queued(rds)
    answer = client.post("/v1/jobs/batch", json={"jobs": items})
    assert answer.status_code == 200, answer.text[:500]
    results = answer.json()["results"]
    assert [r["status"] for r in results] == [202, 422, 422, 422, 413, 202, 202, 409, 422,
                                              422, 422]  # fmt: skip
    details = [r.get("detail") or "" for r in results]
    assert details[1].startswith("messages[0].role:")
    assert details[2].startswith("schema") and "oneOf" in details[2]
    assert details[3] == "body: a job body must be a JSON object"
    assert "request body exceeds" in details[4]
    assert results[6]["job"]["id"] == results[0]["job"]["id"] and results[6]["replayed"]
    assert "Idempotency-Key" in details[7] or "idempotency_key" in details[7]
    assert details[8].startswith("idempotency_key:")
    assert details[9].startswith("run_at:") and "zone" in details[9]
    assert details[10] == "status: unknown field"
    assert results[1]["errors"][0]["field"] == "messages[0].role"
    # Two jobs made, and only those queued.
    assert rows_of(repo, TENANT_A) == before_rows + 2
    for index in (0, 5):
        events = read_events(client, results[index]["job"]["id"])
        assert events[-1].data == {"status": "succeeded"}
    assert queued(rds) <= before_queue


def test_the_whole_batch_is_refused_when_it_is_not_one(
    client: httpx.Client, settings: Settings, rds: redis.Redis
) -> None:
    before = queued(rds)
    over = [body("x")] * (settings.batch_max_jobs + 1)
    answer = client.post("/v1/jobs/batch", json={"jobs": over})
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith(f"jobs: at most {settings.batch_max_jobs}")
    for bad, field in [
        ({"jobs": []}, "jobs"),
        ({}, "jobs"),
        ({"jobs": "nope"}, "jobs"),
        ({"jobs": [body("x")], "extra": 1}, "extra"),
        ([body("x")], "body"),
    ]:
        refused = client.post("/v1/jobs/batch", json=bad)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["detail"].startswith(field), refused.text
    huge = client.post(
        "/v1/jobs/batch",
        content=b'{"jobs": ["' + b"x" * (settings.max_jobs_body_bytes + 10) + b'"]}',
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    assert queued(rds) <= before


@pytest.fixture(scope="module")
def tight_api(settings: Settings) -> Iterator[str]:
    """An API with a small unfinished-jobs limit and submission rate, on the same store."""
    # A tenant of its own: its rate window and unfinished jobs are this test's alone.
    # (Built anew, not by model_copy: a copy keeps the original's cached bootstrap keys.)
    tight = Settings(
        redis_url=settings.redis_url, database_url=settings.database_url,
        api_keys=f"{TENANT_D}:{KEY_D}", key_cache_ttl_s=0, tenant_max_active_jobs=5,
        tenant_submits_per_s=2, max_body_bytes=4096,
    )  # fmt: skip
    server, thread, url = serve_in_thread(create_app(tight))
    yield url
    server.should_exit = True
    thread.join(10)


def test_a_batch_is_one_submission_and_its_jobs_count_one_by_one(
    tight_api: str, repo: JobRepository
) -> None:
    with httpx.Client(
        base_url=tight_api, headers={"Authorization": f"Bearer {KEY_D}"}, timeout=30
    ) as c:
        run = uuid.uuid4().hex[:8]
        room = 5 - repo.count_active(TENANT_D)
        items = [body(f"{run} {i}", delay_s=3600) for i in range(room + 2)]
        # The same key twice takes one place; an item too large for a generate body is
        # a 413 for it alone (max_body_bytes applies per item, as to a body of its own).
        items.insert(1, body(f"{run} 0", delay_s=3600, idempotency_key=f"{run}-k"))
        items.insert(2, body(f"{run} 0", delay_s=3600, idempotency_key=f"{run}-k"))
        items.append(body("y" * 5000))
        answer = c.post("/v1/jobs/batch", json={"jobs": items})
        assert answer.status_code == 200, answer.text
        statuses = [r["status"] for r in answer.json()["results"]]
        assert statuses == [202, 202, 202] + [202] * (room - 2) + [429] * 3 + [413], statuses
        results = answer.json()["results"]
        assert results[1]["job"]["id"] == results[2]["job"]["id"]
        assert results[-2]["detail"].startswith("too many unfinished jobs")
        # A second batch within the second: the rate counts batches, not their jobs.
        assert c.post("/v1/jobs/batch", json={"jobs": [body("z")]}).status_code == 200
        third = c.post("/v1/jobs/batch", json={"jobs": [body("z")]})
        assert third.status_code == 429 and third.headers["Retry-After"]
    _cancel_waiting(repo, TENANT_D)


def test_a_delayed_batch_item_waits_in_the_delayed_set(
    client: httpx.Client, rds: redis.Redis
) -> None:
    results = client.post(
        "/v1/jobs/batch", json={"jobs": [body("later", delay_s=120, priority=9)]}
    ).json()["results"]
    job = results[0]["job"]
    member = redis_keys.delayed_member("generate", TENANT_A, 9, job["id"])
    assert rds.zscore(redis_keys.DELAYED, member) is not None
    client.post(f"/v1/jobs/{job['id']}/cancel")
