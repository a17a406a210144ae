"""Extraction end to end: strict structured output, repaired when broken, refused if impossible."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
import redis

from aijobs.kinds.schema import validation_error
from tests.support import SseEvent, queued, read_events, text_after_last_reset

pytestmark = pytest.mark.usefixtures("worker")

INVOICE = {
    "type": "object",
    "properties": {
        "vendor": {"type": "string"},
        "total": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"item": {"type": "string"}, "qty": {"type": "integer"}},
                "required": ["item", "qty"],
            },
        },
        "due": {"type": "string", "format": "date"},
    },
    "required": ["vendor", "total", "currency"],
}


@pytest.fixture
def model() -> str:
    return f"m-{uuid.uuid4().hex[:8]}"


def fault(sim: Any, *specs: dict[str, Any]) -> None:
    httpx.post(f"{sim.base_url}/_sim/faults", json={"faults": list(specs)}).raise_for_status()


def extract(client: httpx.Client, model: str, schema: dict[str, Any] = INVOICE) -> tuple:
    body = {"kind": "extract", "model": model, "text": "ACME invoice, 3 bolts, 12.50 EUR",
            "schema": schema, "instructions": "Read the invoice."}  # fmt: skip
    answer = client.post("/v1/jobs", json=body)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    events = read_events(client, job_id, timeout_s=60)
    return client.get(f"/v1/jobs/{job_id}").json(), events


def json_after_last_reset(events: list[SseEvent]) -> Any:
    return json.loads(text_after_last_reset(events))


def test_extraction_streams_json_that_matches_the_schema(
    client: httpx.Client, simulator: Any, model: str
) -> None:
    job, events = extract(client, model)
    assert job["status"] == "succeeded", job["error"]
    data = job["result"]["data"]
    assert validation_error(data, INVOICE) is None
    assert events[-2].event == "result" and events[-2].data == {"data": data}
    streamed = json_after_last_reset(events)
    assert {k: v for k, v in streamed.items() if v is not None} == data
    assert len([e for e in events if e.event == "delta"]) > 1


def test_broken_json_is_repaired_in_the_same_attempt(
    client: httpx.Client, simulator: Any, model: str
) -> None:
    fault(simulator, {"kind": "invalid_json", "model": model})
    job, events = extract(client, model)
    assert job["status"] == "succeeded" and job["attempts"] == 1
    assert validation_error(job["result"]["data"], INVOICE) is None
    assert [e.data for e in events if e.event == "reset"] == [{"attempt": 1, "round": 1}]
    stats = httpx.get(f"{simulator.base_url}/_sim/stats").json()
    assert stats["requests_by_model"][model] == 2


def test_a_schema_violation_is_repaired_too(
    client: httpx.Client, simulator: Any, model: str
) -> None:
    fault(simulator, {"kind": "schema_violation", "model": model})
    job, _events = extract(client, model)
    assert job["status"] == "succeeded"
    assert validation_error(job["result"]["data"], INVOICE) is None


def test_answers_that_stay_broken_fail_with_the_last_error(
    client: httpx.Client, simulator: Any, model: str
) -> None:
    fault(simulator, {"kind": "invalid_json", "model": model, "times": 10})
    job, events = extract(client, model)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "invalid_output"
    assert job["error"]["retryable"] is False
    assert "not valid JSON" in job["error"]["message"]
    assert "after 3 tries" in job["error"]["message"]
    assert events[-2].event == "error" and events[-2].data == job["error"]
    assert httpx.get(f"{simulator.base_url}/_sim/stats").json()["requests_by_model"][model] == 3


@pytest.mark.parametrize(("kind", "code"), [("refusal", "refusal"), ("length", "length"),
                                            ("content_filter", "content_filter")])  # fmt: skip
def test_refusal_length_and_filter_are_terminal(
    client: httpx.Client, simulator: Any, model: str, kind: str, code: str
) -> None:
    fault(simulator, {"kind": kind, "model": model})
    job, _events = extract(client, model)
    assert job["status"] == "failed" and job["error"]["code"] == code
    assert httpx.get(f"{simulator.base_url}/_sim/stats").json()["requests_by_model"][model] == 1


def test_a_schema_strict_mode_cannot_take_is_refused_at_submit(
    client: httpx.Client, rds: redis.Redis
) -> None:
    before = len(client.get("/v1/jobs", params={"limit": 100}).json()["data"])
    waiting = queued(rds)
    schema = {"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}]}}}
    body = {"kind": "extract", "model": "m", "text": "t", "schema": schema}
    answer = client.post("/v1/jobs", json=body)
    assert answer.status_code == 422
    assert answer.json()["detail"] == (
        "schema.properties.a.oneOf: strict mode does not support it (use anyOf)"
    )
    assert len(client.get("/v1/jobs", params={"limit": 100}).json()["data"]) == before
    assert queued(rds) <= waiting
