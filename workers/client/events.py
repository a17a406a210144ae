"""A job's events as the client reads them: the event model, the reader's cursor and
reconnect pacing, and the text state that ``reset`` events rewrite.

All of it is I/O-free: ``Client`` and ``AsyncClient`` feed it lines and answers and do
what it says, so both read the stream by the same rules.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from aijobs.client.calls import Request, api_error
from aijobs.client.errors import ApiUnavailable, WaitTimeout
from aijobs.client.retry import RetryPolicy, is_retryable_error, parse_retry_after
from aijobs.sse import SseDecoder

#: The event types of the protocol (a newer server may add others: they pass through).
EVENT_TYPES = ("status", "delta", "reset", "progress", "result", "error", "done")


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One event of a job: ``id`` (consecutive per job), ``event`` (one of
    ``EVENT_TYPES``) and ``data``, the event's JSON object."""

    id: int
    event: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TextReset:
    """What ``text()`` yields when the text starts over: a new attempt, an extraction's
    repair round, or text the server restored. Drop what you hold; the text is now
    ``text`` (often ``""``), and the pieces that follow extend it."""

    text: str
    attempt: int | None = None
    round: int | None = None


class TextState:
    """The text a reader holds: ``reset.text`` (or ``""``) plus every later delta."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[str] = []

    @property
    def text(self) -> str:
        """The text so far."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def feed(self, event: JobEvent) -> str | TextReset | None:
        """Take one event: a delta's piece, a ``TextReset``, or ``None`` (no text)."""
        if event.event == "delta":
            piece = str(event.data.get("text", ""))
            self._parts.append(piece)
            return piece
        if event.event == "reset":
            restored = str(event.data.get("text") or "")
            self._parts = [restored]
            return TextReset(restored, event.data.get("attempt"), event.data.get("round"))
        return None


class EventStream:
    """One ``events()`` read: where it stands, when it gives up, what to ask next.

    The transport opens ``request()``, hands the answer to ``opened()``, each line to
    ``feed()`` (which returns the events not seen yet), and calls ``dropped()`` when a
    connection ends before ``done``; it sleeps what that returns and opens again.
    """

    def __init__(
        self,
        job_id: str,
        *,
        after: int,
        policy: RetryPolicy,
        read_timeout_s: float,
        timeout_s: float | None,
    ) -> None:
        self.job_id = job_id
        self.after = after
        self.finished = False
        #: The last status the events showed (``status`` and ``done`` events).
        self.status: str | None = None
        self._policy = policy
        self._read_timeout_s = read_timeout_s
        self._timeout_s = timeout_s
        now = time.monotonic()
        self._deadline = None if timeout_s is None else now + timeout_s
        self._last_contact = now
        self._failures = 0
        self._decoder = SseDecoder()

    def request(self) -> Request:
        """The next connection: everything after the cursor."""
        self._check_deadline()
        headers = {"Accept": "text/event-stream"}
        if self.after:
            headers["Last-Event-ID"] = str(self.after)
        return Request("GET", f"/v1/jobs/{self.job_id}/events", headers=headers)

    def read_timeout_s(self) -> float:
        """The read timeout of the next connection: the client's, or less near a deadline.
        The server sends a keep-alive every ~15 s, so silence past this means a dead link."""
        if self._deadline is None:
            return self._read_timeout_s
        return max(0.001, min(self._read_timeout_s, self._deadline - time.monotonic()))

    def opened(self, response: httpx.Response) -> float | None:
        """Judge an answer (its body read unless it is 200): ``None`` to read its lines, or
        to stop if ``finished`` (204: the job had ended at the cursor); a wait in seconds
        before connecting again. Raises ``ApiError`` when the API refuses."""
        self._check_deadline()
        status = response.status_code
        if status == 204:
            self.finished = True
            return None
        if status == 200:
            self._last_contact = time.monotonic()
            self._decoder = SseDecoder()
            return None
        if status not in self._policy.statuses:
            raise api_error(response)
        asked = parse_retry_after(response.headers)
        if asked is not None and asked > self._policy.max_retry_after_s:
            raise api_error(response)
        return self._wait(asked)

    def feed(self, line: bytes) -> JobEvent | None:
        """Take one line of the stream; the event it completes, if that one is new."""
        self._last_contact = time.monotonic()
        self._check_deadline()
        message = self._decoder.feed(line)
        if message is None or message.id is None:
            return None
        event = JobEvent(int(message.id), message.event, message.json())
        if event.id <= self.after:
            return None  # seen before the connection dropped
        self.after = event.id
        self._failures = 0
        if event.event in ("status", "done") and "status" in event.data:
            self.status = str(event.data["status"])
        if event.event == "done":
            self.finished = True
        return event

    def dropped(self, exc: Exception | None = None) -> float:
        """A connection ended before ``done`` (``exc`` says how, ``None``: the server closed
        it): the wait before the next one. Raises ``WaitTimeout`` past the deadline and
        ``ApiUnavailable`` once the API has been out of reach for ``reconnect_for_s``."""
        self._check_deadline()
        if exc is not None and not is_retryable_error(exc):
            raise ApiUnavailable(f"cannot read the events of job {self.job_id}: {exc}") from exc
        window = self._policy.reconnect_for_s
        if window is not None and time.monotonic() - self._last_contact > window:
            raise ApiUnavailable(
                f"the API did not answer for {window:g}s (events of job {self.job_id})"
            ) from exc
        return self._wait(None)

    def _wait(self, asked_s: float | None) -> float:
        self._failures += 1
        wait_s = asked_s if asked_s is not None else self._policy.backoff_s(self._failures)
        if self._deadline is not None:
            wait_s = min(wait_s, max(0.0, self._deadline - time.monotonic()))
        return wait_s

    def _check_deadline(self) -> None:
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise WaitTimeout(self.job_id, self._timeout_s or 0.0, self.status)
