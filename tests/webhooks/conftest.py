"""Webhook tests: a signing secret, a private store, a receiver on loopback."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from aijobs.store import Database, JobRepository
from aijobs.store.migrate import upgrade
from tests.stack import _drop_schema, _private_database
from tests.webhooks.receiver import Plan, Receiver, running_receiver


@pytest.fixture
def secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobRepository]:
    """A job store of the test's own (SQLite, or a PostgreSQL schema when DATABASE_URL
    names a server): nothing else claims its outbox."""
    schema, url = _private_database(tmp_path)
    upgrade(url)
    repo = JobRepository(Database(url))
    try:
        yield repo
    finally:
        repo.db.dispose()
        if schema:
            _drop_schema(schema)


@pytest.fixture
def receiver(secret: str) -> Iterator[Receiver]:
    with running_receiver(secret, Plan()) as running:
        yield running
