"""The reader side of the event protocol: follow a job from any cursor, exactly.

Subscribe first, then read the backlog after the cursor with XRANGE, then take live
messages whose id is above the last one sent. Event ids are consecutive within an
attempt, so a hole is seen at once: a missed live message is re-read from the Stream.

A hole the Stream cannot fill (Redis lost data, the Stream was trimmed or expired, a new
attempt started above its predecessor's reserved ids) puts the reader in *resync*: it
sends nothing until the next ``reset`` (which starts a new text, and after a loss
carries the text so far) or the job's closing events. A ``result`` reached that way is
preceded by a ``reset`` carrying the result's text, so the text a client holds always
ends equal to the result. When the Stream is gone the closing events come from SQL,
with the ids they had.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from aijobs import redis_keys
from aijobs.events.live import LiveHub, Subscription
from aijobs.events.protocol import CLOSING_EVENTS, Event, EventType, dumps

_PAGE = 500
#: Events handed to a reader in one write, at most.
_BATCH = 256
#: A page of XRANGE: redis-py types an entry's id and fields as optional (XCLAIM's deleted
#: entries have none), which XRANGE's never are.
StreamPage = list[tuple[str | bytes, dict[Any, Any]]]


@dataclass(frozen=True, slots=True)
class StoredOutcome:
    """A finished job's outcome as the job store holds it."""

    status: str
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    last_event_id: int | None
    attempt: int = 0

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
            Event(first + i, event, data, self.attempt)
            for i, (event, data) in enumerate(bodies)
            if first + i > after
        ]


#: Returns the stored outcome once the job is terminal, else None.
LoadOutcome = Callable[[], Awaitable[StoredOutcome | None]]


def result_text(result: dict[str, Any]) -> str | None:
    """The text a client should hold for ``result`` (None: the kind has no text)."""
    if isinstance(result.get("text"), str):
        return str(result["text"])
    if isinstance(result.get("partial"), str):
        return str(result["partial"])
    if "data" in result and result["data"] is not None:
        return dumps(result["data"])
    return None


async def read_after(redis: Redis, job_id: str, after: int, *, limit: int = 0) -> list[Event]:
    """The events in the Stream after event id ``after``, in order (at most ``limit``)."""
    key = redis_keys.events_key(job_id)
    events: list[Event] = []
    low = "-" if after <= 0 else f"({redis_keys.stream_entry_id(after)}"
    page_size = min(_PAGE, limit) if limit else _PAGE
    while True:
        page = cast(StreamPage, await redis.xrange(key, min=low, max="+", count=page_size))
        for entry_id, fields in page:
            events.append(decode_entry(entry_id, fields))
        if len(page) < page_size or (limit and len(events) >= limit):
            return events
        last = page[-1][0]
        low = f"({last if isinstance(last, str) else last.decode()}"


def _field(fields: dict[Any, Any], name: str) -> str:
    value = fields.get(name, fields.get(name.encode()))
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_entry(entry_id: str | bytes, fields: dict[Any, Any]) -> Event:
    attempt = _field(fields, "a")
    return Event(
        redis_keys.event_id_of(entry_id),
        _field(fields, "e"),
        _field(fields, "d"),
        int(attempt) if attempt.isdigit() else 0,
    )


def replay(events: list[Event], after: int) -> Iterator[list[Event]]:
    """What a reader resuming after ``after`` gets of a finished job's whole log
    (``events``, in order, as archived), in batches."""
    out = _Cursor(after).take(events)
    for start in range(0, len(out), _BATCH):
        yield out[start : start + _BATCH]


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

    The caller turns ``None`` into a keep-alive. The job is re-checked in the store on
    every quiet spell, so a reader never waits forever on a lost message.
    """
    async with hub.subscribe(job_id) as sub:
        reader = _Reader(redis, job_id, after)
        while True:  # the backlog, a page at a time: a long job never sits in memory whole
            page = await reader.backlog(limit=_PAGE)
            for start in range(0, len(page), _BATCH):
                yield page[start : start + _BATCH]
            if reader.finished or not reader.more:
                break
        if reader.finished:
            return
        outcome = await load_outcome()
        if outcome is not None:
            if not await redis.exists(redis_keys.events_key(job_id)):
                # Retention ran out, or Redis lost the job: the store has the outcome.
                closing = reader.closing(outcome)
                if closing:
                    yield closing
                return
            # Finished, but the Stream has no `done` yet (still being written, or its
            # writer died): give the writer a moment, then serve the store's copy.
            idle_s = settle_s
        async for event in reader.live(sub, idle_s, load_outcome):
            yield event


class _Cursor:
    """Where one reader is in one job's events, and what it should get next."""

    def __init__(self, after: int) -> None:
        self.cursor = after
        #: The last id the client got (the cursor also moves over what resync skips).
        self.sent = after
        self.finished = False
        self.more = False
        #: Set after a hole: nothing is sent until a reset or the closing events.
        self.resync = False

    def _accept(self, event: Event, out: list[Event]) -> None:
        """Advance over ``event``, appending to ``out`` what the client should get."""
        if event.id <= self.cursor:
            return
        if event.id != self.cursor + 1:
            self.resync = True
        self.cursor = event.id
        if event.event == EventType.DONE:
            self.finished = True
        if not self.resync:
            self._send(event, out)
            return
        if event.event == EventType.RESET:
            self.resync = False
            self._send(event, out)
        elif event.event in CLOSING_EVENTS:
            if event.event == EventType.RESULT and event.id - 1 > self.sent:
                for reset in self._text_reset(event):
                    self._send(reset, out)
            self.resync = False
            self._send(event, out)

    def _send(self, event: Event, out: list[Event]) -> None:
        self.sent = event.id
        out.append(event)

    def _text_reset(self, result: Event) -> list[Event]:
        # The reader missed text it can no longer get: hand it the result's text at the
        # id just before the result (one it never saw: it lies in the hole).
        try:
            text = result_text(json.loads(result.data))
        except (ValueError, AttributeError):
            text = None
        if text is None:
            return []
        data = dumps({"attempt": result.attempt, "text": text})
        return [Event(result.id - 1, EventType.RESET, data, result.attempt)]

    def take(self, events: list[Event]) -> list[Event]:
        """The events of ``events`` to send, in order, up to ``done``."""
        out: list[Event] = []
        for event in events:
            self._accept(event, out)
            if self.finished:
                break
        return out

    def closing(self, outcome: StoredOutcome) -> list[Event]:
        """The store's closing events after the cursor (and a text reset if one is due)."""
        return self.take(outcome.events(self.cursor))


class _Reader(_Cursor):
    """One reader's cursor over one job's Redis stream."""

    def __init__(self, redis: Redis, job_id: str, after: int) -> None:
        super().__init__(after)
        self.redis = redis
        self.job_id = job_id

    async def backlog(self, limit: int = 0) -> list[Event]:
        """The Stream's events after the cursor that the client should get."""
        page = await read_after(self.redis, self.job_id, self.cursor, limit=limit)
        self.more = bool(limit) and len(page) >= limit
        if page:
            last = page[-1].id
            out = self.take(page)
            if not self.finished:
                self.cursor = max(self.cursor, last)
            return out
        return []

    async def live(
        self, sub: Subscription, idle_s: float, load_outcome: LoadOutcome
    ) -> AsyncIterator[list[Event] | None]:
        """Live events until ``done``; ``None`` on each quiet spell."""
        while not self.finished:
            event = await sub.get(idle_s)
            ahead = sub.take_overflow()
            if event is not None and not ahead:
                ready = [event, *sub.drain(_BATCH - 1)]
                if ready[0].id <= self.cursor + 1 and all(
                    b.id == a.id + 1 for a, b in itertools.pairwise(ready)
                ):
                    batch = self.take(ready)
                    if batch:
                        yield batch
                    continue
            # Quiet, dropped messages, or an id ahead of ours: the Stream has everything
            # that was published, so re-read it from the cursor.
            while True:
                caught_up = await self.backlog(limit=_PAGE)
                for start in range(0, len(caught_up), _BATCH):
                    yield caught_up[start : start + _BATCH]
                if self.finished or not self.more:
                    break
            if self.finished:
                return
            if event is not None:
                continue
            outcome = await load_outcome()
            if outcome is not None:
                closing = self.closing(outcome)
                if closing:
                    yield closing
                self.finished = True
                return
            yield None
