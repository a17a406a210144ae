"""``run_at`` / ``delay_s`` and ``priority`` on a job body: a scheduled job starts no
earlier than its time and soon after it, holding no worker slot meanwhile; bad times are
422s that name the field; a high priority overtakes the tenant's own backlog."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from aijobs import redis_keys
from aijobs.devtools.simulator import RunningSimulator
from tests.conftest import TENANT_A
from tests.stack import Stack, running_stack
from tests.support import SseEvent, iter_sse, queued, read_events, wait_for


def body(prompt: str = "x", **extra: Any) -> dict[str, Any]:
    return {"kind": "generate", "model": "m", "max_tokens": 3,
            "messages": [{"role": "user", "content": prompt}], **extra}  # fmt: skip


def rfc3339(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def follow_with_times(client: httpx.Client, job_id: str) -> list[tuple[datetime, SseEvent]]:
    """Every event of the job with the wall-clock time it arrived."""
    seen: list[tuple[datetime, SseEvent]] = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=30) as response:
        assert response.status_code == 200
        for event in iter_sse(response):
            seen.append((datetime.now(UTC), event))
    return seen


@pytest.mark.usefixtures("worker")
def test_a_job_with_run_at_starts_no_earlier_and_within_a_second_after(
    client: httpx.Client, rds: redis.Redis
) -> None:
    run_at = datetime.now(UTC) + timedelta(seconds=3)
    answer = client.post("/v1/jobs", json=body(run_at=rfc3339(run_at), priority=7))
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert stamp(job["run_at"]) == run_at and job["priority"] == 7
    assert job["status"] == "queued"
    # It waits in the delayed set, not in the broker or a worker (no slot, no countdown).
    member = redis_keys.delayed_member("generate", TENANT_A, 7, job["id"])
    assert rds.zscore(redis_keys.DELAYED, member) is not None
    assert job["id"] not in str(rds.lrange("generate", 0, -1))

    seen = follow_with_times(client, job["id"])
    row = client.get(f"/v1/jobs/{job['id']}").json()
    assert row["status"] == "succeeded", row
    started = stamp(row["started_at"])
    assert run_at <= started <= run_at + timedelta(seconds=1), (run_at, started)
    first_status = next((when, e) for when, e in seen if e.event == "status")
    assert first_status[1].data["status"] == "running"
    assert first_status[0] >= run_at  # no event of it came before its time
    assert [e.event for _, e in seen][-1] == "done"


@pytest.mark.usefixtures("worker")
def test_delay_s_is_run_at_from_now_and_a_past_run_at_runs_at_once(
    client: httpx.Client,
) -> None:
    before = datetime.now(UTC)
    delayed = client.post("/v1/jobs", json=body(delay_s=1.5)).json()
    run_at = stamp(delayed["run_at"])
    assert before + timedelta(seconds=1.5) <= run_at <= datetime.now(UTC) + timedelta(seconds=1.5)
    past = datetime.now(UTC) - timedelta(minutes=5)
    late = client.post("/v1/jobs", json=body(run_at=rfc3339(past))).json()
    assert stamp(late["run_at"]) == past  # kept as given: it may start at once
    for job in (delayed, late):
        read_events(client, job["id"])
    rows = {j["id"]: client.get(f"/v1/jobs/{j['id']}").json() for j in (delayed, late)}
    assert stamp(rows[delayed["id"]]["started_at"]) >= run_at
    assert rows[late["id"]]["status"] == "succeeded"
    # A zone other than UTC is the same instant.
    plus_two = (datetime.now(UTC) + timedelta(seconds=1)).astimezone(timezone(timedelta(hours=2)))
    zoned = client.post("/v1/jobs", json=body(run_at=plus_two.isoformat())).json()
    assert zoned["run_at"].endswith(("Z", "+00:00")) and stamp(zoned["run_at"]) == plus_two


@pytest.mark.parametrize(
    ("fields", "field", "phrase"),
    [
        ({"run_at": "2030-01-01T09:00:00"}, "run_at", "with a zone"),
        ({"run_at": "2030-01-01"}, "run_at", "RFC 3339"),
        ({"run_at": 1_900_000_000}, "run_at", "RFC 3339"),
        ({"run_at": "1900000000"}, "run_at", "RFC 3339"),
        ({"run_at": "next tuesday"}, "run_at", "RFC 3339"),
        ({"run_at": "2030-02-30T09:00:00Z"}, "run_at", ""),
        ({"run_at": "9999-12-31T23:59:59-23:59"}, "run_at", "seconds ahead"),
        ({"run_at": "0001-01-01T00:00:00+14:00"}, "run_at", "in the past"),
        ({"run_at": "2020-01-01T00:00:00Z"}, "run_at", "more than a day in the past"),
        ({"delay_s": -1}, "delay_s", "greater than or equal to 0"),
        ({"delay_s": 31 * 86_400}, "delay_s", "seconds ahead"),
        ({"delay_s": "soon"}, "delay_s", ""),
        ({"delay_s": 5, "run_at": "2030-01-01T09:00:00Z"}, "run_at, delay_s", "not both"),
        ({"priority": 10}, "priority", "less than or equal to 9"),
        ({"priority": -1}, "priority", "greater than or equal to 0"),
        ({"priority": "high"}, "priority", ""),
        ({"priority": 4.5}, "priority", ""),
    ],
)
def test_bad_schedules_are_422_naming_the_field_and_queue_nothing(
    client: httpx.Client, rds: redis.Redis, fields: dict[str, Any], field: str, phrase: str
) -> None:
    before = queued(rds)
    marker = uuid.uuid4().hex
    answer = client.post("/v1/jobs", json=body(marker, **fields))
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith(f"{field}:"), detail
    assert phrase.lower() in detail.lower(), detail
    assert queued(rds) <= before


def test_the_furthest_allowed_run_at_is_accepted(client: httpx.Client) -> None:
    run_at = datetime.now(UTC) + timedelta(days=29)
    answer = client.post("/v1/jobs", json=body(run_at=rfc3339(run_at), metadata={"far": True}))
    assert answer.status_code == 202, answer.text
    assert client.post(f"/v1/jobs/{answer.json()['id']}/cancel").status_code == 202


def test_an_idempotent_retry_of_a_scheduled_submit_is_the_same_job(client: httpx.Client) -> None:
    key = uuid.uuid4().hex
    first = client.post("/v1/jobs", json=body(delay_s=600), headers={"Idempotency-Key": key})
    time.sleep(0.05)  # a retry a moment later: delay_s is the same request
    again = client.post("/v1/jobs", json=body(delay_s=600), headers={"Idempotency-Key": key})
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["run_at"] == first.json()["run_at"]
    other = client.post("/v1/jobs", json=body(delay_s=60), headers={"Idempotency-Key": key})
    assert other.status_code == 409
    client.post(f"/v1/jobs/{first.json()['id']}/cancel")


# -- on a private stack: one worker slot, and Redis lost -----------------------------------


@pytest.fixture
def stack(tmp_path: Path, simulator: RunningSimulator) -> Iterator[Stack]:
    with running_stack(tmp_path, simulator) as private:
        private.start_api()
        yield private


def pace(simulator: RunningSimulator, tokens_per_second: float) -> None:
    httpx.put(
        f"{simulator.base_url}/_sim/config", json={"tokens_per_second": tokens_per_second}
    ).raise_for_status()


def test_a_high_priority_job_overtakes_the_tenants_queued_backlog(
    stack: Stack, simulator: RunningSimulator
) -> None:
    pace(simulator, 40)
    stack.start_worker("one", "--concurrency", "1")
    with stack.client() as client:
        busy = client.post("/v1/jobs", json=body("busy", max_tokens=60)).json()
        wait_for(lambda: client.get(f"/v1/jobs/{busy['id']}").json()["status"] == "running",
                 timeout_s=30)  # fmt: skip
        backlog = [client.post("/v1/jobs", json=body(f"five {i}", priority=5)).json()
                   for i in range(10)]  # fmt: skip
        urgent = client.post("/v1/jobs", json=body("nine", priority=9)).json()
        assert client.get(f"/v1/jobs/{busy['id']}").json()["status"] == "running"
        rows = {j["id"]: stack.finished(j["id"], timeout_s=90)
                for j in [busy, *backlog, urgent]}  # fmt: skip
    assert all(row.status == "succeeded" for row in rows.values())
    first_of_backlog = min(rows[j["id"]].started_at for j in backlog)
    assert rows[busy["id"]].finished_at <= rows[urgent["id"]].started_at < first_of_backlog
    # The backlog itself ran first in, first out.
    starts = [rows[j["id"]].started_at for j in backlog]
    assert starts == sorted(starts)


def test_redis_lost_keeps_run_at_and_priority(stack: Stack) -> None:
    stack.start_worker("one")
    with stack.client() as client:
        answer = client.post("/v1/jobs", json=body("later", delay_s=6, priority=8)).json()
    run_at = stamp(answer["run_at"])
    member = redis_keys.delayed_member("generate", TENANT_A, 8, answer["id"])
    with stack.redis() as rds:
        assert rds.zscore(redis_keys.DELAYED, member) is not None
    stack.kill_redis()
    stack.start_redis(empty=True)

    def requeued() -> bool:
        # The reconciler found the job missing from the emptied Redis and queued it again,
        # delayed as before and with its priority.
        try:
            with stack.redis() as rds:
                return rds.zscore(redis_keys.DELAYED, member) is not None
        except redis.RedisError:
            return False

    wait_for(requeued, timeout_s=20, interval_s=0.2)
    assert datetime.now(UTC) < run_at  # found again before its time
    row = stack.finished(answer["id"], timeout_s=40)
    assert row.status == "succeeded"
    assert row.started_at >= run_at


def test_a_scheduled_job_holds_no_worker_slot(stack: Stack, simulator: RunningSimulator) -> None:
    # One slot, a job scheduled a minute ahead, then a job for now: the second runs at
    # once, the first waits.
    stack.start_worker("one", "--concurrency", "1")
    with stack.client() as client:
        later = client.post("/v1/jobs", json=body("later", delay_s=60)).json()
        now = client.post("/v1/jobs", json=body("now")).json()
        assert stack.finished(now["id"], timeout_s=30).status == "succeeded"
        assert client.get(f"/v1/jobs/{later['id']}").json()["status"] == "queued"
        client.post(f"/v1/jobs/{later['id']}/cancel")
