"""A Python client for the aijobs API, sync (``Client``) and async (``AsyncClient``).

``events()`` is one iterator for a job whether it is running or long finished: it
resumes by itself after a dropped connection or an API restart, from the last event
it handed out, so the caller sees every event once, in order.

    from aijobs.client import Client

    with Client("http://127.0.0.1:8000", api_key="...") as client:
        job = client.generate("gpt-4o-mini", "Tell me a story")
        for text in client.text(job["id"]):
            print(text, end="", flush=True)
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from aijobs.sse import SseDecoder, aiter_lines, iter_lines

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
# Errors worth reconnecting after: the API restarting, a proxy cutting a long stream.
_RECONNECT_STATUSES = frozenset({502, 503, 504})


class AijobsError(Exception):
    """Raised when the API refuses a request; ``status`` and ``detail`` say why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One event of a job."""

    id: int
    event: str
    data: Any


class SseParser:
    """Turns text/event-stream lines (bytes, cut at CR/LF only) into ``JobEvent``s."""

    def __init__(self) -> None:
        self._decoder = SseDecoder()

    def feed(self, line: bytes) -> JobEvent | None:
        """Take one line; return an event when a blank line completes one."""
        message = self._decoder.feed(line)
        if message is None or message.id is None:
            return None
        return JobEvent(int(message.id), message.event, message.json())


class _Resume:
    """The cursor and the reconnect pacing that both clients share."""

    def __init__(self, after: int, max_backoff_s: float) -> None:
        self.after = after
        self.done = False
        self._failures = 0
        self._max_backoff_s = max_backoff_s

    def accept(self, event: JobEvent) -> bool:
        """True if the event is new; moves the cursor past it."""
        if event.id <= self.after:
            return False
        self.after = event.id
        self.done = event.event == "done"
        self._failures = 0
        return True

    def params(self) -> dict[str, int]:
        return {"after": self.after} if self.after else {}

    def next_wait_s(self) -> float:
        self._failures += 1
        return random.uniform(0, min(self._max_backoff_s, 0.1 * 2**self._failures))


def _raise_for(response: httpx.Response) -> None:
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise AijobsError(response.status_code, str(detail))


def _body(kind: str, model: str, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "model": model, **{k: v for k, v in fields.items() if v is not None}}


def _messages(prompt: str | list[dict[str, str]]) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


class Client:
    """Synchronous client. ``base_url`` and ``api_key`` default to AIJOBS_URL / AIJOBS_API_KEY."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        read_timeout_s: float = 60.0,
        max_backoff_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        key = api_key or os.environ.get("AIJOBS_API_KEY", "")
        self._http = httpx.Client(
            base_url=base_url or os.environ.get("AIJOBS_URL", DEFAULT_URL),
            headers={"Authorization": f"Bearer {key}"},
            timeout=httpx.Timeout(timeout_s, read=read_timeout_s),
            transport=transport,
        )
        self._max_backoff_s = max_backoff_s

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        _raise_for(response)
        return response.json()

    def submit(self, body: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Submit a job (a request body as in the API); the queued job."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call("POST", "/v1/jobs", json=body, headers=headers)  # type: ignore[no-any-return]

    def generate(
        self, model: str, prompt: str | list[dict[str, str]], **options: Any
    ) -> dict[str, Any]:
        """Submit a ``generate`` job from a prompt or a list of messages."""
        return self.submit(_body("generate", model, messages=_messages(prompt), **options))

    def extract(
        self, model: str, text: str, schema: dict[str, Any], **options: Any
    ) -> dict[str, Any]:
        """Submit an ``extract`` job."""
        return self.submit(_body("extract", model, text=text, schema=schema, **options))

    def embed(self, model: str, texts: str | list[str], **options: Any) -> dict[str, Any]:
        """Submit an ``embed`` job."""
        return self.submit(_body("embed", model, input=texts, **options))

    def get(self, job_id: str, *, vector_format: str | None = None) -> dict[str, Any]:
        """A job (an embedding job's vectors as floats, or ``vector_format="base64"``)."""
        params = {"format": vector_format} if vector_format else {}
        return self._call("GET", f"/v1/jobs/{job_id}", params=params)  # type: ignore[no-any-return]

    def jobs(self, **filters: Any) -> dict[str, Any]:
        """A page of jobs: ``status``, ``kind``, ``limit``, ``cursor``."""
        params = {k: v for k, v in filters.items() if v is not None}
        return self._call("GET", "/v1/jobs", params=params)  # type: ignore[no-any-return]

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job; the answer says what happened."""
        return self._call("POST", f"/v1/jobs/{job_id}/cancel")  # type: ignore[no-any-return]

    def events(self, job_id: str, *, after: int = 0) -> Iterator[JobEvent]:
        """Every event of the job after ``after``, until ``done``; reconnects by itself."""
        cursor = _Resume(after, self._max_backoff_s)
        while not cursor.done:
            try:
                with self._http.stream(
                    "GET", f"/v1/jobs/{job_id}/events", params=cursor.params()
                ) as response:
                    if response.status_code == 204:
                        return  # the job had finished at the cursor: nothing follows
                    if response.status_code in _RECONNECT_STATUSES:
                        raise httpx.TransportError(f"HTTP {response.status_code}")
                    if response.status_code >= 400:
                        response.read()
                        _raise_for(response)
                    parser = SseParser()
                    for line in iter_lines(response.iter_bytes()):
                        event = parser.feed(line)
                        if event is not None and cursor.accept(event):
                            yield event
                            if cursor.done:
                                return
            except httpx.TransportError:
                pass  # dropped, refused, timed out: resume from the cursor
            if not cursor.done:
                time.sleep(cursor.next_wait_s())

    def text(self, job_id: str) -> Iterator[str]:
        """The generated text as it comes; after a ``reset`` (a new attempt) it starts over,
        and what was yielded before is superseded."""
        for event in self.events(job_id):
            if event.event == "delta":
                yield event.data["text"]
            elif event.event == "reset" and event.data.get("text"):
                yield event.data["text"]  # the text so far, as the server restored it

    def wait(self, job_id: str) -> dict[str, Any]:
        """Block until the job finishes; the finished job."""
        for _ in self.events(job_id):
            pass
        return self.get(job_id)


class AsyncClient:
    """Asynchronous client; the same methods as ``Client``, awaitable."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        read_timeout_s: float = 60.0,
        max_backoff_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        key = api_key or os.environ.get("AIJOBS_API_KEY", "")
        self._http = httpx.AsyncClient(
            base_url=base_url or os.environ.get("AIJOBS_URL", DEFAULT_URL),
            headers={"Authorization": f"Bearer {key}"},
            timeout=httpx.Timeout(timeout_s, read=read_timeout_s),
            transport=transport,
        )
        self._max_backoff_s = max_backoff_s

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._http.request(method, path, **kwargs)
        _raise_for(response)
        return response.json()

    async def submit(
        self, body: dict[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Submit a job (a request body as in the API); the queued job."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return await self._call("POST", "/v1/jobs", json=body, headers=headers)  # type: ignore[no-any-return]

    async def generate(
        self, model: str, prompt: str | list[dict[str, str]], **options: Any
    ) -> dict[str, Any]:
        """Submit a ``generate`` job."""
        return await self.submit(_body("generate", model, messages=_messages(prompt), **options))

    async def get(self, job_id: str, *, vector_format: str | None = None) -> dict[str, Any]:
        """A job."""
        params = {"format": vector_format} if vector_format else {}
        return await self._call("GET", f"/v1/jobs/{job_id}", params=params)  # type: ignore[no-any-return]

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job."""
        return await self._call("POST", f"/v1/jobs/{job_id}/cancel")  # type: ignore[no-any-return]

    async def events(self, job_id: str, *, after: int = 0) -> AsyncIterator[JobEvent]:
        """Every event of the job after ``after``, until ``done``; reconnects by itself."""
        cursor = _Resume(after, self._max_backoff_s)
        while not cursor.done:
            try:
                async with self._http.stream(
                    "GET", f"/v1/jobs/{job_id}/events", params=cursor.params()
                ) as response:
                    if response.status_code == 204:
                        return  # the job had finished at the cursor: nothing follows
                    if response.status_code in _RECONNECT_STATUSES:
                        raise httpx.TransportError(f"HTTP {response.status_code}")
                    if response.status_code >= 400:
                        await response.aread()
                        _raise_for(response)
                    parser = SseParser()
                    async for line in aiter_lines(response.aiter_bytes()):
                        event = parser.feed(line)
                        if event is not None and cursor.accept(event):
                            yield event
                            if cursor.done:
                                return
            except httpx.TransportError:
                pass
            if not cursor.done:
                await asyncio.sleep(cursor.next_wait_s())

    async def wait(self, job_id: str) -> dict[str, Any]:
        """Wait until the job finishes; the finished job."""
        async for _ in self.events(job_id):
            pass
        return await self.get(job_id)
