"""The private Redis for development and tests."""

from __future__ import annotations

from pathlib import Path

import redis

from aijobs.devtools.redis_server import bundled_redis_server, start_redis


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
