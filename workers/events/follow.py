"""The reader side of the event protocol: follow a job from any cursor, exactly.

Subscribe first, then read the backlog after the cursor with XRANGE, then take
live messages whose id is above the last one sent. Event ids are consecutive
integers, so a hole is seen at once: a missed live message is re-read from the
Stream, and a hole the Stream cannot fill (trimmed, expired) makes the reader
serve the job's stored outcome from SQL instead of a silent gap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from aijobs import redis_keys as keys
from aijobs.events.live import LiveHub, Subscription
from aijobs.events.protocol import Event, EventType, dumps

_PAGE = 500
#: Events handed to a reader in one write, at most.
_BATCH = 256
_TERMINAL_EVENTS = frozenset({EventType.RESULT, EventType.ERROR, EventType.DONE})


@dataclass(frozen=True, slots=True)
class StoredOutcome:
    """A finished job's outcome as the job store holds it."""

    status: str
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    last_event_id: int | None

    def events(self, after: int) -> list[Event]:
        """The closing events (result/error, done), numbered to end at ``last_event_id``."""
        bodies: list[tuple[str, str]] = []
        if self.result is not None:
            bodies.append((EventType.RESULT, dumps(self.result)))
        if self.error is not None:
            bodies.append((EventType.ERROR, dumps(self.error)))
        bodies.append((EventType.DONE, dumps({"status": self.status})))
        last = self.last_event_id or after + len(bodies)
        first = last - len(bodies) + 1
        return [
            Event(first + i, event, data)
            for i, (event, data) in enumerate(bodies)
            if first + i > after
        ]


#: Returns the stored outcome once the job is terminal, else None.
LoadOutcome = Callable[[], Awaitable[StoredOutcome | None]]


async def read_after(redis: Redis, job_id: str, after: int) -> list[Event]:
    """Every event in the Stream after event id ``after``, in order."""
    key = keys.events_key(job_id)
    events: list[Event] = []
    low = "-" if after <= 0 else f"({keys.stream_entry_id(after)}"
    while True:
        page = await redis.xrange(key, min=low, max="+", count=_PAGE)
        for entry_id, fields in page:
            events.append(_decode(entry_id, fields))
        if len(page) < _PAGE:
            return events
        low = f"({page[-1][0] if isinstance(page[-1][0], str) else page[-1][0].decode()}"


def _decode(entry_id: str | bytes, fields: dict[Any, Any]) -> Event:
    event = fields.get("e", fields.get(b"e"))
    data = fields.get("d", fields.get(b"d"))
    if isinstance(event, bytes):
        event = event.decode()
    if isinstance(data, bytes):
        data = data.decode()
    return Event(keys.event_id_of(entry_id), str(event), str(data))


async def follow_job(
    redis: Redis,
    hub: LiveHub,
    job_id: str,
    *,
    after: int,
    load_outcome: LoadOutcome,
    idle_s: float,
    settle_s: float = 1.0,
) -> AsyncIterator[list[Event] | None]:
    """Yield the job's events after ``after`` until ``done``, in batches (whatever is ready
    at once, so a reader gets one write per batch); ``None`` after ``idle_s`` of quiet.

    The caller turns ``None`` into a keep-alive. The job is re-checked in the
    store on every quiet spell, so a reader never waits forever on a lost message.
    """
    async with hub.subscribe(job_id) as sub:
        reader = _Reader(redis, job_id, after)
        backlog = await reader.backlog()
        for start in range(0, len(backlog), _BATCH):
            yield backlog[start : start + _BATCH]
        if reader.finished:
            return
        outcome = None if reader.in_hole else await load_outcome()
        if outcome is not None:
            if not await redis.exists(keys.events_key(job_id)):
                # Retention ran out: the store has the outcome.
                closing = outcome.events(reader.cursor)
                if closing:
                    yield closing
                return
            # Finished, but the Stream has no `done` yet (still being written, or
            # its writer died): give the writer a moment, then serve the store's copy.
            idle_s = settle_s
        async for event in reader.live(sub, idle_s, load_outcome):
            yield event


class _Reader:
    """One reader's cursor over one job."""

    def __init__(self, redis: Redis, job_id: str, after: int) -> None:
        self.redis = redis
        self.job_id = job_id
        self.cursor = after
        self.finished = False
        # Set when the events right after the cursor are gone from the Stream:
        # from then on only the closing events are sent, never a silent gap.
        self.in_hole = False

    def _accept(self, event: Event) -> bool:
        """Advance over ``event``; True if it should be sent to the client."""
        if event.id <= self.cursor:
            return False
        if event.id != self.cursor + 1:
            self.in_hole = True
        self.cursor = event.id
        if event.event == EventType.DONE:
            self.finished = True
        return not self.in_hole or event.event in _TERMINAL_EVENTS

    async def backlog(self) -> list[Event]:
        """The Stream's events after the cursor that the client should get."""
        out: list[Event] = []
        for event in await read_after(self.redis, self.job_id, self.cursor):
            if self._accept(event):
                out.append(event)
            if self.finished:
                break
        return out

    def _take(self, ready: list[Event]) -> tuple[list[Event], bool]:
        """The events of ``ready`` to send, and whether one was ahead of the cursor."""
        out: list[Event] = []
        for event in ready:
            if event.id > self.cursor + 1:
                return out, True
            if self._accept(event):
                out.append(event)
            if self.finished:
                break
        return out, False

    async def live(
        self, sub: Subscription, idle_s: float, load_outcome: LoadOutcome
    ) -> AsyncIterator[list[Event] | None]:
        """Live events until ``done``; ``None`` on each quiet spell."""
        while not self.finished:
            event = await sub.get(idle_s)
            ahead = sub.take_overflow()
            if event is not None and not ahead:
                batch, ahead = self._take([event, *sub.drain(_BATCH - 1)])
                if batch:
                    yield batch
                if not ahead:
                    continue
            # Quiet, dropped messages, or an id ahead of ours: the Stream has
            # everything that was published, so re-read it from the cursor.
            caught_up = await self.backlog()
            for start in range(0, len(caught_up), _BATCH):
                yield caught_up[start : start + _BATCH]
            if self.finished:
                return
            if event is not None:
                continue
            outcome = await load_outcome()
            if outcome is not None:
                closing = outcome.events(self.cursor)
                if closing:
                    yield closing
                self.finished = True
                return
            yield None
