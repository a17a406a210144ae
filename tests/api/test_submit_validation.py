"""Bad input gets a clear error that names the field, and queues nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis

from aijobs.settings import Settings
from tests.conftest import TENANT_A
from tests.support import queued

GOOD = {
    "kind": "generate",
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "hi"}],
}


def job_count(client: httpx.Client) -> int:
    return len(client.get("/v1/jobs", params={"limit": 100}).json()["data"])


@pytest.mark.parametrize(
    ("body", "field", "phrase"),
    [
        ({**GOOD, "messages": []}, "messages", "at least 1"),
        ({k: v for k, v in GOOD.items() if k != "messages"}, "messages", "required"),
        ({**GOOD, "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", ""),
        ({**GOOD, "messages": [{"role": "user"}]}, "messages[0].content", "required"),
        ({**GOOD, "max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        ({**GOOD, "temperature": 9}, "temperature", "less than or equal to 2"),
        ({**GOOD, "model": ""}, "model", "at least 1"),
        ({**GOOD, "status": "succeeded"}, "status", "unknown field"),
        ({**GOOD, "tenant": "tenant-b"}, "tenant", "unknown field"),
        ({**GOOD, "kind": "teleport"}, "kind", "must be one of"),
        ({k: v for k, v in GOOD.items() if k != "kind"}, "kind", "must be one of"),
        ({**GOOD, "metadata": "nope"}, "metadata", "dictionary"),
    ],
)
def test_malformed_request_names_the_field_and_queues_nothing(
    client: httpx.Client, rds: redis.Redis, body: dict[str, Any], field: str, phrase: str
) -> None:
    before_jobs, before_queue = job_count(client), queued(rds)
    answer = client.post("/v1/jobs", json=body)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith(f"{field}:"), detail
    assert phrase.lower() in detail.lower()
    assert any(e["field"] == field for e in answer.json()["errors"])
    assert job_count(client) == before_jobs
    assert queued(rds) <= before_queue


def test_invalid_json_is_422(client: httpx.Client) -> None:
    answer = client.post(
        "/v1/jobs", content=b'{"kind": "generate",', headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 422
    assert answer.json()["detail"] == "body: the body is not valid JSON"


def test_body_over_the_limit_is_413(
    client: httpx.Client, rds: redis.Redis, settings: Settings
) -> None:
    before = queued(rds)
    huge = {**GOOD, "messages": [{"role": "user", "content": "x" * settings.max_jobs_body_bytes}]}
    answer = client.post("/v1/jobs", json=huge)
    assert answer.status_code == 413
    assert "exceeds" in answer.json()["detail"]
    assert queued(rds) <= before


def test_embed_input_limits(client: httpx.Client, rds: redis.Redis) -> None:
    before = queued(rds)
    base = {"kind": "embed", "model": "text-embedding-3-small"}
    empty = client.post("/v1/jobs", json={**base, "input": ["a", ""]})
    assert empty.status_code == 422
    assert empty.json()["detail"].startswith("input[1]:")
    none = client.post("/v1/jobs", json={**base, "input": []})
    assert none.json()["detail"] == "input: no texts given"
    many = client.post("/v1/jobs", json={**base, "input": ["x"] * 100_001})
    assert many.status_code == 422
    assert many.json()["detail"] == "input: at most 100000 texts per job (got 100001)"
    assert queued(rds) <= before


def test_bad_resume_cursor_is_422(client: httpx.Client, rds: redis.Redis) -> None:
    assert client.get("/v1/jobs/x/events", params={"after": -1}).status_code == 422
    answer = client.get("/v1/jobs/x/events", headers={"Last-Event-ID": "abc"})
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("Last-Event-ID")


def test_a_queued_job_is_a_row_and_a_message(
    api_url: str, rds: redis.Redis, client: httpx.Client
) -> None:
    # No worker in this test's fixtures is required: we only look at the queue.
    answer = client.post("/v1/jobs", json=GOOD)
    assert answer.status_code == 202
    assert answer.headers["Location"] == f"/v1/jobs/{answer.json()['id']}"
    row = client.get(f"/v1/jobs/{answer.json()['id']}").json()
    assert row["id"] == answer.json()["id"]
    assert TENANT_A not in answer.text  # the tenant is not echoed back
