"""A private stack for fault tests: its own Redis (killed, restarted, emptied), its own
SQLite store, `aijobs worker` processes (SIGKILLed, SIGSTOPped), and the API over HTTP.

Each test gets a stack of its own, so destroying its Redis never touches the session's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import text

from aijobs.devtools.redis_server import RedisServer, free_port, start_redis
from aijobs.devtools.simulator import RunningSimulator
from aijobs.settings import Settings
from aijobs.store import Database, JobRepository
from aijobs.store.db import make_engine
from aijobs.store.migrate import upgrade
from tests.conftest import KEY_A, TENANT_A, serve_in_thread
from tests.support import wait_for

TERMINAL = ("succeeded", "failed", "cancelled")


class Stack:
    """Redis, store, workers and an API for one test; everything stopped by ``close``."""

    def __init__(
        self,
        tmp: Path,
        simulator: RunningSimulator,
        *,
        append_only: bool = False,
        api_keys: str = f"{TENANT_A}:{KEY_A}",
        **env: str,
    ) -> None:
        self.tmp = tmp
        self.simulator = simulator
        self.append_only = append_only
        self.redis_port = free_port()
        self.redis_dir = tmp / "redis"
        self.redis_server: RedisServer | None = None
        self.start_redis()
        self._schema, self.database_url = _private_database(tmp)
        upgrade(self.database_url)
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AIJOBS_")}
        self.env |= {
            "REDIS_URL": self.redis_url,
            "DATABASE_URL": self.database_url,
            "OPENAI_BASE_URL": simulator.api_base,
            "OPENAI_API_KEY": "sk-test",
            "AIJOBS_API_KEYS": api_keys,
            "AIJOBS_LEASE_TTL_S": "2",
            "AIJOBS_RECONCILE_INTERVAL_S": "0.5",
            "AIJOBS_SHUTDOWN_GRACE_S": "1",
            "AIJOBS_RETRY_BASE_S": "0.05",
            "AIJOBS_RETRY_CAP_S": "0.5",
            "AIJOBS_DELTA_FLUSH_MS": "10",
            "AIJOBS_SSE_KEEPALIVE_S": "1",
            "AIJOBS_LOG_LEVEL": "INFO",
            **env,
        }
        self.settings = Settings(
            redis_url=self.redis_url,
            database_url=self.database_url,
            api_keys=api_keys,
            sse_keepalive_s=1.0,
            key_cache_ttl_s=0,
        )
        self.repo = JobRepository(Database(self.database_url))
        self.workers: list[subprocess.Popen[bytes]] = []
        self._api: Any = None
        self.api_url = ""

    # -- Redis ------------------------------------------------------------------------

    def start_redis(self, *, empty: bool = False) -> None:
        """Start (or restart) the stack's Redis on its port; ``empty`` throws its files away."""
        if empty and self.redis_dir.exists():
            shutil.rmtree(self.redis_dir)
        self.redis_server = start_redis(
            self.redis_dir, port=self.redis_port, append_only=self.append_only
        )

    def kill_redis(self) -> None:
        """SIGKILL Redis: whatever it had not written to its append-only file is gone."""
        assert self.redis_server is not None
        self.redis_server.process.kill()
        self.redis_server.process.wait()

    def redis(self) -> redis.Redis:
        """A client of the stack's Redis (decoded)."""
        return redis.Redis.from_url(self.redis_url, decode_responses=True, socket_timeout=5)

    # -- processes ----------------------------------------------------------------------

    def start_worker(self, name: str, *extra: str, **env: str) -> subprocess.Popen[bytes]:
        """An `aijobs worker` process of its own process group, logging to ``name``.log."""
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "aijobs.cli", "worker", "--concurrency", "8",
             "--hostname", f"{name}@%h", *extra],
            env=self.env | env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        self.workers.append(proc)
        return proc

    def signal_worker(self, proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        """Send ``sig`` to every process of the worker."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        if sig == signal.SIGKILL:
            proc.wait()

    def start_api(self) -> str:
        """The API (in this process, over real HTTP) on the stack's Redis and store."""
        from aijobs.api.main import create_app

        self._api = serve_in_thread(create_app(self.settings))
        self.api_url = self._api[2]
        return self.api_url

    def client(self, key: str = KEY_A) -> httpx.Client:
        """An HTTP client of the API (as tenant A by default)."""
        return httpx.Client(
            base_url=self.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    # -- jobs -------------------------------------------------------------------------

    def submit(self, client: httpx.Client, prompt: str, *, max_tokens: int = 40,
               model: str = "m") -> str:  # fmt: skip
        """Submit a generate job through the API; its id."""
        body = {"kind": "generate", "model": model, "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": prompt}]}  # fmt: skip
        answer = client.post("/v1/jobs", json=body)
        assert answer.status_code == 202, answer.text
        return str(answer.json()["id"])

    def events(self, job_id: str) -> list[tuple[int, str, dict[str, Any]]]:
        """The job's Stream as (id, event, data)."""
        with contextlib.closing(self.redis()) as client:
            entries = client.xrange(f"aijobs:{{{job_id}}}:events")
        return [(int(i.split("-")[1]), f["e"], json.loads(f["d"])) for i, f in entries]

    def finished(self, job_id: str, timeout_s: float = 60) -> Any:
        """The job's row once it is terminal."""

        def done() -> Any:
            job = self.repo.get(job_id)
            return job if job is not None and job.status in TERMINAL else None

        return wait_for(done, timeout_s=timeout_s, interval_s=0.1)

    def close(self) -> None:
        """Stop everything this stack started."""
        for proc in self.workers:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGCONT)
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._api is not None:
            server, thread, _ = self._api
            server.should_exit = True
            thread.join(10)
        self.repo.db.dispose()
        if self.redis_server is not None:
            self.redis_server.stop()
        if self._schema:
            _drop_schema(self._schema)


def _private_database(tmp: Path) -> tuple[str | None, str]:
    """A store of the stack's own: a fresh PostgreSQL schema when DATABASE_URL names a
    PostgreSQL server (so both CI passes run these tests on both), else a SQLite file."""
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgresql"):
        return None, f"sqlite:///{tmp / 'store.db'}"
    schema = f"stack_{uuid.uuid4().hex[:12]}"
    engine = make_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    separator = "&" if "?" in base else "?"
    return schema, f"{base}{separator}options=-csearch_path%3D{schema}"


def _drop_schema(schema: str) -> None:
    engine = make_engine(os.environ["DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@contextlib.contextmanager
def running_stack(tmp: Path, simulator: RunningSimulator, **options: Any) -> Iterator[Stack]:
    """A ``Stack`` for the duration of the block."""
    stack = Stack(tmp, simulator, **options)
    try:
        yield stack
    finally:
        stack.close()
