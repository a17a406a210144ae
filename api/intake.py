"""Submits written in groups: one thread, one transaction and one Redis pipeline for every
submit that arrives while the previous group is being written.

A submit is durable when it is answered 202, so each one waits for a commit; a database
commits (fsyncs) at a fixed cost, so N submits sharing a commit each pay 1/N of it. The
event loop never blocks on SQL: it hands the row over and awaits a future; this thread
resolves the futures of a whole group with one wake-up of the loop. One request alone is
written at once (no waiting for company): the group is whatever queued up meanwhile.

After the commit, the group's jobs go onto the fair queue in one pipeline. If Redis does
not answer, the jobs stay recorded and queued in SQL; the workers' reconciler puts them
on the queue once it answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from redis.exceptions import RedisError

from aijobs.fairqueue import FairQueue, QueuedJob
from aijobs.store.db import Database
from aijobs.store.models import Job
from aijobs.store.submits import Inserted, NewJob, insert_jobs

log = logging.getLogger(__name__)

#: At most this many submits per transaction (a batch endpoint's items included): a
#: bigger group would hold the write lock longer than it saves.
MAX_GROUP = 500


@dataclass(slots=True)
class _Pending:
    jobs: Sequence[NewJob]
    future: asyncio.Future[list[Inserted]]


class Intake:
    """Writes new jobs for the event loop; ``submit`` is called on the loop's thread."""

    def __init__(self, db: Database, fair_queue: FairQueue, *, idempotency_ttl_s: float) -> None:
        self._db = db
        self._queue = fair_queue
        self._ttl_s = idempotency_ttl_s
        self._inbox: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="aijobs-intake", daemon=True)
        self._thread.start()

    async def submit(self, jobs: Sequence[NewJob]) -> list[Inserted]:
        """Insert ``jobs`` (in one transaction, with whatever else is waiting) and queue the
        new ones; their outcomes in order. Raises what the database raised."""
        future: asyncio.Future[list[Inserted]] = asyncio.get_running_loop().create_future()
        self._inbox.put(_Pending(jobs, future))
        return await future

    def close(self) -> None:
        """Write what is waiting, then stop the thread."""
        self._inbox.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            first = self._inbox.get()
            if first is None:
                return
            group, stopping = [first], False
            size = len(first.jobs)
            while size < MAX_GROUP:
                try:
                    more = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                group.append(more)
                size += len(more.jobs)
            self._write(group)
            if stopping:
                return

    def _write(self, group: list[_Pending]) -> None:
        jobs = [job for pending in group for job in pending.jobs]
        try:
            outcomes: list[Inserted] | BaseException = insert_jobs(
                self._db, jobs, idempotency_ttl_s=self._ttl_s
            )
        except Exception as exc:  # every submit of the group is answered with it (503)
            outcomes = exc
        if not isinstance(outcomes, BaseException):
            self._enqueue([o.job for o in outcomes if o.created])
        _answer(group, outcomes)

    def _enqueue(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        queued = [(QueuedJob(j.id, j.kind, j.tenant, j.priority), _epoch(j)) for j in jobs]
        try:
            self._queue.push_many(queued)
        except (RedisError, OSError) as exc:
            log.warning(
                "Redis unavailable; %d new job(s) will be queued by the reconciler (%s)",
                len(jobs), exc,
            )  # fmt: skip


def _epoch(job: Job) -> float | None:
    return None if job.run_at is None else job.run_at.timestamp()


def _answer(group: list[_Pending], outcomes: list[Inserted] | BaseException) -> None:
    """Resolve the group's futures on their loop, in one call (one wake-up)."""
    loop = group[0].future.get_loop()

    def resolve() -> None:
        start = 0
        for pending in group:
            if pending.future.done():  # the request was cancelled (client went away)
                start += len(pending.jobs)
                continue
            if isinstance(outcomes, BaseException):
                pending.future.set_exception(outcomes)
            else:
                pending.future.set_result(outcomes[start : start + len(pending.jobs)])
            start += len(pending.jobs)

    with contextlib.suppress(RuntimeError):  # the loop closed while the group was written
        loop.call_soon_threadsafe(resolve)
