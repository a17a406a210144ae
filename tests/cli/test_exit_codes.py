"""The terminal commands against a running API: text as it is generated, exit codes that
tell success from failure."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from tests.cli.runner import aijobs

pytestmark = pytest.mark.usefixtures("worker")


def test_submit_generate_follow_prints_the_text(api_url: str) -> None:
    done = aijobs(api_url, "submit", "generate", "--model", "m", "[[echo]] hello from the cli",
                  "--follow")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hello from the cli"
    assert done.stderr.startswith("job ")


def test_submit_without_follow_prints_the_id_and_show_lists_it(api_url: str) -> None:
    submitted = aijobs(api_url, "submit", "generate", "--model", "m", "hi", "--max-tokens", "3")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    assert len(job_id) == 32
    followed = aijobs(api_url, "follow", job_id)
    assert followed.returncode == 0
    shown = json.loads(aijobs(api_url, "show", job_id, "--json").stdout)
    assert shown["id"] == job_id and shown["status"] == "succeeded"
    listing = aijobs(api_url, "jobs", "--limit", "5").stdout
    assert job_id in listing
    cancelled = aijobs(api_url, "cancel", job_id)
    assert cancelled.returncode == 0 and "already finished" in cancelled.stdout


def test_a_failed_job_exits_1_with_its_error(api_url: str, simulator: Any) -> None:
    model = f"m-{uuid.uuid4().hex[:6]}"
    fault = {"kind": "bad_request", "model": model, "message": "no such thing"}
    httpx.post(f"{simulator.base_url}/_sim/faults", json={"faults": [fault]}).raise_for_status()
    done = aijobs(api_url, "submit", "generate", "--model", model, "x", "--follow")
    assert done.returncode == 1
    assert "failed: bad_request: no such thing" in done.stderr


def test_extract_prints_json_and_embed_shows_progress(api_url: str) -> None:
    schema = json.dumps({"type": "object", "properties": {"city": {"type": "string"}},
                         "required": ["city"]})  # fmt: skip
    extracted = aijobs(api_url, "submit", "extract", "I live in Paris", "--model", "m",
                       "--schema", schema, "--follow")  # fmt: skip
    assert extracted.returncode == 0, extracted.stderr
    assert isinstance(json.loads(extracted.stdout)["city"], str)
    embedded = aijobs(api_url, "submit", "embed", "a", "b", "c", "--model", "e",
                      "--dimensions", "4", "--follow")  # fmt: skip
    assert embedded.returncode == 0, embedded.stderr
    assert "3/3" in embedded.stderr
    assert embedded.stdout.strip() == "3 vectors of 4 dimensions"


def test_bad_key_and_bad_input_exit_3(api_url: str) -> None:
    refused = aijobs(api_url, "jobs", key="wrong")
    assert refused.returncode == 3 and "invalid API key (HTTP 401)" in refused.stderr
    bad = aijobs(api_url, "submit", "extract", "t", "--model", "m", "--schema", '{"type": "array"}')
    assert bad.returncode == 3 and "root must be an object" in bad.stderr
    usage = aijobs(api_url, "submit", "extract", "t", "--model", "m", "--schema", "{nope")
    assert usage.returncode == 2
