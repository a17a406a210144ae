"""Helpers shared by the tests: an SSE reader, and the harness's waits and processes."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from aijobs.devtools.harness import Harness, Service, child_env, wait_for
from aijobs.sse import SseDecoder, iter_lines

__all__ = ["ApiProcess", "FollowResult", "SseEvent", "clean_env", "follow", "iter_sse",
           "queued", "read_events", "text_after_last_reset", "text_of", "wait_for"]  # fmt: skip


@dataclass(frozen=True)
class SseEvent:
    """One parsed Server-Sent Event."""

    id: int
    event: str
    data: Any


def iter_sse(response: httpx.Response) -> Iterator[SseEvent]:
    """Parse an open text/event-stream response into events (comments skipped), cutting
    lines at CR/LF only, as the spec does (a U+2028 in the text is not a line end)."""
    decoder = SseDecoder()
    for line in iter_lines(response.iter_bytes()):
        message = decoder.feed(line)
        if message is not None and message.id is not None:
            yield SseEvent(int(message.id), message.event, json.loads(message.data))


def read_events(
    client: httpx.Client,
    job_id: str,
    *,
    after: int | None = None,
    last_event_id: int | None = None,
    stop_after: int | None = None,
    timeout_s: float = 30.0,
) -> list[SseEvent]:
    """Read a job's events until the server closes the stream (or ``stop_after`` events)."""
    params = {} if after is None else {"after": after}
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    events: list[SseEvent] = []
    with client.stream(
        "GET", f"/v1/jobs/{job_id}/events", params=params, headers=headers, timeout=timeout_s
    ) as response:
        assert response.status_code == 200, response.read()
        for event in iter_sse(response):
            events.append(event)
            if stop_after is not None and len(events) >= stop_after:
                break
    return events


@dataclass
class FollowResult:
    """What a reconnecting reader saw: every event once, and how it ended."""

    events: list[SseEvent]
    reconnects: int = 0
    ended_with_204: bool = False

    @property
    def ids(self) -> list[int]:
        return [e.id for e in self.events]

    @property
    def done(self) -> bool:
        return (bool(self.events) and self.events[-1].event == "done") or self.ended_with_204


def follow(
    client: httpx.Client,
    job_id: str,
    *,
    timeout_s: float = 90.0,
    drop_every: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FollowResult:
    """Read a job's events to ``done`` the way a resilient client does: reconnect with
    Last-Event-ID after any error (or on purpose every ``drop_every`` events); a 204
    means the job had already finished at the cursor."""
    result = FollowResult([])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if should_stop is not None and should_stop():
            return result
        headers = {"Last-Event-ID": str(result.events[-1].id)} if result.events else {}
        try:
            with client.stream(
                "GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=10
            ) as response:
                if response.status_code == 204:
                    result.ended_with_204 = True
                    return result
                if response.status_code != 200:
                    raise httpx.TransportError(f"HTTP {response.status_code}")
                for seen, event in enumerate(iter_sse(response), start=1):
                    result.events.append(event)
                    if event.event == "done":
                        return result
                    if drop_every and seen >= drop_every:
                        break
        except httpx.HTTPError:
            pass
        result.reconnects += 1
        time.sleep(0.1)
    raise AssertionError(f"job {job_id}: no done within {timeout_s}s ({len(result.events)} events)")


def text_of(events: list[Any]) -> str:
    """The text a client holds after these events: deltas after the last ``reset``, which
    may carry the text so far."""
    text: list[str] = []
    for event in events:
        if event.event == "reset":
            text = [event.data.get("text", "")]
        elif event.event == "delta":
            text.append(event.data["text"])
    return "".join(text)


def queued(rds: Any) -> int:
    """Jobs waiting anywhere in Redis: the broker's queues, every tenant's list, delayed."""
    total = sum(int(rds.llen(q)) for q in ("generate", "extract", "embed"))
    total += sum(int(rds.zcard(key)) for key in rds.scan_iter(match="aijobs:q:*:t:*"))
    return total + int(rds.zcard("aijobs:delayed"))


def text_after_last_reset(events: list[Any]) -> str:
    """The concatenated delta text after the last reset, as a client rebuilds it."""
    text: list[str] = []
    for event in events:
        if event.event == "reset":
            text = []
        elif event.event == "delta":
            text.append(event.data["text"])
    return "".join(text)


def clean_env(**variables: str) -> dict[str, str]:
    """This process's environment without any AIJOBS_ setting, plus ``variables``."""
    return child_env(extra=variables)


class ApiProcess:
    """`aijobs api` as its own process on a fixed port: started, killed, started again."""

    def __init__(self, port: int, env: dict[str, str]) -> None:
        self.port = port
        self.env = env
        self.url = f"http://127.0.0.1:{port}"
        # Its logs live as long as it does: in a directory removed by stop().
        self._logs = tempfile.TemporaryDirectory(prefix="aijobs-api-")
        self.harness = Harness(Path(self._logs.name))
        self.procs: list[Service] = []

    def start(self) -> None:
        """Start it and wait until it answers."""
        name = f"api-{len(self.procs)}"
        self.procs.append(
            self.harness.start_api(
                self.env, port=self.port, name=name, ready_path="/healthz", timeout_s=30
            )
        )

    def kill(self) -> None:
        """SIGKILL the running process: the API dies mid-whatever."""
        self.procs[-1].kill()

    def stop(self) -> None:
        """Stop every process it started."""
        try:
            self.harness.close()
        finally:
            self._logs.cleanup()
