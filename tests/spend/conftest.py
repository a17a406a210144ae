"""A tenant of its own for each spend test (its usage and budgets start at nothing)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from aijobs.store import Database
from aijobs.store.api_keys import KeyRepository
from aijobs.store.budgets import BudgetRepository
from tests.conftest import PRICED_MODEL
from tests.support import wait_for


@dataclass
class Tenant:
    """A fresh tenant: its name, an API client, and its budgets in the store."""

    name: str
    http: httpx.Client
    budgets: BudgetRepository

    def submit(self, prompt: str, **extra: Any) -> httpx.Response:
        body = {"kind": "generate", "model": PRICED_MODEL,
                "messages": [{"role": "user", "content": prompt}], **extra}  # fmt: skip
        return self.http.post("/v1/jobs", json=body)

    def finished(self, job_id: str) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            job = self.http.get(f"/v1/jobs/{job_id}").json()
            return job if job["status"] in ("succeeded", "failed", "cancelled") else None

        return wait_for(done, timeout_s=60)


@pytest.fixture
def tenant(api_url: str, database_url: str) -> Iterator[Tenant]:
    db = Database(database_url)
    name = f"spend-{uuid.uuid4().hex[:10]}"
    _, key = KeyRepository(db).create(name)
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=30) as http:
        yield Tenant(name, http, BudgetRepository(db, cache_ttl_s=0))
    db.dispose()
