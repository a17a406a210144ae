"""The worker side of the event protocol: coalesced, pipelined, fenced, exactly-once writes.

Publishing each token as its own Redis round trip costs more CPU than the rest of a job.
Job threads only append to an in-memory buffer; one flusher thread per process writes
every job's pending events each ``flush_interval_s`` in a single pipeline, one script
call per batch (see ``scripts.py``), merging consecutive deltas into one event.

What keeps the writes exact when Redis misbehaves:

- Each attempt's batches are numbered. A batch stays queued until Redis confirmed it; a
  pipeline that failed half-way is sent again and the script skips what it applied, so
  no reader gets the same text twice.
- A batch that Redis refuses (a script error) counts against its own job only; after a
  few in a row the attempt is marked broken and ends (retryable). Other jobs go on.
- Ids are reserved in SQL before they are used (blocks of ``id_block``), so a new
  attempt after a total Redis loss starts above anything a reader may have seen.
- When Redis lost the job's recent writes (or all of it), the script says so; the batch
  goes again behind a ``reset`` that carries the attempt's text so far, so a reader whose
  cursor fell into the hole recovers the whole text at that reset.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from redis.exceptions import NoScriptError, RedisError, ResponseError

from aijobs.events.protocol import EventType, dumps
from aijobs.events.scripts import WRITE_EVENTS, WriteStatus, parse_reply, write_events_args

log = logging.getLogger(__name__)

_Key = tuple[str, int]
#: A script error this many times in a row for one attempt marks it broken.
_MAX_BATCH_ERRORS = 3
#: How long closing events that could not be written are retried in the background.
_CLOSING_RETRY_S = 120.0

#: Extends reservations: [(job id, attempt, reserve up to)] -> the keys whose row took it
#: (an attempt missing from the answer was superseded).
Reserve = Callable[[list[tuple[str, int, int]]], set[_Key]]


class Fenced(Exception):
    """Raised when a newer attempt of the job owns its events: this attempt must stop."""


@dataclass(slots=True)
class _Batch:
    seq: int
    events: list[tuple[str, str]]


@dataclass(slots=True)
class AttemptState:
    """What the writes so far learned about an attempt (read by its job thread)."""

    fenced: bool = False
    cancel_requested: bool = False
    #: The attempt's writes keep failing in Redis (not a connection problem): it must end.
    broken: str | None = None
    last_event_id: int = 0
    #: Ids up to this are reserved in SQL for this attempt.
    reserved: int = 0
    #: The first id this attempt may write above (its reservation's start).
    floor: int = 0


@dataclass(slots=True)
class _Log:
    """One attempt's buffered, in-flight and confirmed writes."""

    state: AttemptState
    next_batch: int = 1
    open: list[tuple[str, str]] = field(default_factory=list)
    delta: list[str] = field(default_factory=list)
    unacked: deque[_Batch] = field(default_factory=deque)
    #: Text since the attempt's last reset, written or not: what a restore re-sends.
    transcript: list[str] = field(default_factory=list)
    last_reset: dict[str, Any] = field(default_factory=dict)
    errors: int = 0
    closing_since: float | None = None

    def close_delta(self, attempt: int) -> None:
        if self.delta:
            text = "".join(self.delta)
            self.delta = []
            self.open.append((EventType.DELTA, dumps({"text": text, "attempt": attempt})))

    def seal(self, attempt: int) -> None:
        """Move what is buffered into a numbered batch."""
        self.close_delta(attempt)
        if self.open:
            self.unacked.append(_Batch(self.next_batch, self.open))
            self.next_batch += 1
            self.open = []

    def pending_count(self) -> int:
        return sum(len(batch.events) for batch in self.unacked)

    def note(self, event: str, data: dict[str, Any]) -> None:
        if event == EventType.RESET:
            self.transcript = []
            self.last_reset = {k: v for k, v in data.items() if k != "text"}

    def restore_batch(self, attempt: int) -> _Batch:
        """Everything unconfirmed, sent again behind a reset carrying the text so far.

        The text so far includes what the job thread buffered while the lost batch was on
        the wire (the transcript has it from the moment it was buffered): that goes into
        this batch too, and out of the buffer, or the next flush would send it twice.
        """
        self.close_delta(attempt)
        reset = {"attempt": attempt, **self.last_reset, "text": "".join(self.transcript)}
        events: list[tuple[str, str]] = [(EventType.RESET, dumps(reset))]
        after_reset: list[tuple[str, str]] = []
        buffered, self.open = self.open, []
        for batch in [*self.unacked, _Batch(0, buffered)]:
            for event, data in batch.events:
                if event == EventType.RESET:
                    after_reset = []
                elif event != EventType.DELTA:  # text is in the reset already
                    after_reset.append((event, data))
        events.extend(after_reset)
        self.unacked.clear()
        batch = _Batch(self.next_batch, events)
        self.next_batch += 1
        self.unacked.append(batch)
        return batch


class EventWriter:
    """Buffers and writes the events of every job attempt running in this process."""

    def __init__(
        self,
        redis: Redis,
        *,
        retention_s: int,
        maxlen: int,
        flush_interval_s: float = 0.025,
        reserve: Reserve | None = None,
        id_block: int = 1000,
    ) -> None:
        self._redis = redis
        self._script = redis.register_script(WRITE_EVENTS)
        self._retention_s = retention_s
        self._maxlen = maxlen
        self._interval_s = flush_interval_s
        self._reserve = reserve
        self._id_block = id_block
        self._logs: dict[_Key, _Log] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- job-thread API -------------------------------------------------------

    def begin(
        self,
        job_id: str,
        attempt: int,
        events: list[tuple[str, dict[str, Any]]],
        *,
        floor: int = 0,
        reserved: int = 0,
    ) -> int:
        """Raise the job's fence to ``attempt`` and write its opening events now.

        ``floor`` is where the attempt's ids start (its reservation in SQL begins above
        it) and ``reserved`` where the reservation ends (0: unlimited). Raises ``Fenced``
        if the job already has this or a newer attempt.
        """
        key = (job_id, attempt)
        state = AttemptState(floor=floor, reserved=reserved)
        entry = _Log(state)
        for event, data in events:
            entry.note(event, data)
        with self._lock:
            self._logs[key] = entry
        batch = _Batch(entry.next_batch, [(e, dumps(d)) for e, d in events])
        entry.next_batch += 1
        token = f"begin-{secrets.token_hex(8)}"  # a retried begin is the same write
        status = self._send_now(key, entry, "begin", batch, write_id=token)
        if status is WriteStatus.RESTORE:
            reset = dumps({"attempt": attempt})
            retry = _Batch(entry.next_batch, [(EventType.RESET, reset), *batch.events])
            entry.next_batch += 1
            status = self._send_now(key, entry, "begin", retry, write_id=token + "-r")
        if state.fenced:
            self.forget(job_id, attempt)
            raise Fenced(f"job {job_id} already has attempt {attempt} or newer")
        return state.last_event_id

    def delta(self, job_id: str, attempt: int, text: str) -> None:
        """Buffer generated text; it is written within one flush interval."""
        if not text:
            return
        with self._lock:
            entry = self._logs.get((job_id, attempt))
            if entry is None:
                return  # not begun here, or already forgotten: nothing may be written
            entry.delta.append(text)
            entry.transcript.append(text)

    def emit(self, job_id: str, attempt: int, event: str, data: dict[str, Any]) -> None:
        """Buffer an event, in order after the text before it."""
        with self._lock:
            entry = self._logs.get((job_id, attempt))
            if entry is None:
                return
            entry.close_delta(attempt)
            entry.open.append((event, dumps(data)))
            entry.note(event, data)

    def finish(self, job_id: str, attempt: int, events: list[tuple[str, dict[str, Any]]]) -> int:
        """Write everything pending for the attempt, then ``events``, before returning.

        Returns the id of the last event written (0 if the attempt was fenced). If Redis
        cannot be reached the events stay queued and the flusher keeps trying for a
        while; the error is raised so the caller knows they are not written yet.
        """
        for event, data in events:
            self.emit(job_id, attempt, event, data)
        with self._lock:
            entry = self._logs.get((job_id, attempt))
            if entry is None:
                return 0
            entry.closing_since = time.monotonic()
            state = entry.state
        self.flush()
        if state.fenced:
            self.forget(job_id, attempt)
            return 0
        with self._lock:
            pending = (job_id, attempt) in self._logs and bool(
                entry.unacked or entry.open or entry.delta
            )
        if pending:  # e.g. the reservation could not be extended this tick
            raise RedisError(f"job {job_id}: closing events not written yet")
        return state.last_event_id

    def pending_count(self, job_id: str, attempt: int) -> int:
        """Events of the attempt not yet confirmed by Redis (buffered text counts one)."""
        with self._lock:
            entry = self._logs.get((job_id, attempt))
            if entry is None:
                return 0
            return entry.pending_count() + len(entry.open) + (1 if entry.delta else 0)

    def state(self, job_id: str, attempt: int) -> AttemptState:
        """What the writes so far learned: fenced, cancel requested, broken."""
        entry = self._logs.get((job_id, attempt))
        return entry.state if entry is not None else AttemptState()

    def forget(self, job_id: str, attempt: int) -> AttemptState:
        """Drop the bookkeeping of a finished attempt."""
        with self._lock:
            entry = self._logs.pop((job_id, attempt), None)
        return entry.state if entry is not None else AttemptState()

    def running(self) -> list[_Key]:
        """The attempts this writer holds."""
        with self._lock:
            return list(self._logs)

    # -- flushing -------------------------------------------------------------

    def flush(self) -> None:
        """Write every pending batch of every attempt now, in one pipeline.

        Raises ``RedisError`` when Redis could not be reached (everything stays queued).
        """
        with self._flush_lock:
            with self._lock:
                for (_, attempt), entry in self._logs.items():
                    entry.seal(attempt)
                todo = [
                    (key, entry)
                    for key, entry in self._logs.items()
                    if entry.unacked and not entry.state.fenced
                ]
                self._drop_stale_closings()
            if not todo:
                return
            todo = self._within_reservations(todo)
            restores = self._write(todo)
            if restores:
                self._write(restores)

    def _within_reservations(self, todo: list[tuple[_Key, _Log]]) -> list[tuple[_Key, _Log]]:
        """Extend, in SQL and before use, the reservations the pending events would pass."""
        if self._reserve is None:
            return todo
        short: list[tuple[str, int, int]] = []
        for (job_id, attempt), pending in todo:
            state = pending.state
            need = max(state.last_event_id, state.floor) + pending.pending_count() + 1
            if state.reserved and need > state.reserved:
                short.append((job_id, attempt, need + self._id_block))
        if not short:
            return todo
        try:
            granted = self._reserve(short)
        except Exception as exc:  # the store blinked: these attempts wait a tick
            log.warning("could not reserve event ids (%s); their events wait", exc)
            waiting = {(job, attempt) for job, attempt, _ in short}
            return [(key, entry) for key, entry in todo if key not in waiting]
        for job_id, attempt, upto in short:
            entry = self._logs.get((job_id, attempt))
            if entry is None:
                continue
            if (job_id, attempt) in granted:
                entry.state.reserved = upto
            else:
                entry.state.fenced = True  # the row has a newer attempt
        return [(key, entry) for key, entry in todo if not entry.state.fenced]

    def _write(self, todo: list[tuple[_Key, _Log]]) -> list[tuple[_Key, _Log]]:
        """One pipeline of every pending batch; the attempts to write again at once (a
        batch restored after a Redis that lost the stream, or a script it lost)."""
        # EVALSHA by hand: a pipeline of Script calls first asks SCRIPT EXISTS, one more
        # round trip on every flush (every 25 ms). A Redis that lost its scripts answers
        # NOSCRIPT: load it and write those batches again.
        pipe = self._redis.pipeline(transaction=False)
        sha = self._script.sha
        calls: list[tuple[_Key, _Log, _Batch]] = []
        for key, entry in todo:
            for batch in entry.unacked:
                script_keys, args = self._args(key, entry, "append", batch)
                pipe.evalsha(sha, len(script_keys), *script_keys, *args)
                calls.append((key, entry, batch))
        replies = pipe.execute(raise_on_error=False)
        restores: list[tuple[_Key, _Log]] = []
        unloaded = False
        for (key, entry, batch), reply in zip(calls, replies, strict=True):
            if entry.state.fenced or (entry.unacked and entry.unacked[0] is not batch):
                continue  # an earlier batch of this attempt did not go through
            if isinstance(reply, NoScriptError):
                if batch is entry.unacked[0]:
                    restores.append((key, entry))
                unloaded = True
                continue
            if isinstance(reply, Exception):
                self._failed(key, entry, reply)
                continue
            status = self._record(entry, reply)
            if status is WriteStatus.RESTORE:
                with self._lock:
                    entry.restore_batch(key[1])
                restores.append((key, entry))
            elif status is not WriteStatus.FENCED:
                entry.unacked.popleft()
                entry.errors = 0
        with self._lock:
            for key, entry in todo:
                if entry.closing_since is not None and not (
                    entry.unacked or entry.open or entry.delta
                ):
                    self._logs.pop(key, None)  # a finished attempt's last events went out
        if unloaded:
            self._redis.script_load(WRITE_EVENTS)
        return restores

    def _failed(self, key: _Key, entry: _Log, error: Exception) -> None:
        entry.errors += 1
        log.warning("job %s: event write refused by Redis (%s)", key[0], error)
        if entry.errors >= _MAX_BATCH_ERRORS and isinstance(error, ResponseError):
            entry.state.broken = f"{type(error).__name__}: {str(error)[:200]}"

    def _send_now(
        self, key: _Key, entry: _Log, mode: str, batch: _Batch, *, write_id: str = ""
    ) -> WriteStatus:
        reply = self._call(key, entry, mode, batch, write_id=write_id)
        return self._record(entry, reply)

    def _call(self, key: _Key, entry: _Log, mode: str, batch: _Batch, *, write_id: str = "") -> Any:
        script_keys, args = self._args(key, entry, mode, batch, write_id=write_id)
        return self._script(keys=script_keys, args=args)

    def _args(
        self, key: _Key, entry: _Log, mode: str, batch: _Batch, *, write_id: str = ""
    ) -> tuple[list[str], list[Any]]:
        """The write script's keys and arguments for one batch."""
        job_id, attempt = key
        state = entry.state
        return write_events_args(
            job_id,
            attempt,
            mode,
            batch.events,
            retention_s=self._retention_s,
            maxlen=self._maxlen,
            batch=batch.seq,
            floor=max(state.floor, state.last_event_id),
            write_id=write_id,
        )

    def _record(self, entry: _Log, reply: Any) -> WriteStatus:
        last, _current, cancel, status = parse_reply(reply)
        state = entry.state
        if status is WriteStatus.FENCED:
            state.fenced = True
            entry.unacked.clear()
        elif status is not WriteStatus.RESTORE:
            state.last_event_id = max(state.last_event_id, last)
        state.cancel_requested = state.cancel_requested or cancel
        return status

    def _drop_stale_closings(self) -> None:
        # Closing events Redis never took, past their retry window: the job's row has
        # the outcome and readers are served it from there.
        now = time.monotonic()
        for key in [
            k
            for k, entry in self._logs.items()
            if entry.closing_since is not None and now - entry.closing_since > _CLOSING_RETRY_S
        ]:
            log.error("job %s: closing events never reached Redis; readers get the store's", key[0])
            del self._logs[key]

    # -- the flusher thread ---------------------------------------------------

    def start(self) -> None:
        """Start the background flusher (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="aijobs-event-flusher")
            self._thread.daemon = True
            self._thread.start()

    def stop(self) -> None:
        """Flush what is pending and stop the flusher."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        try:
            self.flush()
        except RedisError:
            log.exception("events lost at shutdown: Redis unreachable")

    def _run(self) -> None:
        backoff_s = self._interval_s
        while not self._stopping.is_set():
            self._wake.wait(backoff_s)
            self._wake.clear()
            try:
                self.flush()
                backoff_s = self._interval_s
            except RedisError as exc:
                backoff_s = min(max(backoff_s * 2, 0.05), 2.0)
                log.warning("event flush failed, retrying in %.2fs: %s", backoff_s, exc)
            except Exception:  # pragma: no cover - a bug must not kill the flusher
                log.exception("event flush crashed")
