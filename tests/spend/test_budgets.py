"""Budgets that bite: a generation that crosses its tenant's budget stops between chunks,
keeps its partial text and ends ``budget_exceeded``; the next submit is refused (429 for
tokens, 402 for USD) with a message naming the budget, and nothing is queued."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from aijobs.devtools.simulator import RunningSimulator
from aijobs.settings import Settings
from aijobs.spend.budgets import Budget, BudgetSpec, merged, parse_config
from aijobs.spend.counters import SPEND_KEY_PREFIX, spend_key
from tests.spend.conftest import Tenant
from tests.support import read_events, text_after_last_reset

pytestmark = pytest.mark.usefixtures("worker")


def test_a_stream_crossing_the_token_budget_stops_with_its_text_kept(
    tenant: Tenant, simulator: RunningSimulator, rds: Any
) -> None:
    httpx.put(
        f"{simulator.base_url}/_sim/config", json={"tokens_per_second": 100}
    ).raise_for_status()
    tenant.budgets.set(tenant.name, Budget("day", "tokens", 60))
    job = tenant.submit("a long story that will not fit the budget", max_tokens=300)
    assert job.status_code == 202, job.text
    events = read_events(tenant.http, job.json()["id"])
    row = tenant.finished(job.json()["id"])

    assert row["status"] == "failed"
    assert row["error"]["code"] == "budget_exceeded"
    assert row["error"]["retryable"] is False
    assert "60 tokens per day" in row["error"]["message"]
    text = row["result"]["text"]
    assert text and text == text_after_last_reset(events)  # kept, in the record and stream
    assert [e.event for e in events[-3:]] == ["result", "error", "done"]
    assert events[-2].data["code"] == "budget_exceeded"
    # Stopped mid-way: what it was billed is what it received (usage so far per chunk).
    completion = row["usage"]["completion_tokens"]
    assert 0 < completion < 300
    assert completion == len(text.split())

    again = tenant.submit("one more, please", max_tokens=5)
    assert again.status_code == 429, again.text
    detail = again.json()["detail"]
    assert detail.startswith("budget exceeded") and "60 tokens per day" in detail
    assert tenant.name in detail and int(again.headers["Retry-After"]) >= 1
    listed = tenant.http.get("/v1/jobs").json()["data"]
    assert [j["id"] for j in listed] == [row["id"]]  # nothing queued

    # Redis loses the counters: they are seeded again from SQL, and still refuse.
    assert rds.delete(*rds.keys(f"{SPEND_KEY_PREFIX}{{{tenant.name}}}:*")) == 2
    assert tenant.submit("after the counters were lost", max_tokens=5).status_code == 429
    day = rds.hget(spend_key(tenant.name, "day", datetime.now(UTC)), "t")
    assert int(day) == row["usage"]["total_tokens"]

    report = tenant.http.get("/v1/usage").json()
    (budget,) = report["budgets"]
    assert budget["unit"] == "tokens" and budget["limit"] == 60
    assert budget["spent"] >= report["totals"]["total_tokens"] >= 60


def test_a_spent_usd_budget_is_a_402_and_a_batch_refuses_every_body(tenant: Tenant) -> None:
    first = tenant.submit("spend a little money", max_tokens=10)
    assert tenant.finished(first.json()["id"])["status"] == "succeeded"
    tenant.budgets.set(tenant.name, Budget("month", "usd", 0.000001))

    refused = tenant.submit("and a little more", max_tokens=10)
    assert refused.status_code == 402, refused.text
    assert "$1e-06 per month budget" in refused.json()["detail"]
    body = {"kind": "generate", "model": "m", "messages": [{"role": "user", "content": "x"}]}
    batch = tenant.http.post("/v1/jobs/batch", json={"jobs": [body, body]})
    assert batch.status_code == 200
    assert [r["status"] for r in batch.json()["results"]] == [402, 402]

    # Cleared, the tenant submits again.
    assert tenant.budgets.clear(tenant.name) == 1
    assert tenant.submit("free again", max_tokens=3).status_code == 202


def test_a_job_queued_before_the_budget_ran_out_does_not_start(tenant: Tenant) -> None:
    first = tenant.submit("spend the budget", max_tokens=40)
    assert tenant.finished(first.json()["id"])["status"] == "succeeded"
    later = tenant.submit("queued later", max_tokens=20, delay_s=1.0)
    tenant.budgets.set(tenant.name, Budget("day", "tokens", 10))
    row = tenant.finished(later.json()["id"])
    assert row["status"] == "failed" and row["error"]["code"] == "budget_exceeded"
    assert row["usage"]["total_tokens"] == 0


def test_configured_budgets_and_stored_ones_merge() -> None:
    configured = parse_config({"acme": [{"usd": 10, "period": "day"},
                                        {"tokens": 500, "period": "month"}]})  # fmt: skip
    budgets = [spec.budget() for spec in configured["acme"]]
    stored = [Budget("day", "usd", 25.0)]
    assert merged(budgets, stored) == [Budget("day", "usd", 25.0), Budget("month", "tokens", 500)]
    settings = Settings(tenant_budgets={"acme": {"usd": 5, "period": "day"}})
    assert settings.configured_budgets("acme") == [Budget("day", "usd", 5.0)]
    assert settings.configured_budgets("other") == []
    with pytest.raises(ValueError, match="exactly one of usd and tokens"):
        BudgetSpec.model_validate({"usd": 1, "tokens": 5, "period": "day"})
