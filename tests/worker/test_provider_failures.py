"""Provider failures through a real worker: classified, retried or failed, told in the stream."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from celery import Celery

from aijobs.settings import Settings
from aijobs.store import Database, JobRepository
from aijobs.worker.celery_app import send_job
from tests.support import SseEvent, read_events, text_after_last_reset

pytestmark = pytest.mark.usefixtures("worker")


def fault(sim: Any, *specs: dict[str, Any]) -> None:
    httpx.post(f"{sim.base_url}/_sim/faults", json={"faults": list(specs)}).raise_for_status()


def stats(sim: Any) -> dict[str, Any]:
    return httpx.get(f"{sim.base_url}/_sim/stats").json()


def run(client: httpx.Client, model: str, max_tokens: int = 20) -> tuple[dict, list[SseEvent]]:
    body = {
        "kind": "generate",
        "model": model,
        "messages": [{"role": "user", "content": "go"}],
        "max_tokens": max_tokens,
    }
    job = client.post("/v1/jobs", json=body).json()
    events = read_events(client, job["id"], timeout_s=60)
    return client.get(f"/v1/jobs/{job['id']}").json(), events


@pytest.fixture
def model() -> str:
    return f"m-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        ({"kind": "bad_request", "message": "bad param"}, "bad_request"),
        ({"kind": "insufficient_quota"}, "insufficient_quota"),
        ({"kind": "refusal"}, "refusal"),
        ({"kind": "content_filter"}, "content_filter"),
    ],
)
def test_terminal_errors_fail_at_once(
    client: httpx.Client, simulator: Any, model: str, spec: dict[str, Any], code: str
) -> None:
    fault(simulator, {**spec, "model": model})
    job, events = run(client, model)
    assert job["status"] == "failed"
    assert job["error"]["code"] == code
    assert job["error"]["retryable"] is False
    assert job["attempts"] == 1
    assert stats(simulator)["requests_by_model"][model] == 1
    assert [e.event for e in events][-2:] == ["error", "done"]
    assert events[-2].data == job["error"]
    assert events[-1].data == {"status": "failed"}


def test_server_errors_retry_then_succeed(client: httpx.Client, simulator: Any, model: str) -> None:
    fault(simulator, {"kind": "server_error", "model": model, "times": 2})
    job, events = run(client, model)
    assert job["status"] == "succeeded"
    assert job["attempts"] == 3
    retrying = [e.data for e in events if e.event == "status" and e.data["status"] == "retrying"]
    assert [r["attempt"] for r in retrying] == [1, 2]
    assert all(r["reason"] == "provider_http_500" for r in retrying)
    # Full jitter under a ceiling that doubles with each attempt.
    assert [r["backoff_max_s"] for r in retrying] == [0.05, 0.1]
    assert all(0 <= r["wait_s"] <= r["backoff_max_s"] for r in retrying)
    assert [e.data["attempt"] for e in events if e.event == "reset"] == [2, 3]
    assert text_after_last_reset(events) == job["result"]["text"]
    assert stats(simulator)["requests_by_model"][model] == 3


def test_stream_cut_midway_resets_and_completes(
    client: httpx.Client, simulator: Any, model: str
) -> None:
    fault(simulator, {"kind": "cut", "model": model, "after_chunks": 5})
    job, events = run(client, model, max_tokens=30)
    assert job["status"] == "succeeded" and job["attempts"] == 2
    kinds = [e.event for e in events]
    first_reset = kinds.index("reset")
    partial = "".join(e.data["text"] for e in events[:first_reset] if e.event == "delta")
    assert 0 < len(partial.split()) <= 5  # the cut attempt's text reached readers...
    assert text_after_last_reset(events) == job["result"]["text"]  # ...and was superseded
    assert len(job["result"]["text"].split()) == 30
    assert events[first_reset - 1].data["reason"] == "stream_interrupted"


def test_rate_limit_waits_for_retry_after(client: httpx.Client, simulator: Any, model: str) -> None:
    fault(simulator, {"kind": "rate_limit", "model": model, "retry_after_s": 1.5})
    job, events = run(client, model)
    assert job["status"] == "succeeded" and job["attempts"] == 2
    times = stats(simulator)["request_times"]["chat"]
    assert len(times) == 2 and times[1] - times[0] >= 1.5
    retrying = next(
        e.data for e in events if e.event == "status" and e.data["status"] == "retrying"
    )
    assert retrying["reason"] == "rate_limited" and retrying["wait_s"] >= 1.5


def test_retryable_errors_give_up_after_the_attempt_cap(
    client: httpx.Client, simulator: Any, model: str, settings: Settings
) -> None:
    fault(simulator, {"kind": "server_error", "model": model, "status": 503, "times": 50})
    job, events = run(client, model)
    assert job["status"] == "failed"
    assert [e.event for e in events].count("reset") == settings.max_attempts - 1
    assert job["attempts"] == settings.max_attempts
    assert job["error"]["code"] == "provider_http_503"
    assert job["error"]["retryable"] is True
    assert "gave up after" in job["error"]["message"]
    assert stats(simulator)["requests_by_model"][model] == settings.max_attempts


def test_duplicate_delivery_of_a_running_job_is_ignored(
    client: httpx.Client, simulator: Any, model: str, worker: Celery
) -> None:
    httpx.put(
        f"{simulator.base_url}/_sim/config", json={"tokens_per_second": 40}
    ).raise_for_status()
    body = {"kind": "generate", "model": model, "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 40}  # fmt: skip
    job = client.post("/v1/jobs", json=body).json()
    first = read_events(client, job["id"], stop_after=2)  # it is running now
    assert first[0].data["status"] == "running"
    send_job(worker, job["id"], "generate")
    events = read_events(client, job["id"])
    row = client.get(f"/v1/jobs/{job['id']}").json()
    assert row["status"] == "succeeded" and row["attempts"] == 1
    assert [e.event for e in events].count("result") == 1
    assert "reset" not in [e.event for e in events]
    assert stats(simulator)["requests_by_model"][model] == 1


def test_a_job_that_keeps_losing_its_worker_ends_as_poison(
    client: httpx.Client, worker: Celery, settings: Settings
) -> None:
    body = {"kind": "generate", "model": "m", "messages": [{"role": "user", "content": "x"}]}
    repo = JobRepository(Database(settings.database_url))
    job = repo.create(
        tenant="tenant-a", kind="generate", model="m", payload={**body, "max_tokens": None,
        "temperature": None}, meta={},
    )  # fmt: skip
    # As if one worker after another had claimed it and died mid-run (each new claim
    # finds the last one still "running": a loss).
    for seen in range(settings.poison_after_losses):
        claim = repo.claim(job.id, seen_attempts=seen, id_block=10)
        assert claim is not None and claim.attempt == seen + 1
    send_job(worker, job.id, "generate")
    events = read_events(client, job.id)
    row = client.get(f"/v1/jobs/{job.id}").json()
    assert row["status"] == "failed"
    assert row["error"]["code"] == "poison"
    assert [e.event for e in events][-2:] == ["error", "done"]
    repo.db.dispose()
