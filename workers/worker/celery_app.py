"""The Celery app, configured for long, I/O-bound AI jobs."""

from __future__ import annotations

import logging
import threading

from celery import Celery
from celery.signals import worker_init, worker_shutdown, worker_shutting_down

from aijobs.connections import broker_settings
from aijobs.errors import ConfigurationError
from aijobs.metrics import serve_metrics
from aijobs.schemas import JobKind
from aijobs.settings import Settings
from aijobs.store.migrate import SchemaOutOfDate
from aijobs.worker.broker import transport_for
from aijobs.worker.context import WorkerContext
from aijobs.worker.typed_celery import receiver

log = logging.getLogger(__name__)

#: Task name per job kind; the API enqueues by name and never imports task code.
TASK_NAMES: dict[str, str] = {kind.value: f"aijobs.{kind.value}" for kind in JobKind}
#: One queue per kind, so an embedding flood cannot starve chats.
QUEUES: tuple[str, ...] = tuple(kind.value for kind in JobKind)


def send_job(app: Celery, job_id: str, kind: str) -> None:
    """Send a job's task by name: its arguments are the job id and kind, nothing else.

    Straight to the kind's queue (the anonymous exchange): no routing table in Redis is
    consulted, so a send still lands after Redis lost its data (kombu's bindings with it).
    """
    app.send_task(
        TASK_NAMES[kind],
        args=[job_id],
        kwargs={"kind": kind},
        exchange="",
        routing_key=kind,
    )


def send_jobs(app: Celery, kind: str, job_ids: list[str]) -> None:
    """``send_job`` for many jobs of one kind, in one pipeline (kombu's batch publish):
    a burst of job starts waits for one round trip, not one per job."""
    if len(job_ids) == 1:
        send_job(app, job_ids[0], kind)
        return
    with app.producer_or_acquire() as producer, producer.batch():
        for job_id in job_ids:
            app.send_task(TASK_NAMES[kind], args=[job_id], kwargs={"kind": kind},
                          exchange="", routing_key=kind, producer=producer)  # fmt: skip


def create_celery_app(settings: Settings) -> Celery:
    """A Celery app on the configured Redis broker (Sentinel too), hardened like every
    Redis connection of ours (timeouts, keepalive, health checks)."""
    broker, hardening = broker_settings(settings.redis_target())
    app = Celery("aijobs", broker=broker, include=["aijobs.worker.tasks"])
    # Each message runs at most task_time_limit_s: the visibility timeout must outlast
    # it, or the broker hands the message to a second worker while the first holds it.
    transport = {"visibility_timeout": settings.visibility_timeout_s, **hardening}
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit_s,
        task_soft_time_limit=settings.task_time_limit_s - 5,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        broker_connection_retry_on_startup=True,
        broker_pool_limit=50,
        # A send must not hang on a dead broker: a few quick tries, then the feeder puts
        # the job back in its list.
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0.1,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        # Flower's view: received, started, and how each delivery ended. Not "sent": the
        # feeder sends every job a worker starts, and that event (a PUBLISH per job) would
        # only say what "received" says a moment later.
        worker_send_task_events=True,
        task_send_sent_event=False,
        task_default_queue=JobKind.GENERATE.value,
        task_routes={name: {"queue": kind} for kind, name in TASK_NAMES.items()},
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        # A job keeps running through a broker blip: its attempt is fenced by its lease,
        # not by the message; the message, unacked, comes back after the visibility
        # timeout and finds the job finished (skipped). Cancelling is not even possible
        # on the threads pool (Celery logs a traceback per running task trying).
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # SIGTERM: running jobs get shutdown_grace_s to finish, then hand their jobs
        # back to the queue (see aijobs.worker.attempt); the soft shutdown timeout is only a
        # backstop for an attempt that is stuck waiting on its provider.
        worker_soft_shutdown_timeout=settings.shutdown_grace_s + 15.0,
    )
    transport_class = transport_for(broker)
    if transport_class:  # kombu's, with its reconnect fault fixed (aijobs.worker.broker)
        app.conf.broker_transport = transport_class
    app.aijobs_settings = settings
    return app


_runtime_lock = threading.Lock()
_RUNTIMES: set[WorkerContext] = set()


def runtime_for(app: Celery) -> WorkerContext:
    """This process's worker runtime, built on first use from the app's settings."""
    runtime: WorkerContext | None = getattr(app, "aijobs_runtime", None)
    if runtime is not None:
        return runtime
    with _runtime_lock:
        runtime = getattr(app, "aijobs_runtime", None)
        if runtime is None:
            settings: Settings = app.aijobs_settings
            concurrency = app.conf.worker_concurrency or settings.worker_concurrency
            kinds = getattr(app, "aijobs_queues", None) or QUEUES

            def send(kind: str, job_ids: list[str]) -> None:
                send_jobs(app, kind, job_ids)

            runtime = WorkerContext.build(settings, send=send, concurrency=concurrency, kinds=kinds)
            app.aijobs_runtime = runtime
            _RUNTIMES.add(runtime)
    return runtime


def close_runtime(app: Celery) -> None:
    """Flush and close this process's runtime, if one was built."""
    runtime: WorkerContext | None = getattr(app, "aijobs_runtime", None)
    if runtime is not None:
        app.aijobs_runtime = None
        _RUNTIMES.discard(runtime)
        runtime.close()


@receiver(worker_init)
def _build_at_start(sender: object = None, **_: object) -> None:
    # Build the runtime when the worker starts, not on its first task: its
    # reconciler must run even on an idle worker (that is how a dead worker's jobs
    # come back). A prefork pool builds one per child, lazily, after the fork.
    app = getattr(sender, "app", None)
    pool = str(getattr(sender, "pool_cls", ""))
    if not isinstance(app, Celery) or not hasattr(app, "aijobs_settings"):
        return
    settings: Settings = app.aijobs_settings
    if settings.worker_metrics_port:
        serve_metrics(settings.worker_metrics_port)
    if "prefork" not in pool:
        try:
            runtime_for(app)
        except (ConfigurationError, SchemaOutOfDate) as exc:
            # Celery logs and ignores a failing signal receiver; a worker that cannot
            # run jobs must not sit there consuming messages.
            log.critical("aijobs worker cannot start: %s", exc)
            raise SystemExit(2) from exc


@receiver(worker_shutting_down)
def _hand_off_on_shutdown(sender: object = None, how: str = "", **_: object) -> None:
    # Sent with the worker's hostname only; every app built in this process that
    # has a runtime is this worker's.
    for runtime in list(_RUNTIMES):
        runtime.hand_off_after(runtime.settings.shutdown_grace_s)


@receiver(worker_shutdown)
def _close_on_shutdown(sender: object = None, **_: object) -> None:
    app = getattr(sender, "app", None)
    if isinstance(app, Celery):
        close_runtime(app)
