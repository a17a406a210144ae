"""Embeddings end to end: split to the provider's limits, in order, retried batch by batch."""

from __future__ import annotations

import base64
import uuid
from array import array
from typing import Any

import httpx
import openai
import pytest

from aijobs.kinds.embed import plan_batches
from aijobs.settings import Settings
from aijobs.store import Database, JobRepository
from aijobs.vectors import to_float32_bytes
from aijobs.worker.celery_app import send_job
from tests.conftest import TENANT_A
from tests.support import read_events

pytestmark = pytest.mark.usefixtures("worker")

DIMS = 8


@pytest.fixture
def model() -> str:
    return f"emb-{uuid.uuid4().hex[:8]}"


def sim_requests(sim: Any, model: str) -> int:
    return httpx.get(f"{sim.base_url}/_sim/stats").json()["requests_by_model"].get(model, 0)


def direct(sim: Any, model: str, texts: list[str]) -> list[list[float]]:
    with openai.OpenAI(base_url=sim.api_base, api_key="sk-test", max_retries=0) as sdk:
        answer = sdk.embeddings.create(model=model, input=texts, dimensions=DIMS)
    return [list(array("f", to_float32_bytes(d.embedding))) for d in answer.data]


def close(a: list[float], b: list[float]) -> bool:
    return all(abs(x - y) < 1e-6 for x, y in zip(a, b, strict=True))


def test_plan_respects_input_and_token_caps() -> None:
    texts = ["word"] * 10_000
    plan = plan_batches(texts, max_inputs=2048, max_tokens=250_000)
    assert len(plan) == 5 and all(end - start <= 2048 for start, end in plan)
    assert plan[0] == (0, 2048) and plan[-1][1] == 10_000
    long = ["x" * 4000] * 600  # ~1000 tokens each
    assert all(end - start <= 250 for start, end in plan_batches(long, max_inputs=2048,
                                                                  max_tokens=250_000))  # fmt: skip


def test_ten_thousand_inputs_in_five_requests_in_input_order(
    client: httpx.Client, simulator: Any, model: str
) -> None:
    texts = [f"text number {i}" for i in range(10_000)]
    body = {"kind": "embed", "model": model, "input": texts, "dimensions": DIMS}
    job = client.post("/v1/jobs", json=body).json()
    events = read_events(client, job["id"], timeout_s=90)
    assert [e.event for e in events][-2:] == ["result", "done"], events[-2:]
    assert events[-2].data == {"count": 10_000, "dimensions": DIMS}
    progress = [e.data for e in events if e.event == "progress"]
    assert len(progress) == 5 and progress[-1]["done"] == progress[-1]["total"] == 10_000
    assert sim_requests(simulator, model) == 5

    row = client.get(f"/v1/jobs/{job['id']}").json()
    assert row["status"] == "succeeded"
    vectors = row["result"]["embeddings"]
    assert len(vectors) == 10_000 and row["result"]["dimensions"] == DIMS
    picks = [0, 1, 2047, 2048, 6000, 9999]
    expected = direct(simulator, model, [texts[i] for i in picks])
    assert all(close(vectors[i], e) for i, e in zip(picks, expected, strict=True))

    b64 = client.get(f"/v1/jobs/{job['id']}", params={"format": "base64"}).json()
    decoded = array("f", base64.b64decode(b64["result"]["embeddings"][2048]))
    assert close(list(decoded), vectors[2048])
    listed = client.get("/v1/jobs", params={"kind": "embed", "limit": 1}).json()["data"][0]
    assert listed["result"] == {"count": 10_000, "dimensions": DIMS}  # no vectors in lists


def test_a_batch_that_fails_once_is_retried_alone(
    client: httpx.Client, simulator: Any, model: str
) -> None:
    fault = {"kind": "server_error", "model": model, "endpoint": "embeddings"}
    httpx.post(f"{simulator.base_url}/_sim/faults", json={"faults": [fault]}).raise_for_status()
    texts = [f"t{i}" for i in range(5000)]  # three batches
    job = client.post(
        "/v1/jobs", json={"kind": "embed", "model": model, "input": texts, "dimensions": DIMS}
    ).json()
    read_events(client, job["id"], timeout_s=60)
    row = client.get(f"/v1/jobs/{job['id']}").json()
    assert row["status"] == "succeeded" and row["attempts"] == 1
    assert sim_requests(simulator, model) == 4  # three batches, one of them twice
    expected = direct(simulator, model, [texts[0], texts[4999]])
    assert close(row["result"]["embeddings"][0], expected[0])
    assert close(row["result"]["embeddings"][4999], expected[1])


def test_a_new_attempt_skips_the_batches_already_stored(
    client: httpx.Client, simulator: Any, model: str, settings: Settings, worker: Any
) -> None:
    texts = [f"s{i}" for i in range(5000)]  # batches 0..2048, 2048..4096, 4096..5000
    repo = JobRepository(Database(settings.database_url))
    payload = {"kind": "embed", "model": model, "input": texts, "dimensions": DIMS}
    job = repo.create(tenant=TENANT_A, kind="embed", model=model, payload=payload, meta={})
    # As if an earlier attempt had stored the first two batches before its worker died.
    marker = to_float32_bytes([7.0] * DIMS)
    repo.save_batch(job.id, 0, start=0, count=2048, dimensions=DIMS, vectors=marker * 2048)
    repo.save_batch(job.id, 1, start=2048, count=2048, dimensions=DIMS, vectors=marker * 2048)
    send_job(worker, job.id, "embed")
    read_events(client, job.id, timeout_s=60)
    row = client.get(f"/v1/jobs/{job.id}").json()
    assert row["status"] == "succeeded"
    assert sim_requests(simulator, model) == 1
    vectors = row["result"]["embeddings"]
    assert vectors[0] == vectors[4095] == [7.0] * DIMS
    assert close(vectors[4096], direct(simulator, model, [texts[4096]])[0])
    repo.db.dispose()


def test_one_text_gives_one_vector(client: httpx.Client, model: str) -> None:
    job = client.post("/v1/jobs", json={"kind": "embed", "model": model, "input": "hello"}).json()
    read_events(client, job["id"])
    row = client.get(f"/v1/jobs/{job['id']}").json()
    assert len(row["result"]["embeddings"]) == 1
    assert row["result"]["dimensions"] == 1536


def test_cancel_a_running_embedding_job_stops_between_batches(
    client: httpx.Client, simulator: Any, model: str
) -> None:
    httpx.put(f"{simulator.base_url}/_sim/config", json={"latency_ms": 300}).raise_for_status()
    texts = [f"c{i}" for i in range(20 * 2048)]  # 20 batches, 4 in flight, 300 ms each
    body = {"kind": "embed", "model": model, "input": texts, "dimensions": DIMS}
    job = client.post("/v1/jobs", json=body).json()
    first = read_events(client, job["id"], stop_after=2)
    assert first[1].event == "progress"  # written as each batch lands, not at the end
    assert first[1].data["done"] < first[1].data["total"]
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
    events = read_events(client, job["id"], timeout_s=60)
    row = client.get(f"/v1/jobs/{job['id']}").json()
    assert row["status"] == "cancelled"
    assert events[-1].data == {"status": "cancelled"}
    assert row["result"]["embedded"] < 20 * 2048
    assert sim_requests(simulator, model) < 20
    assert "embeddings" not in row["result"]
    assert client.get(f"/v1/jobs/{job['id']}", params={"vectors": "false"}).json()["status"] == (
        "cancelled"
    )


def test_a_model_named_like_a_marker_keeps_its_name_and_the_vectors_their_place(
    client: httpx.Client,
) -> None:
    body = {"kind": "embed", "model": "@", "input": ["a", "b"], "dimensions": 4,
            "metadata": {"x": "@"}}  # fmt: skip
    job = client.post("/v1/jobs", json=body).json()
    read_events(client, job["id"], timeout_s=60)
    row = client.get(f"/v1/jobs/{job['id']}").json()
    assert row["model"] == "@" and row["metadata"] == {"x": "@"}
    assert len(row["result"]["embeddings"]) == 2 and len(row["result"]["embeddings"][0]) == 4
    assert row["result"]["count"] == 2
