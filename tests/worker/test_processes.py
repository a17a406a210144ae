"""Whole worker processes, killed and stopped for real: nothing is lost, nothing doubled.

These tests run `aijobs worker` subprocesses against their own Redis database and their
own SQLite store, so the in-process worker of the other tests never sees their jobs.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from celery import Celery

from aijobs.devtools.harness import Harness, Worker, aijobs_argv, child_env, free_port
from aijobs.devtools.simulator import RunningSimulator
from aijobs.settings import Settings
from aijobs.store import Database, JobRepository
from aijobs.store.migrate import upgrade
from aijobs.worker.celery_app import create_celery_app, send_job
from tests.conftest import TENANT_A
from tests.support import wait_for


class Fleet:
    """Worker processes sharing one broker, one store and the simulator."""

    def __init__(self, env: dict[str, str], settings: Settings, log_dir: Path) -> None:
        self.env = env
        self.settings = settings
        self.harness = Harness(log_dir)
        self.app: Celery = create_celery_app(settings)
        self.repo = JobRepository(Database(settings.database_url))
        self.redis = redis.Redis.from_url(env["REDIS_URL"], decode_responses=True)

    def start_worker(self, name: str, *extra: str, **env: str) -> Worker:
        return self.harness.start_worker(
            self.env | env, queues="generate", concurrency=4, name=name,
            hostname=f"{name}@%h", extra_args=extra, wait_ready=False,
        )  # fmt: skip

    def submit(self, model: str, max_tokens: int) -> str:
        messages = [{"role": "user", "content": "go"}]
        payload = {"kind": "generate", "model": model, "max_tokens": max_tokens,
                   "temperature": None, "messages": messages}  # fmt: skip
        job = self.repo.create(
            tenant=TENANT_A, kind="generate", model=model, payload=payload, meta={}
        )
        send_job(self.app, job.id, "generate")
        return job.id

    def events(self, job_id: str) -> list[tuple[str, dict[str, Any]]]:
        entries = self.redis.xrange(f"aijobs:{{{job_id}}}:events")
        return [(f["e"], json.loads(f["d"])) for _, f in entries]

    def finished(self, job_id: str, timeout_s: float) -> Any:
        def done() -> Any:
            job = self.repo.get(job_id)
            return job if job and job.status in ("succeeded", "failed", "cancelled") else None

        return wait_for(done, timeout_s=timeout_s, interval_s=0.2)

    def close(self) -> None:
        try:
            self.harness.close(graceful=False)  # SIGKILL: what is left of a test is not data
        finally:
            self.app.close()
            self.repo.db.dispose()
            self.redis.close()


@pytest.fixture
def fleet(tmp_path: Path, redis_server: Any, simulator: RunningSimulator) -> Iterator[Fleet]:
    redis_url = redis_server.url.rsplit("/", 1)[0] + "/1"
    redis.Redis.from_url(redis_url).flushdb()
    database_url = f"sqlite:///{tmp_path / 'fleet.db'}"
    upgrade(database_url)
    env = child_env(
        redis_url=redis_url,
        database_url=database_url,
        openai_base_url=simulator.api_base,
        openai_api_key="sk-test",
        aijobs={
            "lease_ttl_s": 2,
            "reconcile_interval_s": 0.5,
            "shutdown_grace_s": 1,
            "retry_base_s": 0.05,
            "delta_flush_ms": 10,
            "log_level": "INFO",
        },
    )
    settings = Settings(redis_url=redis_url, database_url=database_url)
    fleet = Fleet(env, settings, tmp_path)
    yield fleet
    fleet.close()


def slow_provider(simulator: RunningSimulator, tokens_per_second: float) -> None:
    config = {"tokens_per_second": tokens_per_second}
    httpx.put(f"{simulator.base_url}/_sim/config", json=config).raise_for_status()


def deltas(events: list[tuple[str, dict[str, Any]]]) -> int:
    return sum(1 for kind, _ in events if kind == "delta")


def text_after_last_reset(events: list[tuple[str, dict[str, Any]]]) -> str:
    text: list[str] = []
    for kind, data in events:
        if kind == "reset":
            text = []
        elif kind == "delta":
            text.append(data["text"])
    return "".join(text)


def test_sigkilled_worker_job_is_rescued_by_liveness(
    fleet: Fleet, simulator: RunningSimulator
) -> None:
    slow_provider(simulator, 20)
    doomed = fleet.start_worker("doomed")
    job_id = fleet.submit("m", max_tokens=60)
    wait_for(lambda: deltas(fleet.events(job_id)) >= 5, timeout_s=30)
    doomed.kill()  # SIGKILL to every process of the worker, mid-stream
    killed_at = time.monotonic()
    fleet.start_worker("rescuer")
    job = fleet.finished(job_id, timeout_s=60)
    assert time.monotonic() - killed_at < 60
    assert job.status == "succeeded" and job.attempts == 2
    events = fleet.events(job_id)
    kinds = [kind for kind, _ in events]
    assert kinds.count("result") == 1 and kinds[-1] == "done"
    assert ("reset", {"attempt": 2}) in events
    assert text_after_last_reset(events) == job.result["text"]
    assert len(job.result["text"].split()) == 60
    assert all(d["attempt"] == 2 for k, d in events[kinds.index("reset") :] if k == "delta")


def test_sigterm_hands_running_jobs_back_and_exits(
    fleet: Fleet, simulator: RunningSimulator
) -> None:
    slow_provider(simulator, 20)
    leaving = fleet.start_worker("leaving")
    job_id = fleet.submit("m", max_tokens=200)  # ~10 s: longer than the 1 s grace
    wait_for(lambda: deltas(fleet.events(job_id)) >= 3, timeout_s=30)
    leaving.send_signal(signal.SIGTERM)
    assert leaving.wait(30) == 0  # it stops within grace + one chunk, not after the job
    row = fleet.repo.get(job_id)
    assert row is not None and row.status == "retrying"
    handed = [d for k, d in fleet.events(job_id) if k == "status" and d["status"] == "retrying"]
    assert handed and handed[-1]["reason"] == "worker_shutdown"
    slow_provider(simulator, 400)
    fleet.start_worker("next")
    job = fleet.finished(job_id, timeout_s=60)
    assert job.status == "succeeded" and job.attempts == 2
    events = fleet.events(job_id)
    assert [k for k, _ in events].count("result") == 1
    assert text_after_last_reset(events) == job.result["text"]


def test_worker_serves_metrics_and_a_heartbeat(fleet: Fleet, tmp_path: Path) -> None:
    port = free_port()
    beat = tmp_path / "alive"
    proc = fleet.start_worker(
        "watched", "--metrics-port", str(port), AIJOBS_WORKER_HEARTBEAT_FILE=str(beat)
    )
    job_id = fleet.submit("m", max_tokens=3)
    assert fleet.finished(job_id, timeout_s=30).status == "succeeded"
    scrape = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert 'aijobs_jobs_finished_total{kind="generate",status="succeeded"} 1.0' in scrape

    def alive() -> int:
        argv = aijobs_argv("worker-alive", "--file", str(beat))
        return subprocess.run(argv, env=fleet.env, check=False).returncode

    assert alive() == 0
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert alive() == 1


def test_worker_and_api_refuse_a_store_that_is_not_migrated(
    tmp_path: Path, redis_server: Any, simulator: RunningSimulator
) -> None:
    env = child_env(
        redis_url=redis_server.url.rsplit("/", 1)[0] + "/3",
        database_url=f"sqlite:///{tmp_path / 'empty.db'}",
        openai_base_url=simulator.api_base,
    )
    for command in (["worker", "--concurrency", "1"], ["api", "--port", str(free_port())]):
        done = subprocess.run(
            aijobs_argv(*command),
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode != 0, command
        assert "run `aijobs migrate`" in done.stdout + done.stderr, command
