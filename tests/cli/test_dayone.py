"""``aijobs submit --run-at/--delay/--priority``, ``aijobs retry``, ``aijobs delete`` and
the ``aijobs jobs`` filters, as a user runs them."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.cli.runner import aijobs

pytestmark = pytest.mark.usefixtures("worker")


def test_submit_scheduled_list_retry_and_delete(api_url: str) -> None:
    tag = uuid.uuid4().hex
    first = aijobs(api_url, "submit", "generate", "--model", "m", f"{tag} a", "--delay", "600",
                   "--priority", "9", "--json")  # fmt: skip
    assert first.returncode == 0, first.stderr
    job = json.loads(first.stdout)
    assert job["priority"] == 9 and job["run_at"] and job["status"] == "queued"
    shown = aijobs(api_url, "show", job["id"])
    assert "priority  9" in shown.stdout and "run at" in shown.stdout
    listed = json.loads(aijobs(api_url, "jobs", "--order", "run_at", "--status", "queued",
                               "--limit", "100", "--json").stdout)  # fmt: skip
    assert job["id"] in [j["id"] for j in listed["data"]]

    refused = aijobs(api_url, "retry", job["id"])
    assert refused.returncode == 3 and "this one is queued" in refused.stderr
    assert aijobs(api_url, "cancel", job["id"]).returncode == 0
    retried = aijobs(api_url, "retry", job["id"], "--follow")
    assert retried.returncode == 0, retried.stderr
    new_id = retried.stderr.split()[1]
    shown_new = json.loads(aijobs(api_url, "show", new_id, "--json").stdout)
    assert shown_new["metadata"] == {"replay_of": job["id"]} and shown_new["priority"] == 9

    deleted = aijobs(api_url, "delete", job["id"])
    assert deleted.returncode == 0 and deleted.stderr.strip() == f"deleted {job['id']}"
    gone = aijobs(api_url, "show", job["id"])
    assert gone.returncode == 3 and "job not found (HTTP 404)" in gone.stderr


def test_bad_schedules_and_filters_are_usage_or_api_errors(api_url: str) -> None:
    naive = aijobs(api_url, "submit", "generate", "--model", "m", "x",
                   "--run-at", "2030-01-01T09:00:00")  # fmt: skip
    assert naive.returncode == 3 and "run_at:" in naive.stderr and "zone" in naive.stderr
    both = aijobs(api_url, "submit", "generate", "--model", "m", "x", "--run-at",
                  "2030-01-01T09:00:00Z", "--delay", "5")  # fmt: skip
    assert both.returncode == 2 and "not allowed with" in both.stderr
    priority = aijobs(api_url, "submit", "generate", "--model", "m", "x", "--priority", "12")
    assert priority.returncode == 2
    metadata = aijobs(api_url, "jobs", "--metadata", "no-equals-sign")
    assert metadata.returncode == 2 and "KEY=VALUE" in metadata.stderr
    naive_filter = aijobs(api_url, "jobs", "--created-after", "2030-01-01")
    assert naive_filter.returncode == 3 and "created_after:" in naive_filter.stderr
    filtered = aijobs(api_url, "jobs", "--metadata", f"tag={uuid.uuid4().hex}", "--json")
    assert filtered.returncode == 0 and json.loads(filtered.stdout)["data"] == []
