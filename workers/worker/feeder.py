"""The feeder: hands Celery as many jobs as the fleet has free slots, fairly across tenants.

One thread per worker process. It registers the process's slots in Redis, then waits on
the queue's wake list — pushed by every submit and every freed slot — and each time takes
what the fleet can start now (``FairQueue.take``: atomic, so any number of feeders share
the work without handing out a slot twice) and sends each job's task by name. The broker
queue therefore stays about as deep as the free slots: a tenant's backlog waits in its own
list, where the next freed slot can go to someone else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence

from redis.exceptions import RedisError

from aijobs.fairqueue import FairQueue
from aijobs.schemas import JobKind

log = logging.getLogger(__name__)

#: Send the tasks of jobs of one kind: (kind, job ids), in one round trip if it can.
Send = Callable[[str, list[str]], None]
#: How long a registration of this process's slots lives without renewal.
_REGISTRATION_TTL_S = 10.0
_KINDS = [kind.value for kind in JobKind]


class Feeder:
    """Moves jobs from the fair queue to the broker as slots free up."""

    def __init__(
        self,
        queue: FairQueue,
        send: Send,
        *,
        kinds: Sequence[str],
        slots: int,
        tenant_cap: int,
        dispatch_timeout_s: float,
        weights: dict[str, float] | None = None,
    ) -> None:
        self._queue = queue
        self._send = send
        self._kinds = list(kinds)
        self._slots = slots
        self._tenant_cap = tenant_cap
        self._dispatch_timeout_s = dispatch_timeout_s
        self._weights = weights or {}
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._registered_at = 0.0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0

    def register(self) -> None:
        """(Re)offer this process's slots; also after Redis came back empty."""
        self._queue.register_worker(self.worker_id, self._kinds, self._slots, _REGISTRATION_TTL_S)
        self._queue.set_weights(self._weights)
        self._registered_at = time.monotonic()

    def feed_once(self) -> int:
        """Hand out what the fleet can start now; how many jobs were sent."""
        return self._feed()[0]

    def _feed(self) -> tuple[int, float | None]:
        """``feed_once``, and the seconds until the next delayed job is due."""
        if time.monotonic() - self._registered_at > _REGISTRATION_TTL_S / 3:
            self.register()
        sent = 0
        # Every kind (a feeder serves the fleet's slots, not only its own process's) and
        # the delayed set's head, in one round trip.
        everything, due_s = self._queue.take_all(
            _KINDS, 256, tenant_cap=self._tenant_cap, dispatch_ttl_s=self._dispatch_timeout_s
        )
        for kind, taken in everything.items():
            if not taken:
                continue
            try:
                self._send(kind, [job.id for job in taken])
                sent += len(taken)
            except Exception as exc:
                # Not sent (or not all: the batch is one pipeline): back in their lists,
                # with their priorities. A job sent all the same runs once: its lease
                # fences the second delivery.
                log.warning("could not send %d job(s) to the broker (%s)", len(taken), exc)
                for job in taken:
                    self._queue.push(job)
                self._queue.release_tenant_slots([(job.id, job.tenant) for job in taken])
        self.sent += sent
        return sent, due_s

    def start(self) -> None:
        """Feed in a daemon thread until ``stop``."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="aijobs-feeder", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop feeding and withdraw this process's slots."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with contextlib.suppress(RedisError):
            self._queue.unregister_worker(self.worker_id)

    def _run(self) -> None:
        backoff_s = 0.1
        while not self._stopping.is_set():
            try:
                _, due = self._feed()
                wait_s = 1.0 if due is None else min(1.0, max(0.01, due))
                self._queue.wait_for_work(wait_s)
                backoff_s = 0.1
            except RedisError as exc:
                log.warning("feeder: Redis unavailable (%s); retrying in %.1fs", exc, backoff_s)
                self._stopping.wait(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)
            except Exception:  # a bug must not stop the fleet from starting jobs
                log.exception("feeder crashed in one round")
                self._stopping.wait(1.0)
