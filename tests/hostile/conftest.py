"""Hostile input: an API process of its own with test-sized limits, beside the session's
worker, store and Redis (so resource use is measured on a real process)."""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest

from aijobs.devtools.redis_server import free_port
from aijobs.settings import Settings
from tests.support import ApiProcess, clean_env

#: A key the API knows (bootstrap) and one it does not.
TENANT_H, KEY_H = "tenant-h", "key-h-0123456789abcdef"
TENANT_I, KEY_I = "tenant-i", "key-i-0123456789abcdef"


@pytest.fixture(scope="module")
def api_proc(settings: Settings) -> Iterator[ApiProcess]:
    """`aijobs api` with short client timeouts, on the session's Redis and store."""
    keys = f"{TENANT_H}:{KEY_H},{TENANT_I}:{KEY_I},{settings.api_keys.get_secret_value()}"
    api = ApiProcess(
        free_port(),
        clean_env(
            REDIS_URL=settings.require_redis_url(),
            DATABASE_URL=settings.database_url,
            AIJOBS_API_KEYS=keys,
            AIJOBS_HEADER_TIMEOUT_S="2",
            AIJOBS_BODY_TIMEOUT_S="4",
            AIJOBS_KEEPALIVE_S="2",
            AIJOBS_KEY_CACHE_TTL_S="0",
            AIJOBS_TENANT_SUBMITS_PER_S="0",
        ),
    )
    api.start()
    yield api
    api.stop()


def rss_mb(api: ApiProcess) -> float:
    """The API process's resident memory now."""
    return float(psutil.Process(api.procs[-1].pid).memory_info().rss) / 2**20
