"""The worker side of the event protocol: coalesced, pipelined, fenced writes.

Publishing each token as its own Redis round trip costs more CPU than the rest
of a job. Job threads only append to an in-memory buffer; one flusher thread per
process writes every job's pending events each ``flush_interval_s`` in a single
pipeline, one fenced Lua call per job, merging consecutive deltas into one event.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from aijobs.events.protocol import EventType, dumps
from aijobs.events.scripts import WRITE_EVENTS, write_events_args

log = logging.getLogger(__name__)

_Key = tuple[str, int]


@dataclass(slots=True)
class _Pending:
    """A job attempt's events not yet written; a trailing delta keeps growing."""

    events: list[tuple[str, str]] = field(default_factory=list)
    delta: list[str] = field(default_factory=list)

    def close_delta(self, attempt: int) -> None:
        if self.delta:
            text = "".join(self.delta)
            self.delta = []
            self.events.append((EventType.DELTA, dumps({"text": text, "attempt": attempt})))


@dataclass(slots=True)
class AttemptState:
    """What the last write learned about an attempt."""

    fenced: bool = False
    cancel_requested: bool = False
    last_event_id: int = 0


class Fenced(Exception):
    """Raised when a newer attempt of the job owns its events: this attempt must stop."""


class EventWriter:
    """Buffers and writes the events of every job running in this process."""

    def __init__(
        self,
        redis: Redis,
        *,
        retention_s: int,
        maxlen: int,
        flush_interval_s: float = 0.025,
    ) -> None:
        self._redis = redis
        self._script = redis.register_script(WRITE_EVENTS)
        self._retention_s = retention_s
        self._maxlen = maxlen
        self._interval_s = flush_interval_s
        self._pending: dict[_Key, _Pending] = {}
        self._states: dict[_Key, AttemptState] = {}
        self._pending_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- job-thread API -------------------------------------------------------

    def begin(self, job_id: str, attempt: int, events: list[tuple[str, dict[str, Any]]]) -> int:
        """Raise the job's fence to ``attempt`` and write its opening events now.

        Raises ``Fenced`` if the job already has this or a newer attempt.
        """
        state = self._write_now(job_id, attempt, "begin", [(e, dumps(d)) for e, d in events])
        if state.fenced:
            raise Fenced(f"job {job_id} already has attempt {attempt} or newer")
        return state.last_event_id

    def delta(self, job_id: str, attempt: int, text: str) -> None:
        """Buffer generated text; it is written within one flush interval."""
        if not text:
            return
        with self._pending_lock:
            pending = self._pending.get((job_id, attempt))
            if pending is None:
                pending = self._pending[(job_id, attempt)] = _Pending()
            pending.delta.append(text)

    def emit(self, job_id: str, attempt: int, event: str, data: dict[str, Any]) -> None:
        """Buffer an event, in order after the text before it."""
        with self._pending_lock:
            pending = self._pending.setdefault((job_id, attempt), _Pending())
            pending.close_delta(attempt)
            pending.events.append((event, dumps(data)))

    def finish(self, job_id: str, attempt: int, events: list[tuple[str, dict[str, Any]]]) -> int:
        """Write everything pending for the attempt, then ``events``, before returning.

        Returns the id of the last event written (0 if the attempt was fenced).
        """
        for event, data in events:
            self.emit(job_id, attempt, event, data)
        self.flush()
        state = self.forget(job_id, attempt)
        return 0 if state.fenced else state.last_event_id

    def state(self, job_id: str, attempt: int) -> AttemptState:
        """What the writes so far learned: fenced, cancel requested."""
        return self._states.get((job_id, attempt)) or AttemptState()

    def forget(self, job_id: str, attempt: int) -> AttemptState:
        """Drop the bookkeeping of a finished attempt."""
        with self._pending_lock:
            self._pending.pop((job_id, attempt), None)
            return self._states.pop((job_id, attempt), None) or AttemptState()

    # -- flushing -------------------------------------------------------------

    def flush(self) -> None:
        """Write every pending event of every job now, in one pipeline."""
        with self._flush_lock:
            with self._pending_lock:
                batch = self._pending
                self._pending = {}
                for key, pending in batch.items():
                    pending.close_delta(key[1])
            batch = {k: p for k, p in batch.items() if p.events}
            if not batch:
                return
            try:
                self._write_batch(batch)
            except RedisError:
                # Keep the events (ahead of anything newer) and try again next tick.
                with self._pending_lock:
                    for key, pending in batch.items():
                        newer = self._pending.get(key)
                        if newer is not None:
                            pending.events.extend(newer.events)
                            pending.delta = newer.delta
                        self._pending[key] = pending
                raise

    def _write_batch(self, batch: dict[_Key, _Pending]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        order = list(batch)
        for job_id, attempt in order:
            script_keys, args = self._script_args(
                job_id, attempt, "append", batch[(job_id, attempt)].events
            )
            self._script(keys=script_keys, args=args, client=pipe)
        replies = pipe.execute()
        for key, reply in zip(order, replies, strict=True):
            self._record(key, reply)

    def _write_now(
        self, job_id: str, attempt: int, mode: str, events: list[tuple[str, str]]
    ) -> AttemptState:
        script_keys, args = self._script_args(job_id, attempt, mode, events)
        return self._record((job_id, attempt), self._script(keys=script_keys, args=args))

    def _script_args(
        self, job_id: str, attempt: int, mode: str, events: list[tuple[str, str]]
    ) -> tuple[list[str], list[Any]]:
        return write_events_args(
            job_id, attempt, mode, events, retention_s=self._retention_s, maxlen=self._maxlen
        )

    def _record(self, key: _Key, reply: list[int]) -> AttemptState:
        last, _current, cancel = (int(x) for x in reply)
        state = self._states.setdefault(key, AttemptState())
        if last < 0:
            state.fenced = True
        else:
            state.last_event_id = last
        state.cancel_requested = bool(cancel)
        return state

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
