"""Helpers shared by the tests: an SSE reader, and the harness's waits and processes."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from aijobs.devtools.harness import Harness, Service, child_env, wait_for

__all__ = ["ApiProcess", "SseEvent", "clean_env", "iter_sse", "read_events",
           "text_after_last_reset", "wait_for"]  # fmt: skip


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
