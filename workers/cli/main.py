"""The aijobs command: run the system (dev, api, worker, flower, simulator, migrate, keys,
purge, replay) and use its API (submit, jobs, show, follow, cancel).

Each command imports what it needs when it runs, so parsing and --help import nothing
but the standard library.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aijobs import __version__
from aijobs.cli.api_parser import add_commands
from aijobs.cli.tenants import add_tenants
from aijobs.errors import ConfigurationError as SettingsError

if TYPE_CHECKING:
    from aijobs.settings import Settings

# The queues a worker takes by default: every kind (aijobs.schemas.JobKind, spelled out
# here so building the parser does not import pydantic).
_ALL_QUEUES = "generate,extract,embed"
_DESCRIPTION = (
    "Background AI jobs (generate, extract, embed). Run the system with dev, api, worker, "
    "flower and simulator; use its API with submit, jobs, show, follow and cancel "
    "(AIJOBS_URL, AIJOBS_API_KEY). Exit codes: 0 ok, 1 the job failed or was cancelled, "
    "2 bad usage, 3 the API refused or could not be reached."
)


def _settings() -> Settings:
    from aijobs.logs import configure_logging
    from aijobs.settings import Settings

    settings = Settings()
    configure_logging(level=settings.log_level, json_lines=settings.log_json)
    return settings


def cmd_api(args: argparse.Namespace) -> int:
    """Run the HTTP API."""
    from aijobs.api.server import run_api

    run_api(_settings(), host=args.host, port=args.port, access_log=args.access_log,
            workers=args.workers)  # fmt: skip
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Run a Celery worker."""
    from aijobs.logs import take_over_celery_logging
    from aijobs.schemas import JobKind
    from aijobs.worker.celery_app import create_celery_app

    settings = _settings()
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = set(queues) - {k.value for k in JobKind}
    if unknown:
        raise SettingsError(f"unknown queue(s): {', '.join(sorted(unknown))}")
    concurrency = args.concurrency or settings.worker_concurrency
    app = create_celery_app(settings)
    # The runtime sizes its connection pools and offers its slots from these; the CLI
    # flags alone would not reach it.
    app.conf.worker_concurrency = concurrency
    app.aijobs_queues = queues
    take_over_celery_logging(level=settings.log_level, json_lines=settings.log_json)
    pool = args.pool or settings.worker_pool
    # Celery prints its banner straight to stdout: with JSON lines, one record says it.
    quiet = ["--quiet"] if settings.log_json else []
    argv = [
        *quiet,
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        f"--queues={','.join(queues)}",
        f"--loglevel={settings.log_level}",
        "--without-gossip",
        "--without-mingle",
    ]
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    if args.metrics_port:
        app.aijobs_settings = settings.model_copy(update={"worker_metrics_port": args.metrics_port})
    if settings.log_json:
        fields = {"pool": pool, "concurrency": concurrency, "queues": queues,
                  "hostname": args.hostname}  # fmt: skip
        logging.getLogger("aijobs.worker").info("worker starting", extra={"fields": fields})
    app.worker_main(argv)
    return 0


def cmd_flower(args: argparse.Namespace) -> int:
    """Run Flower against the broker, with authentication on."""
    from celery.bin.celery import celery as celery_cli

    settings = _settings()
    if settings.flower_basic_auth is None and not args.local_only:
        raise SettingsError(
            "AIJOBS_FLOWER_BASIC_AUTH (user:password) is not set; refusing to run Flower "
            "without authentication (pass --local-only to allow it on 127.0.0.1)"
        )
    if settings.flower_basic_auth is not None:
        # Through the environment, so the password is not on the command line.
        os.environ["FLOWER_BASIC_AUTH"] = settings.flower_basic_auth.get_secret_value()
    # Show what identifies a job (its id and kind: all a task carries) and, for a failed
    # one, its error code (the exception's message) on the Tasks page.
    os.environ.setdefault(
        "FLOWER_TASKS_COLUMNS",
        "name,uuid,state,exception,args,received,runtime,worker",
    )
    address = "127.0.0.1" if args.local_only else args.address
    # tornado's --logging=none: Flower logs through our handler, in our format.
    argv = ["-A", "aijobs.worker", "flower", f"--port={args.port}", f"--address={address}",
            "--logging=none"]  # fmt: skip
    if args.db:
        db = os.path.abspath(args.db)
        os.makedirs(os.path.dirname(db), exist_ok=True)
        argv += ["--persistent=True", f"--db={db}"]
    if args.db or os.environ.get("FLOWER_PERSISTENT", "").lower() in ("1", "true", "yes", "on"):
        # Flower saves its task history on a clean stop, and (with this) every minute, so a
        # crash loses at most a minute of it.
        os.environ.setdefault("FLOWER_STATE_SAVE_INTERVAL", "60000")
    import aijobs.worker

    # Flower reads queue lengths by the broker URL's scheme, which a transport given by
    # path would replace: it keeps kombu's own (it consumes nothing, so the reconnect fix
    # of aijobs.worker.broker is not needed there).
    aijobs.worker.app.conf.broker_transport = None
    celery_cli.main(args=argv, prog_name="aijobs flower", standalone_mode=True)
    return 0


def cmd_simulator(args: argparse.Namespace) -> int:
    """Run the OpenAI-compatible simulator."""
    from aijobs.devtools.simulator import SimulatorConfig, serve
    from aijobs.logs import configure_logging_from_env

    configure_logging_from_env()
    serve(args.host, args.port, SimulatorConfig.from_env())
    return 0


def cmd_migrate(_args: argparse.Namespace) -> int:
    """Apply database migrations."""
    from aijobs.store.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    print("database is up to date")
    return 0


def cmd_worker_alive(args: argparse.Namespace) -> int:
    """Exit 0 if this container's worker beat recently (a health check)."""
    from aijobs.settings import Settings
    from aijobs.worker.heartbeat import is_alive

    settings = Settings()
    path = args.file or settings.worker_heartbeat_file
    if not path:
        print("aijobs: no heartbeat file (set AIJOBS_WORKER_HEARTBEAT_FILE)", file=sys.stderr)
        return 2
    return 0 if is_alive(path, max_age_s=args.max_age) else 1


def cmd_keys(args: argparse.Namespace) -> int:
    """Create, list or revoke API keys (in the job store)."""
    from aijobs.store import Database
    from aijobs.store.api_keys import KeyRepository

    settings = _settings()
    keys = KeyRepository(Database(settings.database_url))
    if args.keys_command == "create":
        row, key = keys.create(args.tenant, args.name or "")
        print(key)
        print(f"key {row.id} for tenant {row.tenant}: shown once, store it now", file=sys.stderr)
    elif args.keys_command == "list":
        for row in keys.list(args.tenant):
            state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "live"
            print(f"{row.id}  {row.tenant:<20}  {row.prefix}…  {row.name:<20}  "
                  f"{row.created_at:%Y-%m-%d %H:%M}  {state}")  # fmt: skip
    elif not keys.revoke(args.key_id):
        print(f"aijobs: no live key {args.key_id}", file=sys.stderr)
        return 1
    else:
        print(f"revoked {args.key_id}")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    """Delete finished jobs' inputs, outputs and event streams past the retention window."""
    from aijobs.connections import sync_client
    from aijobs.store import Database, JobRepository
    from aijobs.store.retention import purge

    settings = _settings()
    older_than_s = args.older_than_s if args.older_than_s is not None else settings.data_retention_s
    report = purge(
        JobRepository(Database(settings.database_url)),
        sync_client(settings.redis_target(), max_connections=4),
        older_than_s=older_than_s,
    )
    print(f"purged {report.jobs} jobs finished more than {older_than_s:.0f}s ago")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Submit a finished job again, as a new job with the same input (operators)."""
    from aijobs.connections import sync_client
    from aijobs.fairqueue import FairQueue, QueuedJob
    from aijobs.store import Database, JobRepository

    settings = _settings()
    repo = JobRepository(Database(settings.database_url))
    job = repo.get(args.job_id)
    if job is None:
        print(f"aijobs: no job {args.job_id}", file=sys.stderr)
        return 1
    if job.purged_at is not None:
        print(f"aijobs: job {job.id} was purged or deleted: its input is gone", file=sys.stderr)
        return 1
    new = repo.replay(job)
    # Into the fair queue the workers' feeders read, as the API queues a submit; if Redis
    # is down the row stays queued and a worker's reconciler queues it later.
    redis = sync_client(settings.redis_target(), max_connections=2)
    FairQueue(redis).push(QueuedJob(new.id, new.kind, new.tenant, new.priority))
    print(new.id)
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    """Run the whole system on this machine."""
    from aijobs.devtools.devserver import run_dev

    return run_dev(
        api_port=args.port, flower_port=args.flower_port, simulator_port=args.simulator_port
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="aijobs", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"aijobs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = sub.add_parser("dev", help="run Redis, the API, a worker, Flower and the simulator")
    dev.add_argument("--port", type=int, default=8000, help="API port")
    dev.add_argument("--flower-port", type=int, default=5555)
    dev.add_argument(
        "--simulator-port", type=int, default=8300, help="the simulator's (a free one if taken)"
    )
    dev.set_defaults(func=cmd_dev)

    api = sub.add_parser("api", help="run the HTTP API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--access-log", action="store_true")
    api.add_argument(
        "--workers", type=int, default=1,
        help="API processes sharing the port (each serves every route; default 1)",
    )  # fmt: skip
    api.set_defaults(func=cmd_api)

    worker = sub.add_parser("worker", help="run a Celery worker")
    worker.add_argument("--queues", default=_ALL_QUEUES)
    worker.add_argument("--concurrency", type=int, default=None)
    worker.add_argument("--pool", default=None, help="Celery pool (default: threads)")
    worker.add_argument("--hostname", default=None)
    worker.add_argument("--metrics-port", type=int, default=None, help="serve /metrics here")
    worker.set_defaults(func=cmd_worker)

    alive = sub.add_parser("worker-alive", help="health check: did the worker beat lately?")
    alive.add_argument("--file", default=None, help="default: AIJOBS_WORKER_HEARTBEAT_FILE")
    alive.add_argument("--max-age", type=float, default=30.0)
    alive.set_defaults(func=cmd_worker_alive)

    flower = sub.add_parser("flower", help="run Flower, with authentication on")
    flower.add_argument("--port", type=int, default=5555)
    flower.add_argument("--address", default="0.0.0.0")
    flower.add_argument("--local-only", action="store_true")
    flower.add_argument(
        "--db",
        default=None,
        metavar="PATH",
        help="keep Flower's task history in this file across restarts (Flower's own "
        "FLOWER_PERSISTENT=True and FLOWER_DB=PATH do the same)",
    )
    flower.set_defaults(func=cmd_flower)

    sim = sub.add_parser("simulator", help="run the OpenAI-compatible simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8300)
    sim.set_defaults(func=cmd_simulator)

    keys = sub.add_parser("keys", help="create, list or revoke API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key (printed once)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", default="")
    listing = keys_sub.add_parser("list", help="list keys (never their secret)")
    listing.add_argument("--tenant", default=None)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    keys.set_defaults(func=cmd_keys)

    purge = sub.add_parser("purge", help="delete old jobs' inputs, outputs and streams")
    purge.add_argument(
        "--older-than-s", type=float, default=None, help="default: AIJOBS_DATA_RETENTION_S"
    )
    purge.set_defaults(func=cmd_purge)

    replay = sub.add_parser("replay", help="run a job again as a new job (operators)")
    replay.add_argument("job_id")
    replay.set_defaults(func=cmd_replay)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(func=cmd_migrate)
    add_tenants(sub)
    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aijobs`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not _is_configuration_error(exc):
            raise
        _say_error(f"aijobs: {exc}")
        return 2


def _say_error(message: str) -> None:
    """One line on stderr: a record when the command logs JSON lines, so it parses too."""
    logs = sys.modules.get("aijobs.logs")
    if logs is not None and logs.logs_json():
        logging.getLogger("aijobs.cli").error("%s", message)
    else:
        print(message, file=sys.stderr)


def _is_configuration_error(exc: Exception) -> bool:
    """Settings that do not validate, or a database behind its migrations: usage errors.

    Their classes are looked up only among the modules already imported: a command that
    never loaded pydantic or the store cannot have raised their errors.
    """
    if isinstance(exc, SettingsError):
        return True
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(exc, pydantic.ValidationError):
        return True
    migrate = sys.modules.get("aijobs.store.migrate")
    return migrate is not None and isinstance(exc, migrate.SchemaOutOfDate)


if __name__ == "__main__":
    sys.exit(main())
