"""Finished jobs' event logs, from Redis to SQL: the compact form and the archiver.

Redis keeps a job's stream while it runs and for ``AIJOBS_ARCHIVED_STREAM_TTL_S`` after
it has been copied to SQL (a few minutes: the readers catching up right after the end are
served from Redis); from then on the ``event_logs`` row serves every reader, exactly, with
the ids the events had, until retention scrubs the job.

The form: zlib of one line per event, ``id TAB attempt TAB type TAB data``. ``data`` is
JSON, which never holds a raw line feed, so lines split cleanly; reading it back costs
one decompression and one split per event (no JSON parsing: a reader sends the data as
it was written).
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import cast

from redis import Redis
from redis.exceptions import RedisError

from aijobs import redis_keys
from aijobs.events.follow import StoredOutcome, StreamPage, decode_entry
from aijobs.events.protocol import Event, EventType
from aijobs.store import event_logs
from aijobs.store.db import Database
from aijobs.store.event_logs import Archived, Finished

log = logging.getLogger(__name__)

#: A job is archived this long after it finished at the earliest (its closing events are
#: written just after its row; a writer that lost Redis for a moment may still be at it).
SETTLE_S = 2.0
#: A finished job whose stream still has no ``done`` after this is archived from what
#: there is plus the row's outcome (what a reader would be served anyway).
GIVE_UP_S = 300.0
#: How long one archiving round may take at most (the rest waits for the next round).
ARCHIVE_BUDGET_S = 2.0
_PAGE = 2000
_LEVEL = 6


def encode(events: Iterable[Event]) -> bytes:
    """The compact form of ``events``."""
    lines = "".join(f"{e.id}\t{e.attempt}\t{e.event}\t{e.data}\n" for e in events)
    return zlib.compress(lines.encode(), _LEVEL)


def decode(blob: bytes, after: int = 0) -> list[Event]:
    """The events of ``blob`` whose id is above ``after``, in order."""
    out: list[Event] = []
    for line in zlib.decompress(blob).decode().split("\n"):
        if not line:
            continue
        id_, attempt, event, data = line.split("\t", 3)
        event_id = int(id_)
        if event_id > after:
            out.append(Event(event_id, event, data, int(attempt)))
    return out


def stream_events(redis: Redis, job_id: str) -> list[Event]:
    """Every event of the job's Redis stream, in order."""
    key = redis_keys.events_key(job_id)
    events: list[Event] = []
    low = "-"
    while True:
        page = cast(StreamPage, redis.xrange(key, min=low, max="+", count=_PAGE))
        events.extend(decode_entry(entry_id, fields) for entry_id, fields in page)
        if len(page) < _PAGE:
            return events
        last = page[-1][0]
        low = f"({last if isinstance(last, str) else last.decode()}"


def log_of(job: Finished, events: list[Event], *, give_up: bool) -> Archived | None:
    """What to store for ``job`` given its stream (None: not yet, its end is not there)."""
    complete = bool(events) and events[-1].event == EventType.DONE
    if not complete and not give_up:
        return None
    if not complete:
        # The stream lost its end (or all of it): keep what there is and the row's closing
        # events with their ids, exactly what a reader is served from the two.
        outcome = StoredOutcome(job.status, job.result, job.error, job.last_event_id,
                                job.attempts)  # fmt: skip
        events = events + outcome.events(events[-1].id if events else 0)
    if not events:
        return Archived(job.id, job.last_event_id or 0, 0, None)
    return Archived(job.id, events[-1].id, len(events), encode(events))


def archive_jobs(db: Database, redis: Redis, jobs: Sequence[Finished], *,
                 stream_ttl_s: int) -> int:  # fmt: skip
    """Copy these finished jobs' streams to SQL, then let the streams expire soon.

    Returns how many jobs were archived (a recent one whose stream has no end yet waits).
    """
    logs: list[Archived] = []
    give_up_before = event_logs.ago(GIVE_UP_S)
    for job in jobs:
        give_up = job.finished_at < give_up_before
        archived = log_of(job, stream_events(redis, job.id), give_up=give_up)
        if archived is not None:
            logs.append(archived)
    event_logs.save(db, logs)
    # Only once SQL has them: a lost commit leaves the stream as it was, to try again.
    pipe = redis.pipeline(transaction=False)
    for archived in logs:
        pipe.expire(redis_keys.events_key(archived.job_id), stream_ttl_s)
        pipe.expire(redis_keys.meta_key(archived.job_id), stream_ttl_s)
    try:
        pipe.execute()
    except RedisError as exc:  # the streams keep their longer expiry; nothing is lost
        log.warning("archived %d event logs; their streams keep their expiry (%s)",
                    len(logs), exc)  # fmt: skip
    return len(logs)


def archive_finished(
    db: Database, redis: Redis, *, stream_ttl_s: int, batch: int = 200,
    budget_s: float = ARCHIVE_BUDGET_S,
) -> int:  # fmt: skip
    """Archive the jobs that finished and are not archived yet, oldest first, for up to
    ``budget_s`` (the rest wait for the next round). Returns how many were archived.

    The round walks on past jobs whose stream has no end yet (they are looked at again
    next round), so a few hundred of them — Redis came back empty — hold up no one.
    """
    started = time.monotonic()
    total = 0
    cursor: datetime | None = None
    cutoff = event_logs.ago(SETTLE_S)
    while time.monotonic() - started < budget_s:
        jobs = event_logs.unarchived(db, finished_before=cutoff, after=cursor, limit=batch)
        if not jobs:
            break
        total += archive_jobs(db, redis, jobs, stream_ttl_s=stream_ttl_s)
        cursor = jobs[-1].finished_at
        if len(jobs) < batch:
            break
    if total:
        log.info("archived the event logs of %d finished jobs", total)
    return total
