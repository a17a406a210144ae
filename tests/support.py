"""Helpers shared by the tests: an SSE reader and waits on conditions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


@dataclass(frozen=True)
class SseEvent:
    """One parsed Server-Sent Event."""

    id: int
    event: str
    data: Any


def iter_sse(response: httpx.Response) -> Iterator[SseEvent]:
    """Parse an open text/event-stream response into events (comments skipped)."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in fields:
                yield SseEvent(
                    int(fields["id"]), fields.get("event", "message"), json.loads(fields["data"])
                )
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields[name] = value[1:] if value.startswith(" ") else value


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


def wait_for(predicate: Callable[[], T], *, timeout_s: float = 30.0, interval_s: float = 0.05) -> T:
    """Poll until ``predicate`` returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(interval_s)


def text_after_last_reset(events: list[Any]) -> str:
    """The concatenated delta text after the last reset, as a client rebuilds it."""
    text: list[str] = []
    for event in events:
        if event.event == "reset":
            text = []
        elif event.event == "delta":
            text.append(event.data["text"])
    return "".join(text)


def answers(url: str) -> bool:
    """True if ``url`` answers 200 right now."""
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def clean_env(**variables: str) -> dict[str, str]:
    """This process's environment without any AIJOBS_ setting, plus ``variables``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIJOBS_")}
    return env | variables


class ApiProcess:
    """`aijobs api` as its own process on a fixed port: started, killed, started again."""

    def __init__(self, port: int, env: dict[str, str]) -> None:
        self.port = port
        self.env = env
        self.url = f"http://127.0.0.1:{port}"
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        """Start it and wait until it answers."""
        self.procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "aijobs.cli", "api", "--port", str(self.port)],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_for(lambda: answers(f"{self.url}/healthz"), timeout_s=30)

    def kill(self) -> None:
        """SIGKILL the running process: the API dies mid-whatever."""
        self.procs[-1].kill()
        self.procs[-1].wait()

    def stop(self) -> None:
        """Stop every process it started."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(15)
