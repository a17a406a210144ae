"""Real parts for every test: a private Redis, SQL (SQLite, or PostgreSQL via
DATABASE_URL), the simulator over HTTP, a real Celery worker and the API over HTTP."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import uvicorn
from celery import Celery
from sqlalchemy import text

from aijobs.api.main import create_app
from aijobs.devtools.harness import Harness, RedisServer, running_simulator
from aijobs.devtools.harness import serve_in_thread as harness_serve_in_thread
from aijobs.devtools.redis_server import RedisNotFound
from aijobs.devtools.simulator import RunningSimulator, SimulatorConfig
from aijobs.settings import RateLimit, Settings
from aijobs.spend.prices import Price
from aijobs.store import Base, Database, JobRepository
from aijobs.store.db import make_engine
from aijobs.store.migrate import upgrade
from aijobs.worker.celery_app import QUEUES, close_runtime, create_celery_app

TENANT_A, KEY_A = "tenant-a", "key-a-0123456789"
TENANT_B, KEY_B = "tenant-b", "key-b-0123456789"
TENANT_C, KEY_C = "tenant-c", "key-c-0123456789"
#: The one model with a fleet-wide budget in the test settings: 5 requests per 2 s.
LIMITED_MODEL = "limited-model"
#: The one model with a price in the test settings (USD per 1M tokens).
PRICED_MODEL = "gpt-4o-mini"
PRICE = Price(input=0.15, output=0.6, cached_input=0.075)


@pytest.fixture(scope="session")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """The session's processes (its Redis): all stopped at the end, whatever happened."""
    with Harness(tmp_path_factory.mktemp("harness")) as h:
        yield h


@pytest.fixture(scope="session")
def redis_server(harness: Harness) -> RedisServer:
    try:
        return harness.start_redis()
    except RedisNotFound as exc:  # say it once, not once per test that needs Redis
        pytest.exit(str(exc), returncode=2)


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def rds(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def _reset_postgres(url: str) -> None:
    # Every table the models know (a new one is never left over from an earlier run),
    # and Alembic's version.
    engine = make_engine(url)
    with engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            conn.execute(text(f'DROP TABLE IF EXISTS "{table.name}" CASCADE'))
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """PostgreSQL when DATABASE_URL names one (CI runs both), else a fresh SQLite file."""
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgresql"):
        _reset_postgres(url)
    else:
        url = f"sqlite:///{Path(tmp_path_factory.mktemp('db')) / 'aijobs.db'}"
    upgrade(url)
    return url


@pytest.fixture
def repo(database_url: str) -> Iterator[JobRepository]:
    """The job store, for tests that set up or inspect rows directly."""
    repository = JobRepository(Database(database_url))
    yield repository
    repository.db.dispose()


@pytest.fixture(scope="session")
def simulator() -> Iterator[RunningSimulator]:
    with running_simulator(SimulatorConfig(tokens_per_second=400.0)) as sim:
        yield sim


@pytest.fixture(autouse=True)
def _fresh_simulator(request: pytest.FixtureRequest) -> Iterator[None]:
    """Faults, counters and pacing start clean in every test that uses the simulator."""
    if "simulator" not in request.fixturenames:
        yield
        return
    sim: RunningSimulator = request.getfixturevalue("simulator")
    httpx.post(f"{sim.base_url}/_sim/reset").raise_for_status()
    httpx.put(
        f"{sim.base_url}/_sim/config",
        json={
            "tokens_per_second": 400.0,
            "latency_ms": 0,
            "max_tokens_default": 64,
            "rpm_limit": 0,
            "prompt_cache": False,
            "chaos": None,
        },
    ).raise_for_status()
    yield


@pytest.fixture(scope="session")
def settings(redis_url: str, database_url: str, simulator: RunningSimulator) -> Settings:
    return Settings(
        redis_url=redis_url,
        database_url=database_url,
        openai_base_url=simulator.api_base,
        openai_api_key="sk-test-not-a-real-key",
        api_keys=f"{TENANT_A}:{KEY_A},{TENANT_B}:{KEY_B},{TENANT_C}:{KEY_C}",
        key_cache_ttl_s=0,
        delta_flush_ms=10,
        retry_base_s=0.05,
        retry_cap_s=0.5,
        max_attempts=4,
        sse_keepalive_s=2.0,
        worker_concurrency=16,
        provider_timeout_s=30,
        max_jobs_body_bytes=4 * 1024 * 1024,
        reconcile_interval_s=0.5,
        rate_limits={LIMITED_MODEL: RateLimit(requests=5, window_s=2.0)},
        prices={PRICED_MODEL: PRICE},
        # Usage in every chunk (the simulator has vLLM's option): a stream cut short says
        # exactly what it cost. Budgets are read fresh on every submit.
        provider_continuous_usage=True,
        budget_cache_ttl_s=0,
    )


@pytest.fixture(scope="session")
def worker_app(settings: Settings) -> Celery:
    return create_celery_app(settings)


# The in-process worker is pytest-celery's (celery.contrib.pytest) session worker,
# configured by overriding its fixtures: our app, our threads pool and our queues. It
# runs the real tasks through the real broker: no task_always_eager anywhere.
@pytest.fixture(scope="session")
def celery_session_app(worker_app: Celery) -> Celery:
    return worker_app


@pytest.fixture(scope="session")
def celery_includes() -> list[str]:
    return ["aijobs.worker.tasks"]


@pytest.fixture(scope="session")
def celery_worker_pool() -> str:
    return "threads"


@pytest.fixture(scope="session")
def celery_worker_parameters() -> dict[str, object]:
    return {
        "concurrency": 16,
        "perform_ping_check": False,
        "queues": list(QUEUES),
        "loglevel": "WARNING",
        "shutdown_timeout": 30,
    }


@pytest.fixture(scope="session")
def worker(celery_session_worker: object, worker_app: Celery) -> Iterator[Celery]:
    """A real Celery worker (threads pool) consuming every queue, in this process."""
    yield worker_app
    close_runtime(worker_app)


def serve_in_thread(app: object) -> tuple[uvicorn.Server, threading.Thread, str]:
    """The API (or any ASGI app) on a free port, in a daemon thread of this process."""
    served = harness_serve_in_thread(app)
    return served.server, served.thread, served.url


@pytest.fixture(scope="session")
def api_url(settings: Settings) -> Iterator[str]:
    """The API, served over real HTTP by uvicorn in a background thread."""
    server, thread, url = serve_in_thread(create_app(settings))
    yield url
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def client(api_url: str) -> Iterator[httpx.Client]:
    """An HTTP client authenticated as tenant A."""
    with httpx.Client(
        base_url=api_url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30
    ) as c:
        yield c


@pytest.fixture
def client_b(api_url: str) -> Iterator[httpx.Client]:
    """An HTTP client authenticated as tenant B."""
    with httpx.Client(
        base_url=api_url, headers={"Authorization": f"Bearer {KEY_B}"}, timeout=30
    ) as c:
        yield c
