"""Readers that follow a job the way real clients do, and drop off at random.

An SSE reader resumes with ``Last-Event-ID`` (or, every other time, ``?after=``); a
WebSocket reader with ``?after=``. Each drops its connection after an event with its own
probability (seeded), and reconnects after any error — a Redis outage behind the API, a
refused handshake — until ``done``, a 204 (the job had finished at its cursor; a socket
closed at once with the job's status is the same answer) or the run's deadline. It keeps
every event it got, in order: the audit checks them.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect

from aijobs.sse import SseDecoder, iter_lines
from tests.chaos.cluster import KEY
from tests.chaos.workload import ReaderPlan
from tests.support import SseEvent

TERMINAL = ("succeeded", "failed", "cancelled")
#: A live stream sends a keep-alive every second: this much silence is a dead connection.
READ_TIMEOUT_S = 10.0


def iter_sse_until(response: httpx.Response, deadline: float) -> Iterator[SseEvent]:
    """A response's events (lines cut at CR/LF only, as ``tests.support.iter_sse`` does),
    raising ``TimeoutError`` past ``deadline``: a stream of a job that never ends keeps
    its connection alive with keep-alives forever, and those are lines too."""
    decoder = SseDecoder()
    for line in iter_lines(response.iter_bytes()):
        if time.monotonic() > deadline:
            raise TimeoutError("the run's deadline passed while reading")
        message = decoder.feed(line)
        if message is not None and message.id is not None:
            yield SseEvent(int(message.id), message.event, json.loads(message.data))


@dataclass
class Reader:
    """One reader of one job, run in its own thread."""

    plan: ReaderPlan
    job_id: str
    api_url: str
    deadline: float  # time.monotonic()
    events: list[SseEvent] = field(default_factory=list)
    connections: int = 0
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)
    ended_with_204: bool = False
    finished: bool = False
    hung: bool = False
    thread: threading.Thread | None = None

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1].event == "done"

    @property
    def cursor(self) -> int:
        return self.events[-1].id if self.events else 0

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name=f"reader-{self.plan.name}",
                                       daemon=True)  # fmt: skip
        self.thread.start()

    def _run(self) -> None:
        rng = random.Random(self.plan.seed)
        with httpx.Client(base_url=self.api_url, headers={"Authorization": f"Bearer {KEY}"},
                          timeout=httpx.Timeout(READ_TIMEOUT_S, connect=5),
                          trust_env=False) as client:  # fmt: skip
            while time.monotonic() < self.deadline:
                self.connections += 1
                try:
                    if self.plan.transport == "sse":
                        ended = self._sse_once(client, rng)
                    else:
                        ended = self._ws_once(rng)
                except (httpx.HTTPError, ConnectionClosed, InvalidHandshake, OSError,
                        TimeoutError, ValueError) as exc:  # fmt: skip
                    self.errors.append(f"{time.time():.3f} {type(exc).__name__}: {exc}"[:300])
                    ended = False
                if ended:
                    self.finished = True
                    return
                self.reconnects += 1
                # A client's pause before it reconnects: part of the reader's schedule.
                time.sleep(rng.uniform(0.05, 0.5))
        self.hung = True

    def _take(self, event: SseEvent, rng: random.Random) -> bool | None:
        """Keep an event; True at ``done``, False to drop the connection, None to go on."""
        self.events.append(event)
        if event.event == "done":
            return True
        if rng.random() < self.plan.drop_p:
            return False
        return None

    def _sse_once(self, client: httpx.Client, rng: random.Random) -> bool:
        params: dict[str, Any] = {}
        headers: dict[str, str] = {}
        if self.events:
            if rng.random() < 0.5:
                headers["Last-Event-ID"] = str(self.cursor)
            else:
                params["after"] = self.cursor
        with client.stream("GET", f"/v1/jobs/{self.job_id}/events", params=params,
                           headers=headers) as response:  # fmt: skip
            if response.status_code == 204:
                self.ended_with_204 = True
                return True
            if response.status_code != 200:
                raise httpx.HTTPError(f"HTTP {response.status_code}")
            for event in iter_sse_until(response, self.deadline):
                verdict = self._take(event, rng)
                if verdict is not None:
                    return verdict
        raise httpx.HTTPError("the stream ended without done")

    def _ws_once(self, rng: random.Random) -> bool:
        url = self.api_url.replace("http://", "ws://", 1)
        url += f"/v1/jobs/{self.job_id}/ws?after={self.cursor}"
        got_any = False
        with connect(url, additional_headers={"Authorization": f"Bearer {KEY}"},
                     open_timeout=5, close_timeout=1) as ws:  # fmt: skip
            while True:
                try:
                    raw = ws.recv(timeout=READ_TIMEOUT_S)
                except ConnectionClosed as closed:
                    reason = closed.rcvd.reason if closed.rcvd is not None else ""
                    if not got_any and closed.rcvd is not None and reason in TERMINAL:
                        self.ended_with_204 = True  # the socket's 204: finished at the cursor
                        return True
                    raise
                got_any = True
                message = json.loads(raw)
                event = SseEvent(int(message["id"]), message["event"], message["data"])
                verdict = self._take(event, rng)
                if verdict is not None:
                    return verdict

    def join(self, timeout_s: float) -> None:
        if self.thread is not None:
            with contextlib.suppress(RuntimeError):
                self.thread.join(timeout_s)
