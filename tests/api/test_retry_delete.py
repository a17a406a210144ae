"""``POST /v1/jobs/{id}/retry`` runs a failed or cancelled job again as a new job linked to
the old; ``DELETE /v1/jobs/{id}`` scrubs a job now (input, output, stream) and it is
gone, with a clean end for its readers."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from celery import Celery

from aijobs import redis_keys
from aijobs.api.main import create_app
from aijobs.settings import Settings
from aijobs.store import JobRepository
from aijobs.store.retention import DELETED_FENCE
from aijobs.worker.celery_app import send_job
from tests.conftest import TENANT_A, serve_in_thread
from tests.support import SseEvent, iter_sse, read_events, wait_for

pytestmark = pytest.mark.usefixtures("worker")


def body(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "generate", "model": "m", "max_tokens": 3,
            "messages": [{"role": "user", "content": prompt}], **extra}  # fmt: skip


def fault(simulator: Any, *specs: dict[str, Any]) -> None:
    httpx.post(f"{simulator.base_url}/_sim/faults", json={"faults": list(specs)}).raise_for_status()


def pace(simulator: Any, tokens_per_second: float) -> None:
    httpx.put(
        f"{simulator.base_url}/_sim/config", json={"tokens_per_second": tokens_per_second}
    ).raise_for_status()


class Reader(threading.Thread):
    """A client reading a job's events in the background, as a browser tab would."""

    def __init__(self, api_url: str, client: httpx.Client, job_id: str) -> None:
        super().__init__(daemon=True)
        self.api_url, self.headers, self.job_id = api_url, dict(client.headers), job_id
        self.events: list[SseEvent] = []
        self.statuses: list[int] = []
        self.connected = threading.Event()

    def run(self) -> None:
        with (
            httpx.Client(base_url=self.api_url, headers=self.headers, timeout=30) as c,
            c.stream("GET", f"/v1/jobs/{self.job_id}/events") as response,
        ):
            self.statuses.append(response.status_code)
            self.connected.set()
            self.events.extend(iter_sse(response))


def finished(client: httpx.Client, job_id: str) -> dict[str, Any]:
    read_events(client, job_id)
    return client.get(f"/v1/jobs/{job_id}").json()


# -- retry ---------------------------------------------------------------------------------


def test_a_failed_job_runs_again_as_a_new_linked_job(client: httpx.Client, simulator: Any) -> None:
    model = f"fails-{uuid.uuid4().hex[:6]}"
    fault(simulator, {"kind": "bad_request", "model": model, "message": "nope"})
    failed = finished(client, client.post(
        "/v1/jobs", json=body("again", model=model, priority=8, metadata={"order": 7})
    ).json()["id"])  # fmt: skip
    assert failed["status"] == "failed", failed
    answer = client.post(f"/v1/jobs/{failed['id']}/retry")
    assert answer.status_code == 202, answer.text
    new = answer.json()
    assert new["id"] != failed["id"] and new["status"] == "queued"
    assert answer.headers["Location"] == f"/v1/jobs/{new['id']}"
    assert new["metadata"] == {"order": 7, "replay_of": failed["id"]}
    assert new["priority"] == 8 and new["model"] == model
    assert finished(client, new["id"])["status"] == "succeeded"
    # The old one is left as it was.
    assert client.get(f"/v1/jobs/{failed['id']}").json()["status"] == "failed"


def test_a_cancelled_job_can_be_retried_once_per_idempotency_key(
    client: httpx.Client, repo: JobRepository
) -> None:
    payload = {"kind": "generate", "model": "m", "max_tokens": 2, "temperature": None,
               "messages": [{"role": "user", "content": "c"}]}  # fmt: skip
    job = repo.create(tenant=TENANT_A, kind="generate", model="m", payload=payload, meta={})
    assert client.post(f"/v1/jobs/{job.id}/cancel").json()["job"]["status"] == "cancelled"
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = client.post(f"/v1/jobs/{job.id}/retry", headers=key)
    second = client.post(f"/v1/jobs/{job.id}/retry", headers=key)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert finished(client, first.json()["id"])["status"] == "succeeded"


def test_retry_of_a_job_that_is_not_failed_or_cancelled_is_409(
    client: httpx.Client, client_b: httpx.Client, repo: JobRepository
) -> None:
    done = finished(client, client.post("/v1/jobs", json=body("ok")).json()["id"])
    answer = client.post(f"/v1/jobs/{done['id']}/retry")
    assert answer.status_code == 409
    assert answer.json()["detail"].startswith(
        "only a failed or cancelled job can be retried; this one is succeeded"
    )
    waiting = client.post("/v1/jobs", json=body("later", delay_s=600)).json()
    refused = client.post(f"/v1/jobs/{waiting['id']}/retry")
    assert refused.status_code == 409 and "this one is queued" in refused.json()["detail"]
    client.post(f"/v1/jobs/{waiting['id']}/cancel")
    assert client_b.post(f"/v1/jobs/{waiting['id']}/retry").status_code == 404
    assert client.post(f"/v1/jobs/{'0' * 32}/retry").status_code == 404
    assert client.post("/v1/jobs/nope/retry").status_code == 404
    # A purged job's input is gone: nothing to run again.
    repo.scrub(waiting["id"], error=None)
    purged = client.post(f"/v1/jobs/{waiting['id']}/retry")
    assert purged.status_code == 409 and "retention" in purged.json()["detail"]


# -- delete --------------------------------------------------------------------------------


def test_delete_a_finished_job_scrubs_it_and_it_is_gone(
    client: httpx.Client, client_b: httpx.Client, repo: JobRepository, rds: redis.Redis
) -> None:
    marker = uuid.uuid4().hex
    job = finished(client, client.post(
        "/v1/jobs", json=body(marker, metadata={"tag": marker})
    ).json()["id"])  # fmt: skip
    assert job["status"] == "succeeded"
    assert rds.exists(redis_keys.events_key(job["id"]))
    assert client_b.delete(f"/v1/jobs/{job['id']}").status_code == 404  # not theirs
    answer = client.delete(f"/v1/jobs/{job['id']}")
    assert answer.status_code == 204 and answer.content == b""
    assert client.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert client.get(f"/v1/jobs/{job['id']}/events").status_code == 404
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 404
    assert client.post(f"/v1/jobs/{job['id']}/retry").status_code == 404
    assert client.post(f"/v1/jobs/{job['id']}/token").status_code == 404
    listed = client.get("/v1/jobs", params={"metadata.tag": marker}).json()["data"]
    assert listed == []
    # Scrubbed now, not at retention: the row keeps its status and usage for accounting.
    row = repo.get(job["id"])
    assert row is not None and row.deleted_at is not None
    assert row.input == {} and row.result is None and row.meta == {}
    assert row.status == "succeeded" and row.usage
    assert not rds.exists(redis_keys.events_key(job["id"]))
    assert int(rds.hget(redis_keys.meta_key(job["id"]), "attempt") or 0) == DELETED_FENCE
    assert marker not in str(rds.xrange(redis_keys.events_key(job["id"])))
    # Deleting it again is the same answer (a client's retry after a lost answer).
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert client.delete(f"/v1/jobs/{'0' * 32}").status_code == 404
    assert client.delete("/v1/jobs/%00").status_code == 404


def test_delete_a_waiting_job_cancels_it_and_it_never_runs(
    client: httpx.Client, api_url: str, repo: JobRepository, simulator: Any, worker: Celery
) -> None:
    model = f"never-{uuid.uuid4().hex[:6]}"
    job = client.post("/v1/jobs", json=body("later", model=model, delay_s=600)).json()
    reader = Reader(api_url, client, job["id"])  # waiting for it to start
    reader.start()
    assert reader.connected.wait(10)
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    reader.join(15)
    assert not reader.is_alive() and [e.event for e in reader.events] == ["done"]
    assert reader.events[0].data == {"status": "cancelled"}
    row = repo.get(job["id"])
    assert row is not None and row.status == "cancelled" and row.input == {}
    send_job(worker, job["id"], "generate")  # a message in flight arrives after all
    after = finished(client, client.post("/v1/jobs", json=body("after")).json()["id"])
    assert after["status"] == "succeeded"
    stats = httpx.get(f"{simulator.base_url}/_sim/stats").json()
    assert model not in stats["requests_by_model"]
    assert repo.get(job["id"]).attempts == 0


def test_delete_a_running_job_cancels_it_first_and_its_reader_ends_cleanly(
    client: httpx.Client, api_url: str, repo: JobRepository, rds: redis.Redis, simulator: Any
) -> None:
    pace(simulator, 20)
    job = client.post("/v1/jobs", json=body("long", max_tokens=400)).json()
    reader = Reader(api_url, client, job["id"])
    reader.start()
    wait_for(lambda: sum(1 for e in reader.events if e.event == "delta") >= 2, timeout_s=20)
    answer = client.delete(f"/v1/jobs/{job['id']}")
    assert answer.status_code == 204, answer.text
    reader.join(15)
    assert not reader.is_alive()
    assert reader.statuses == [200] and reader.events[-1].event == "done"
    assert reader.events[-1].data == {"status": "cancelled"}
    assert client.get(f"/v1/jobs/{job['id']}").status_code == 404
    row = repo.get(job["id"])
    assert row is not None and row.status == "cancelled" and row.result is None
    wait_for(lambda: not rds.exists(redis_keys.events_key(job["id"])), timeout_s=5)
    # A reader that comes back (with its cursor, as EventSource does) is told it is gone.
    again = client.get(f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": "3"})
    assert again.status_code == 404


@pytest.fixture(scope="module")
def impatient_api(settings: Settings) -> Iterator[str]:
    """An API that does not wait for a running job's cancel before it answers a DELETE."""
    server, thread, url = serve_in_thread(
        create_app(settings.model_copy(update={"delete_wait_s": 0.0}))
    )
    yield url
    server.should_exit = True
    thread.join(10)


def test_delete_of_a_job_that_does_not_stop_in_time_is_409_then_204(
    client: httpx.Client, impatient_api: str, simulator: Any
) -> None:
    pace(simulator, 20)
    job = client.post("/v1/jobs", json=body("long", max_tokens=400)).json()
    wait_for(lambda: client.get(f"/v1/jobs/{job['id']}").json()["status"] == "running",
             timeout_s=20)  # fmt: skip
    with httpx.Client(base_url=impatient_api, headers=dict(client.headers), timeout=30) as c:
        refused = c.delete(f"/v1/jobs/{job['id']}")
        assert refused.status_code == 409, refused.text
        assert "its cancel was requested" in refused.json()["detail"]
        # The cancel stays requested: the job stops, and a DELETE then goes through.
        wait_for(lambda: c.get(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled",
                 timeout_s=20)  # fmt: skip
        assert c.delete(f"/v1/jobs/{job['id']}").status_code == 204
        assert c.get(f"/v1/jobs/{job['id']}").status_code == 404
