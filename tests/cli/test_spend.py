"""``aijobs tenants set-budget/show/clear-budget`` and ``aijobs usage``, as users run them."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import httpx
import pytest

from aijobs.devtools.simulator.request_keys import request_key_for_text
from aijobs.store import Database
from aijobs.store.api_keys import KeyRepository
from tests.cli.runner import aijobs
from tests.support import clean_env, wait_for

pytestmark = pytest.mark.usefixtures("worker")


def operator(database_url: str, redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(DATABASE_URL=database_url, REDIS_URL=redis_url)
    return subprocess.run([sys.executable, "-P", "-m", "aijobs.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def test_budgets_set_shown_enforced_and_cleared(
    api_url: str, database_url: str, redis_url: str
) -> None:
    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    db = Database(database_url)
    _, key = KeyRepository(db).create(tenant)
    db.dispose()
    run = aijobs(api_url, "submit", "generate", "--model", "gpt-4o-mini", "hello", "--follow",
                 key=key)  # fmt: skip
    assert run.returncode == 0, run.stderr

    set_ = operator(database_url, redis_url, "tenants", "set-budget", tenant, "--tokens", "10",
                    "--period", "day")  # fmt: skip
    assert set_.returncode == 0, set_.stderr
    assert set_.stdout.strip() == f"tenant {tenant}: 10 tokens per day"
    shown = operator(database_url, redis_url, "tenants", "show", tenant)
    assert shown.returncode == 0 and "10 tokens per day" in shown.stdout
    assert "(set)" in shown.stdout

    refused = aijobs(api_url, "submit", "generate", "--model", "m", "again", key=key)
    assert refused.returncode != 0 and "budget exceeded" in refused.stderr

    report = aijobs(api_url, "usage", "--group-by", "model", "--json", key=key)
    assert report.returncode == 0, report.stderr
    body = json.loads(report.stdout)
    assert body["totals"]["jobs"] == 1 and body["data"][0]["model"] == "gpt-4o-mini"
    assert body["budgets"][0]["limit"] == 10 and "from" in body
    text = aijobs(api_url, "usage", key=key)
    assert text.returncode == 0 and text.stdout.startswith("usage from")
    assert "budget    " in text.stdout and "of 10 tokens per day" in text.stdout

    cleared = operator(database_url, redis_url, "tenants", "clear-budget", tenant)
    assert cleared.returncode == 0 and "1 budget(s) removed" in cleared.stdout
    assert "no budget" in operator(database_url, redis_url, "tenants", "show", tenant).stdout
    wait_for(lambda: aijobs(api_url, "submit", "generate", "--model", "m", "free", key=key)
             .returncode == 0, timeout_s=30)  # fmt: skip


def test_bad_budget_and_usage_arguments(api_url: str, database_url: str, redis_url: str) -> None:
    both = operator(database_url, redis_url, "tenants", "set-budget", "t", "--usd", "1",
                    "--tokens", "5", "--period", "day")  # fmt: skip
    assert both.returncode == 2 and "not allowed with" in both.stderr
    zero = operator(database_url, redis_url, "tenants", "set-budget", "t", "--usd", "0",
                    "--period", "day")  # fmt: skip
    assert zero.returncode == 2 and "above 0" in zero.stderr
    naive = aijobs(api_url, "usage", "--from", "2026-01-01T00:00:00")
    assert naive.returncode == 3 and "from:" in naive.stderr


def test_submit_generate_with_parameters(api_url: str, simulator: Any) -> None:
    prompt = f"cli parameters {uuid.uuid4().hex}"
    run = aijobs(api_url, "submit", "generate", "--model", "gpt-4o-mini", prompt, "--stop", "END",
                 "--stop", "STOP", "--seed", "3", "--top-p", "0.25", "--json-object",
                 "--max-completion-tokens", "9", "--reasoning-effort", "high",
                 "--provider-option", "top_k=4", "--provider-option", "mode=fast",
                 "--follow")  # fmt: skip
    assert run.returncode == 0, run.stderr
    key = request_key_for_text(prompt)
    log = httpx.get(f"{simulator.base_url}/_sim/requests", params={"key": key}).json()
    (params,) = [r["params"] for r in log["requests"]]
    assert params["stop"] == ["END", "STOP"] and params["seed"] == 3 and params["top_p"] == 0.25
    assert params["max_completion_tokens"] == 9 and params["reasoning_effort"] == "high"
    assert params["top_k"] == 4 and params["mode"] == "fast"
    assert params["response_format"] == {"type": "json_object"}
    bad = aijobs(api_url, "submit", "generate", "--model", "m", "x", "--provider-option", "k")
    assert bad.returncode == 2 and "KEY=JSON" in bad.stderr
