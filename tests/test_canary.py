"""A canary key and prompt through a full job: neither may show up in logs, broker messages,
Redis beyond the job's own output, or the job table outside its input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import text

from aijobs.devtools.redis_server import RedisServer, free_port
from aijobs.devtools.simulator import RunningSimulator
from aijobs.store.db import make_engine
from aijobs.store.migrate import upgrade
from tests.support import read_events, wait_for

TENANT = "tenant-canary"


def redis_dump(client: redis.Redis) -> str:
    """Every key and value in the database, as text."""
    parts: list[str] = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        value: Any
        if kind == "string":
            value = client.get(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "set":
            value = client.smembers(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1)
        elif kind == "stream":
            value = client.xrange(key)
        else:
            value = ""
        parts.append(f"{key} {value}")
    return "\n".join(parts)


def test_canary_key_and_prompt_leak_nowhere(
    tmp_path: Path, redis_server: RedisServer, simulator: RunningSimulator
) -> None:
    canary = uuid.uuid4().hex
    prompt = f"PROMPT-CANARY-{canary}"
    api_key = f"APIKEY-CANARY-{canary}"
    provider_key = f"sk-PROVIDERKEY-CANARY-{canary}"
    redis_url = redis_server.url.rsplit("/", 1)[0] + "/2"
    rds = redis.Redis.from_url(redis_url, decode_responses=True)
    rds.flushdb()
    database_url = f"sqlite:///{tmp_path / 'canary.db'}"
    upgrade(database_url)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIJOBS_")}
    env |= {
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "OPENAI_BASE_URL": simulator.api_base,
        "OPENAI_API_KEY": provider_key,
        "AIJOBS_API_KEYS": f"{TENANT}:{api_key}",
        "AIJOBS_LOG_LEVEL": "DEBUG",
        "AIJOBS_LOG_JSON": "true",
    }
    logs = {name: tmp_path / f"{name}.log" for name in ("api", "worker")}
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> None:
        with open(logs[name], "wb") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "aijobs.cli", *args], env=env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            ))  # fmt: skip

    try:
        start("api", "api", "--port", str(port), "--access-log")
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _up(f"{base}/healthz"), timeout_s=30)
        client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {api_key}"})
        body = {"kind": "generate", "model": "m", "max_tokens": 20, "metadata": {"t": 1},
                "messages": [{"role": "system", "content": prompt},
                             {"role": "user", "content": prompt}]}  # fmt: skip
        job_id = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "c1"}).json()["id"]

        # Waiting in its tenant's list in Redis: by id, nothing else.
        queued = rds.zrange(f"aijobs:q:generate:t:{TENANT}", 0, -1)
        assert queued == [job_id]

        start("worker", "worker", "--queues", "generate", "--concurrency", "2")
        events = read_events(client, job_id, timeout_s=60)
        assert events[-1].data == {"status": "succeeded"}
        client.close()
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)

    for name, path in logs.items():
        log = path.read_text()
        assert job_id in log, f"the {name} log says nothing of the job"
        assert canary not in log, f"the canary leaked into the {name} log"
    assert canary not in redis_dump(rds)
    engine = make_engine(database_url)
    with engine.connect() as conn:
        row = dict(conn.execute(text("SELECT * FROM jobs")).mappings().one())
    engine.dispose()
    assert prompt in json.dumps(row.pop("input"))  # the input is where the prompt belongs
    assert canary not in str(row)
    rds.close()


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
