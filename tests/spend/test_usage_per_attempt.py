"""A job's usage is what the provider billed every attempt, to the token: a stream cut
mid-way and retried counts both attempts, cached prompt tokens included, priced from the
price table."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from aijobs.devtools.simulator import RunningSimulator
from aijobs.devtools.simulator.request_keys import request_key_for_text
from aijobs.spend.prices import cost_usd
from tests.conftest import PRICE, PRICED_MODEL
from tests.support import read_events, text_after_last_reset, wait_for

pytestmark = pytest.mark.usefixtures("worker")


def sim(simulator: RunningSimulator, path: str, **body: Any) -> Any:
    answer = httpx.request(
        "PUT" if path == "config" else "POST", f"{simulator.base_url}/_sim/{path}", json=body
    )
    answer.raise_for_status()
    return answer.json()


def billed(simulator: RunningSimulator, prompt: str) -> list[dict[str, int]]:
    """What the simulator says it billed for each request of this prompt, in order."""
    key = request_key_for_text(prompt)
    log = httpx.get(f"{simulator.base_url}/_sim/requests", params={"key": key}).json()
    return [r["usage"] for r in log["requests"]]


def finished(client: httpx.Client, job_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = client.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    return wait_for(done, timeout_s=60)


def submit(client: httpx.Client, prompt: str, **extra: Any) -> dict[str, Any]:
    body = {"kind": "generate", "model": PRICED_MODEL,
            "messages": [{"role": "user", "content": prompt}], **extra}  # fmt: skip
    answer = client.post("/v1/jobs", json=body)
    assert answer.status_code == 202, answer.text
    return answer.json()


def test_a_retried_job_costs_both_attempts_to_the_token(
    client: httpx.Client, simulator: RunningSimulator
) -> None:
    sim(simulator, "config", prompt_cache=True)
    sim(simulator, "faults", faults=[{"kind": "cut", "after_chunks": 7, "model": PRICED_MODEL}])
    prompt = "usage of a retried job " + "x" * 200
    job = submit(client, prompt, max_tokens=30)
    events = read_events(client, job["id"])
    row = finished(client, job["id"])
    assert row["status"] == "succeeded" and row["attempts"] == 2
    assert text_after_last_reset(events) == row["result"]["text"]

    sim_usage = billed(simulator, prompt)
    assert [u["completion_tokens"] for u in sim_usage] == [7, 30]
    # The retry sent the same prompt: the simulator's cache served it.
    assert sim_usage[1]["cached_tokens"] == sim_usage[1]["prompt_tokens"] > 0
    usage = row["usage"]
    attempts = usage["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2]
    for mine, theirs in zip(attempts, sim_usage, strict=True):
        assert mine["prompt_tokens"] == theirs["prompt_tokens"]
        assert mine["completion_tokens"] == theirs["completion_tokens"]
        assert mine["cached_tokens"] == theirs["cached_tokens"]
        assert mine["estimated"] is False
        assert mine["cost_usd"] == cost_usd(
            PRICE, prompt=theirs["prompt_tokens"], completion=theirs["completion_tokens"],
            cached=theirs["cached_tokens"],
        )  # fmt: skip
    assert usage["prompt_tokens"] == sum(u["prompt_tokens"] for u in sim_usage)
    assert usage["completion_tokens"] == 37
    assert usage["cached_tokens"] == sim_usage[1]["cached_tokens"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + 37
    assert usage["cost_usd"] == pytest.approx(sum(a["cost_usd"] for a in attempts), abs=1e-8)
    # Cached tokens cost less than the rest.
    assert attempts[1]["cost_usd"] < cost_usd(
        PRICE, prompt=sim_usage[1]["prompt_tokens"], completion=30, cached=0
    )


def test_a_failed_job_still_shows_what_it_cost(
    client: httpx.Client, simulator: RunningSimulator
) -> None:
    # content_filter is terminal; the provider billed the answer it cut.
    sim(simulator, "faults", faults=[{"kind": "content_filter", "model": PRICED_MODEL}])
    prompt = "usage of a filtered job"
    job = submit(client, prompt, max_tokens=20)
    row = finished(client, job["id"])
    assert row["status"] == "failed" and row["error"]["code"] == "content_filter"
    (theirs,) = billed(simulator, prompt)
    assert row["usage"]["prompt_tokens"] == theirs["prompt_tokens"]
    assert row["usage"]["completion_tokens"] == theirs["completion_tokens"] == 10
    assert len(row["usage"]["attempts"]) == 1


def test_a_model_without_a_price_has_tokens_and_no_cost(
    client: httpx.Client, simulator: RunningSimulator
) -> None:
    body = {"kind": "generate", "model": "unpriced-model",
            "messages": [{"role": "user", "content": "no price"}], "max_tokens": 5}  # fmt: skip
    job = client.post("/v1/jobs", json=body).json()
    row = finished(client, job["id"])
    assert row["usage"]["completion_tokens"] == 5
    assert row["usage"]["cost_usd"] is None
    assert row["usage"]["attempts"][0]["cost_usd"] is None


def test_an_extraction_counts_every_repair_round(
    client: httpx.Client, simulator: RunningSimulator
) -> None:
    sim(simulator, "faults", faults=[{"kind": "invalid_json", "model": PRICED_MODEL}])
    text = f"ACME invoice, 12.50 EUR, usage of repairs {id(client)}"
    schema = {"type": "object", "properties": {"vendor": {"type": "string"}},
              "required": ["vendor"], "additionalProperties": False}  # fmt: skip
    body = {"kind": "extract", "model": PRICED_MODEL, "text": text, "schema": schema}
    row = finished(client, client.post("/v1/jobs", json=body).json()["id"])
    assert row["status"] == "succeeded" and row["attempts"] == 1
    rounds = billed(simulator, text)
    assert len(rounds) == 2  # the invalid answer, then the repaired one
    (attempt,) = row["usage"]["attempts"]
    assert attempt["prompt_tokens"] == sum(u["prompt_tokens"] for u in rounds)
    assert attempt["completion_tokens"] == sum(u["completion_tokens"] for u in rounds)


def test_an_embedding_job_counts_its_input_tokens(client: httpx.Client) -> None:
    body = {"kind": "embed", "model": "text-embedding-3-small", "input": ["alpha", "beta gamma"]}
    row = finished(client, client.post("/v1/jobs", json=body).json()["id"])
    assert row["status"] == "succeeded"
    (attempt,) = row["usage"]["attempts"]
    assert attempt["prompt_tokens"] == row["usage"]["prompt_tokens"] > 0
    assert row["usage"]["completion_tokens"] == 0
