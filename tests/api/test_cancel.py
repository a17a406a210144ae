"""Cancellation: a waiting job never runs; a running one stops between chunks and keeps its text."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from celery import Celery

from aijobs.settings import Settings
from aijobs.store import Database, JobRepository
from aijobs.worker.celery_app import send_job
from tests.conftest import TENANT_A
from tests.support import read_events, wait_for

pytestmark = pytest.mark.usefixtures("worker")


def sim_stats(sim: Any) -> dict[str, Any]:
    return httpx.get(f"{sim.base_url}/_sim/stats").json()


def test_cancel_a_queued_job_and_it_never_runs(
    client: httpx.Client, simulator: Any, settings: Settings, worker: Celery
) -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"
    repo = JobRepository(Database(settings.database_url))
    payload = {"kind": "generate", "model": model, "messages": [{"role": "user", "content": "x"}],
               "max_tokens": None, "temperature": None}  # fmt: skip
    job = repo.create(tenant=TENANT_A, kind="generate", model=model, payload=payload, meta={})
    answer = client.post(f"/v1/jobs/{job.id}/cancel")
    assert answer.status_code == 202
    assert answer.json()["job"]["status"] == "cancelled"
    assert answer.json()["detail"] == "cancelled before it ran"
    # Its message arrives after all (it was in flight): the worker leaves it alone.
    send_job(worker, job.id, "generate")
    events = read_events(client, job.id)
    assert [(e.event, e.data) for e in events] == [("done", {"status": "cancelled"})]
    row = client.get(f"/v1/jobs/{job.id}").json()
    assert row["status"] == "cancelled" and row["attempts"] == 0 and row["finished_at"]
    wait_for(lambda: client.get(f"/v1/jobs/{job.id}").json()["status"] == "cancelled")
    assert model not in sim_stats(simulator)["requests_by_model"]
    repo.db.dispose()


def test_cancel_a_running_job_keeps_the_partial_text(client: httpx.Client, simulator: Any) -> None:
    httpx.put(
        f"{simulator.base_url}/_sim/config", json={"tokens_per_second": 20}
    ).raise_for_status()
    body = {"kind": "generate", "model": "m", "max_tokens": 200,
            "messages": [{"role": "user", "content": "x"}]}  # fmt: skip
    job = client.post("/v1/jobs", json=body).json()
    read_events(client, job["id"], stop_after=4)  # running, with text flowing
    answer = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert answer.status_code == 202, answer.text
    assert answer.json()["detail"] == "cancel requested: the job stops at its next chunk"
    events = read_events(client, job["id"])
    row = client.get(f"/v1/jobs/{job['id']}").json()
    assert row["status"] == "cancelled"
    assert [e.event for e in events][-2:] == ["result", "done"]
    assert events[-1].data == {"status": "cancelled"}
    partial = "".join(e.data["text"] for e in events if e.event == "delta")
    assert row["result"] == {"text": partial, "finish_reason": "cancelled"}
    assert 0 < len(partial.split()) < 200
    wait_for(lambda: sim_stats(simulator)["streams_closed_early"] >= 1, timeout_s=10)


def test_cancel_a_finished_job_leaves_it(client: httpx.Client, client_b: httpx.Client) -> None:
    body = {"kind": "generate", "model": "m", "max_tokens": 3,
            "messages": [{"role": "user", "content": "x"}]}  # fmt: skip
    job = client.post("/v1/jobs", json=body).json()
    read_events(client, job["id"])
    assert client_b.post(f"/v1/jobs/{job['id']}/cancel").status_code == 404
    answer = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert answer.status_code == 200
    assert answer.json()["detail"] == "the job already finished (succeeded); left as it is"
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "succeeded"
