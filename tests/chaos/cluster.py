"""The chaos run's stack, all real processes on loopback: Redis behind a Sentinel (master +
replica, AOF), the simulator with chaos on, ``aijobs api``, and a fleet of ``aijobs worker``
processes that the faults SIGKILL, SIGSTOP and replace.

Everything is started through one :class:`~aijobs.devtools.harness.Harness`, and
:meth:`Cluster.close` stops it by process group (stalled processes are continued first,
so nothing is left behind even when the test fails half-way).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from celery import Celery
from celery.utils.nodenames import host_format

from aijobs.devtools.harness import Harness, Service, Worker, child_env, wait_for
from aijobs.settings import Settings
from aijobs.store import Database, JobRepository
from aijobs.store.migrate import upgrade
from aijobs.worker.celery_app import create_celery_app
from tests.chaos.redis_ha import MASTER_NAME, RedisHA
from tests.stack import _drop_schema, _private_database

TENANT, KEY = "chaos-tenant", "chaos-key-0123456789"
QUEUES = "generate,extract,embed"
WORKER_CONCURRENCY = 16

#: Settings of every aijobs process of the run: short enough that each recovery path
#: (lease lapse, lost dispatch, orphan sweep, provider deadline) happens within seconds.
STACK_SETTINGS: dict[str, object] = {
    "api_keys": f"{TENANT}:{KEY}",
    "redis_sentinel_master": MASTER_NAME,
    "lease_ttl_s": 2,
    "reconcile_interval_s": 0.5,
    "dispatch_timeout_s": 5,
    "orphan_grace_s": 3,
    # A stall keeps the connection alive with keep-alives: only the deadline ends it.
    "provider_timeout_s": 3,
    "provider_connect_timeout_s": 2,
    "provider_deadline_s": 12,
    "task_time_limit_s": 30,
    # Twenty-odd kills, stalls and four Redis outages land on ~6 running jobs at a time:
    # the caps must not turn the faults the run injects into failed jobs.
    "max_attempts": 15,
    "poison_after_losses": 12,
    "retry_base_s": 0.2,
    "retry_cap_s": 2,
    "delta_flush_ms": 25,
    "sse_keepalive_s": 1,
    "shutdown_grace_s": 1,
    "key_cache_ttl_s": 60,
    "embed_batch_size": 3,
    "embed_concurrency": 2,
    "log_level": "INFO",
}

#: The simulator's pace: a 100-token answer streams for ~7 s, long enough to be hit; and a
#: first-byte latency that keeps embedding batches in flight for a moment too.
TOKENS_PER_SECOND = 15.0
LATENCY_MS = 150


def chaos_config(seed: int) -> dict[str, object]:
    """The simulator's chaos section: every fault kind, drawn per job (``by_key``)."""
    return {
        "seed": seed,
        "by_key": True,
        "rate_limit": 0.06,
        "server_error": 0.06,
        "cut": 0.06,
        "trickle": 0.04,
        "stall": 0.04,
        "odd_text": 0.5,
        "retry_after_min_s": 0.05,
        "retry_after_max_s": 1.0,
        "trickle_min_s": 0.1,
        "trickle_max_s": 0.3,
        "stall_after_max_chunks": 3,
        "stall_keepalive_s": 0.5,
    }


@dataclass
class FleetWorker:
    """One worker process of the fleet and what was done to it."""

    worker: Worker
    started: float
    stalled: bool = False
    killed_at: float | None = None
    #: It exited without being killed (and the supervisor replaced it).
    crashed_at: float | None = None


@dataclass
class Cluster:
    """The run's processes and the handles the test drives them with."""

    workdir: Path
    seed: int
    #: The simulator's random faults; off for a focused test.
    chaos: bool = True
    harness: Harness = field(init=False)
    redis: RedisHA = field(init=False)
    simulator: Service = field(init=False)
    api: Service = field(init=False)
    env: dict[str, str] = field(init=False)
    settings: Settings = field(init=False)
    repo: JobRepository = field(init=False)
    celery: Celery = field(init=False)
    fleet: list[FleetWorker] = field(default_factory=list)
    _schema: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _started_workers: int = 0
    _stop_supervising: threading.Event = field(default_factory=threading.Event)
    _supervisor: threading.Thread | None = None

    def start(self, *, workers: int) -> None:
        """Start everything; returns once the API is ready and ``workers`` answer pings."""
        self.harness = Harness(self.workdir)
        self.redis = RedisHA.start(self.harness)
        self._schema, database_url = _private_database(self.workdir)
        upgrade(database_url)
        config: dict[str, object] = {"tokens_per_second": TOKENS_PER_SECOND,
                                     "latency_ms": LATENCY_MS}  # fmt: skip
        if self.chaos:
            config["chaos"] = json.dumps(chaos_config(self.seed))
        self.simulator = self.harness.start_simulator(config=config)
        self.env = child_env(
            redis_url=self.redis.url,
            database_url=database_url,
            openai_base_url=f"{self.simulator.url}/v1",
            openai_api_key="sk-chaos",
            aijobs=STACK_SETTINGS,
        )
        self.settings = Settings(
            redis_url=self.redis.url,
            redis_sentinel_master=MASTER_NAME,
            database_url=database_url,
            api_keys=f"{TENANT}:{KEY}",
        )
        self.repo = JobRepository(Database(database_url))
        self.celery = create_celery_app(self.settings)
        self.api = self.harness.start_api(self.env)
        started = [self.start_worker() for _ in range(workers)]
        for member in started:
            self.wait_worker_ready(member.worker)

    # -- the fleet ----------------------------------------------------------------------

    def start_worker(self) -> FleetWorker:
        """Start one more worker process (not waited for: a replacement after a kill)."""
        with self._lock:
            self._started_workers += 1
            number = self._started_workers
        worker = self.harness.start_worker(
            self.env, queues=QUEUES, concurrency=WORKER_CONCURRENCY,
            name=f"worker-{number:02d}", wait_ready=False,
        )  # fmt: skip
        member = FleetWorker(worker, time.time())
        with self._lock:
            self.fleet.append(member)
        return member

    def wait_worker_ready(self, worker: Worker, timeout_s: float = 90.0) -> None:
        """Until the worker answers a Celery ping (through the Sentinel's master)."""
        node = host_format(worker.hostname)
        wait_for(
            lambda: bool(self.celery.control.ping(destination=[node], timeout=0.5)),
            timeout_s=timeout_s, what=f"worker {node} to answer a ping",
            interval_s=0.2, watch=[worker],
        )  # fmt: skip

    def supervise(self) -> None:
        """Replace every worker that exits without being killed, as an orchestrator's
        restart policy would (each one is a crash the run reports)."""
        self._supervisor = threading.Thread(target=self._supervise, name="supervisor",
                                            daemon=True)  # fmt: skip
        self._supervisor.start()

    def _supervise(self) -> None:
        while not self._stop_supervising.wait(0.5):
            with self._lock:
                gone = [m for m in self.fleet if m.killed_at is None and m.crashed_at is None
                        and not m.worker.alive()]  # fmt: skip
                for member in gone:
                    member.crashed_at = time.time()
            for _ in gone:
                if not self._stop_supervising.is_set():
                    self.start_worker()

    def crashes(self) -> list[FleetWorker]:
        """Workers that exited by themselves."""
        with self._lock:
            return [m for m in self.fleet if m.crashed_at is not None]

    def running_workers(self) -> list[FleetWorker]:
        """Workers alive and not stalled."""
        with self._lock:
            return [m for m in self.fleet if m.killed_at is None and not m.stalled
                    and m.worker.alive()]  # fmt: skip

    def kill_worker(self, member: FleetWorker) -> None:
        """SIGKILL the worker's whole process group (a crash, mid-whatever)."""
        member.worker.signal_group(signal.SIGKILL)
        member.worker.process.wait()
        member.killed_at = time.time()

    def stall_worker(self, member: FleetWorker) -> None:
        """SIGSTOP the worker: it holds its jobs and renews nothing."""
        member.stalled = True
        member.worker.signal_group(signal.SIGSTOP)

    def resume_worker(self, member: FleetWorker) -> None:
        """SIGCONT a stalled worker."""
        member.worker.signal_group(signal.SIGCONT)
        member.stalled = False

    # -- the API and the broker -----------------------------------------------------------

    def client(self, timeout_s: float = 15.0) -> httpx.Client:
        """An HTTP client of the API as the run's tenant."""
        return httpx.Client(base_url=self.api.url, headers={"Authorization": f"Bearer {KEY}"},
                            timeout=timeout_s, trust_env=False)  # fmt: skip

    def send_duplicate(self, job_id: str, kind: str) -> None:
        """Deliver a job's task once more, the way a broker redelivers a message."""
        self.celery.send_task(f"aijobs.{kind}", args=[job_id], kwargs={"kind": kind},
                              exchange="", routing_key=kind)  # fmt: skip

    def simulator_requests(self) -> list[dict[str, Any]]:
        """The simulator's whole request log."""
        answer = httpx.get(f"{self.simulator.url}/_sim/requests", timeout=60, trust_env=False)
        answer.raise_for_status()
        body = answer.json()
        return list(body["requests"] if isinstance(body, Mapping) else body)

    # -- the end --------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every process (continuing stalled ones first) and drop the private schema."""
        errors: list[BaseException] = []
        self._stop_supervising.set()
        if self._supervisor is not None:
            self._supervisor.join(5)
        with self._lock:
            members = list(self.fleet)
        for member in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(member.worker.pid, signal.SIGCONT)
        for closing in (self._close_clients, self._close_processes, self._drop_schema):
            try:
                closing()
            except Exception as exc:  # stop the rest, then report the first failure
                errors.append(exc)
        if errors:
            raise errors[0]

    def _close_clients(self) -> None:
        if hasattr(self, "celery"):
            self.celery.close()
        if hasattr(self, "repo"):
            self.repo.db.dispose()

    def _close_processes(self) -> None:
        if hasattr(self, "harness"):
            try:
                self.harness.close(graceful=False)
            finally:
                if hasattr(self, "redis"):
                    self.redis.close()

    def _drop_schema(self) -> None:
        if self._schema:
            _drop_schema(self._schema)
