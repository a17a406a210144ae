"""The parts of the system as real processes: Redis, the simulator, the API and workers.

A :class:`Harness` owns a working directory (logs, SQLite files, Redis's directory) and
every process started through it; ``close()`` (or leaving its ``with`` block, on failure
too) stops them all by process group, newest first.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from celery import Celery
from celery.utils.nodenames import host_format

from aijobs.devtools.harness.env import child_env
from aijobs.devtools.harness.process import Child, HarnessError, aijobs_argv, spawn
from aijobs.devtools.harness.wait import wait_for, wait_url
from aijobs.devtools.redis_server import RedisServer, free_port, start_redis
from aijobs.store.migrate import upgrade

_C = TypeVar("_C", bound="Child")


@dataclass
class Service(Child):
    """A child that serves HTTP on 127.0.0.1."""

    port: int = 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Worker(Child):
    """An ``aijobs worker`` (or any Celery worker) child and its node name."""

    hostname: str = ""


def api_supports_workers() -> bool:
    """True if ``aijobs api`` takes ``--workers N`` (several API processes on one port)."""
    from aijobs.cli.main import build_parser

    # An option the subcommand does not know is left over, not an error, with
    # parse_known_args: so this asks the real parser without touching its internals.
    _, unknown = build_parser().parse_known_args(["api", "--workers", "2"])
    return not unknown


def wait_worker_ready(broker_url: str, worker: Worker, *, timeout_s: float = 60.0) -> None:
    """Wait until the worker answers a Celery ping on the broker (it consumes from then)."""
    app = Celery("aijobs-harness", broker=broker_url)
    app.conf.broker_connection_retry_on_startup = True
    node = host_format(worker.hostname)
    try:
        wait_for(
            lambda: bool(app.control.ping(destination=[node], timeout=0.5)),
            timeout_s=timeout_s,
            what=f"worker {node} to answer a ping",
            interval_s=0.1,
            watch=[worker],
        )
    finally:
        app.close()


class Harness:
    """Every process of one test or benchmark run, started here and stopped on close."""

    def __init__(self, workdir: Path, *, cwd: Path | None = None) -> None:
        self.workdir = workdir.resolve()
        self.log_dir = self.workdir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.cwd = cwd
        self.children: list[Child] = []
        self.redis_servers: list[RedisServer] = []

    def __enter__(self) -> Harness:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- generic ----------------------------------------------------------------------

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        cwd: Path | None = None,
        pipe_stdin: bool = False,
        pipe_stdout: bool = False,
    ) -> Child:
        """Start any command as a tracked child (see :func:`spawn`)."""
        child = spawn(
            name,
            argv,
            env=env,
            log_dir=self.log_dir,
            cwd=cwd or self.cwd,
            pipe_stdin=pipe_stdin,
            pipe_stdout=pipe_stdout,
        )
        self.children.append(child)
        return child

    def close(self, *, graceful: bool = True) -> None:
        """Stop every child, newest first (SIGTERM then SIGKILL, or SIGKILL at once), and Redis."""
        errors: list[BaseException] = []
        for child in reversed(self.children):
            try:
                child.stop() if graceful else child.kill()
            except Exception as exc:  # stop the rest, then report the first failure
                errors.append(exc)
        self.children.clear()
        for server in reversed(self.redis_servers):
            try:
                server.stop()
            except Exception as exc:
                errors.append(exc)
        self.redis_servers.clear()
        if errors:
            raise HarnessError(f"stopping children failed: {errors[0]!r}") from errors[0]

    # -- the parts --------------------------------------------------------------------

    def start_redis(self, name: str = "redis", *, port: int | None = None) -> RedisServer:
        """A private redis-server (no persistence) on 127.0.0.1, stopped on close."""
        server = start_redis(self.workdir / name, port=port)
        self.redis_servers.append(server)
        return server

    def sqlite_url(self, name: str = "aijobs.db", *, migrate: bool = True) -> str:
        """A fresh SQLite job store under the working directory, migrated unless told not."""
        url = f"sqlite:///{self.workdir / name}"
        if migrate:
            upgrade(url)
        return url

    def start_simulator(
        self,
        *,
        config: Mapping[str, object] | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
        name: str = "simulator",
        timeout_s: float = 30.0,
    ) -> Service:
        """``aijobs simulator`` as a process; ``config`` fields become ``AIJOBS_SIM_*``.

        Its OpenAI base URL is ``service.url + "/v1"``; ``/_sim`` is its admin API.
        """
        port = port or free_port()
        sim_env = dict(env or child_env())
        sim_env |= {f"AIJOBS_SIM_{k.upper()}": str(v) for k, v in (config or {}).items()}
        argv = aijobs_argv("simulator", "--host", "127.0.0.1", "--port", str(port))
        child = self.spawn(name, argv, env=sim_env)
        service = self._as(Service, child, port=port)
        wait_url(f"{service.url}/v1/models", timeout_s=timeout_s, watch=[service])
        return service

    def start_api(
        self,
        env: dict[str, str],
        *,
        port: int | None = None,
        workers: int | None = None,
        name: str = "api",
        ready_path: str = "/readyz",
        timeout_s: float = 60.0,
    ) -> Service:
        """``aijobs api`` as a process, waited for until ``ready_path`` answers.

        ``workers`` > 1 passes ``--workers N`` through; it raises :class:`HarnessError`
        when ``aijobs api`` has no such option yet.
        """
        port = port or free_port()
        argv = aijobs_argv("api", "--host", "127.0.0.1", "--port", str(port))
        if workers is not None and workers > 1:
            if not api_supports_workers():
                raise HarnessError(f"`aijobs api` has no --workers option: cannot run {workers}")
            argv += ["--workers", str(workers)]
        child = self.spawn(name, argv, env=env)
        service = self._as(Service, child, port=port)
        wait_url(f"{service.url}{ready_path}", timeout_s=timeout_s, watch=[service])
        return service

    def start_worker(
        self,
        env: dict[str, str],
        *,
        queues: str | Sequence[str] = "generate",
        concurrency: int = 4,
        name: str = "worker",
        hostname: str | None = None,
        extra_args: Sequence[str] = (),
        wait_ready: bool = True,
        timeout_s: float = 60.0,
    ) -> Worker:
        """``aijobs worker`` as a process; by default waited for until it answers a ping.

        ``hostname`` defaults to a unique ``NAME-xxxxxx@127.0.0.1`` (``%h`` is expanded
        as Celery does). Waiting needs ``REDIS_URL`` in ``env``.
        """
        queue_list = queues if isinstance(queues, str) else ",".join(queues)
        node = hostname or f"{name}-{uuid.uuid4().hex[:6]}@127.0.0.1"
        argv = aijobs_argv(
            "worker",
            "--queues", queue_list,
            "--concurrency", str(concurrency),
            "--hostname", node,
            *extra_args,
        )  # fmt: skip
        worker = self._as(Worker, self.spawn(name, argv, env=env), hostname=node)
        if wait_ready:
            wait_worker_ready(env["REDIS_URL"], worker, timeout_s=timeout_s)
        return worker

    def start_workers(
        self,
        env: dict[str, str],
        processes: int,
        *,
        name: str = "worker",
        timeout_s: float = 60.0,
        **options: Any,
    ) -> list[Worker]:
        """``processes`` ``aijobs worker`` processes (``NAME-0``, ...) started at once, then
        waited for until each answers a ping; ``options`` as :meth:`start_worker` takes."""
        workers = [self.start_worker(env, name=f"{name}-{i}", wait_ready=False, **options)
                   for i in range(processes)]  # fmt: skip
        for worker in workers:
            wait_worker_ready(env["REDIS_URL"], worker, timeout_s=timeout_s)
        return workers

    def start_celery_worker(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        hostname: str,
        timeout_s: float = 60.0,
    ) -> Worker:
        """Any Celery worker command (a baseline) whose node name is ``hostname``."""
        worker = self._as(Worker, self.spawn(name, argv, env=env), hostname=hostname)
        wait_worker_ready(env["REDIS_URL"], worker, timeout_s=timeout_s)
        return worker

    def _as(self, cls: type[_C], child: Child, **fields: object) -> _C:
        """Re-wrap a tracked child as ``cls`` (a Service or Worker), still tracked."""
        typed = cls(child.name, child.process, child.log_path, **fields)
        self.children[self.children.index(child)] = typed
        return typed
