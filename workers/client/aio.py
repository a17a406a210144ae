"""``AsyncClient``: the API from asyncio code; the same methods as ``Client``, awaitable."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, TypeVar

import httpx

from aijobs.client import calls
from aijobs.client.calls import Call, JobBody, ListOrder, Prompt, Timestamp, VectorFormat
from aijobs.client.config import http_options
from aijobs.client.events import EventStream, JobEvent, TextReset, TextState
from aijobs.client.retry import Retries, RetryPolicy
from aijobs.client.vectors import Embeddings
from aijobs.schemas import (
    BatchAnswer,
    CancelAnswer,
    EventToken,
    JobKind,
    JobPage,
    JobPublic,
    JobStatus,
    UsageReport,
)
from aijobs.sse import aiter_lines

T = TypeVar("T")
log = logging.getLogger("aijobs.client")


class AsyncClient:
    """An asyncio client of the aijobs API. Use it with ``async with``, or ``aclose()`` it.

    ``base_url`` and ``api_key`` default to AIJOBS_URL and AIJOBS_API_KEY. Requests are
    retried as ``retry`` says (connection errors, 429, 502-504; see ``RetryPolicy``);
    ``events()`` resumes by itself from the last event it handed out.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        read_timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        options = http_options(
            base_url, api_key, timeout_s=timeout_s, read_timeout_s=read_timeout_s,
            headers=headers,
        )  # fmt: skip
        self._http = httpx.AsyncClient(**options, transport=transport)
        self._retry = retry or RetryPolicy()
        self._timeout_s = timeout_s
        self._read_timeout_s = read_timeout_s

    @property
    def base_url(self) -> str:
        """The API's address."""
        return str(self._http.base_url)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _send(self, call: Call[T]) -> T:
        request = call.request
        retries = Retries(self._retry)
        wait_s: float | None
        while True:
            try:
                response = await self._http.request(
                    request.method, request.path, params=request.params,
                    json=request.json, headers=request.headers,
                )  # fmt: skip
            except httpx.RequestError as exc:
                wait_s = retries.after_error(exc)
                log.info("%s %s: %s; retrying in %.2fs", request.method, request.path,
                         type(exc).__name__, wait_s)  # fmt: skip
            else:
                wait_s = retries.after_response(response)
                if wait_s is None:
                    return call.result(response)
                log.info("%s %s: HTTP %d; retrying in %.2fs", request.method, request.path,
                         response.status_code, wait_s)  # fmt: skip
            await asyncio.sleep(wait_s)

    # -- jobs ---------------------------------------------------------------------------

    async def submit(self, body: JobBody, *, idempotency_key: str | None = None) -> JobPublic:
        """Submit a job: a body as the API takes it (a dict, or ``GenerateInput`` /
        ``ExtractInput`` / ``EmbedInput``); the queued job.

        Sent with an ``Idempotency-Key`` (``idempotency_key``, or a fresh one made once
        for this call), so a retry after a lost answer returns the same job.
        """
        return await self._send(calls.submit(body, idempotency_key))

    async def submit_batch(self, bodies: Sequence[JobBody]) -> BatchAnswer:
        """Submit many jobs in one request (up to the API's ``AIJOBS_BATCH_MAX_JOBS``):
        one result per body, in order, each ``status`` 202 with its ``job`` or a 4xx with
        its ``detail`` (a bad body fails alone). A body may carry ``idempotency_key``;
        the others get one made once for this call, so a retry makes nothing twice."""
        return await self._send(calls.submit_batch(bodies))

    async def generate(
        self,
        model: str,
        prompt: Prompt,
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        run_at: Timestamp | None = None,
        delay_s: float | None = None,
        priority: int | None = None,
        max_completion_tokens: int | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        top_p: float | None = None,
        json_object: bool = False,
        reasoning_effort: str | None = None,
        provider_options: Mapping[str, Any] | None = None,
    ) -> JobPublic:
        """Submit a ``generate`` job: a prompt (one user message) or a list of messages
        (whose ``content`` may be content parts: text, image_url).

        ``run_at`` (an aware datetime or RFC 3339 text) or ``delay_s``: not before then;
        ``priority``: 0-9, 9 first (default 5). ``json_object``: ``response_format``
        ``{"type": "json_object"}``; ``provider_options``: provider-specific fields, sent
        as they are (the SDK's ``extra_body``)."""
        options = calls.generation_options(
            max_completion_tokens=max_completion_tokens, stop=stop, seed=seed, top_p=top_p,
            json_object=json_object, reasoning_effort=reasoning_effort,
            provider_options=provider_options,
        )  # fmt: skip
        body = calls.generate_body(
            model, prompt, system=system, max_tokens=max_tokens, temperature=temperature,
            metadata=metadata, schedule=calls.schedule_fields(run_at, delay_s, priority),
            options=options,
        )  # fmt: skip
        return await self.submit(body, idempotency_key=idempotency_key)

    async def extract(
        self,
        model: str,
        text: str,
        schema: Mapping[str, Any],
        *,
        instructions: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        run_at: Timestamp | None = None,
        delay_s: float | None = None,
        priority: int | None = None,
    ) -> JobPublic:
        """Submit an ``extract`` job: JSON from ``text`` that matches ``schema``
        (scheduling as ``generate``)."""
        body = calls.extract_body(
            model, text, schema, instructions=instructions, metadata=metadata,
            schedule=calls.schedule_fields(run_at, delay_s, priority),
        )  # fmt: skip
        return await self.submit(body, idempotency_key=idempotency_key)

    async def embed(
        self,
        model: str,
        texts: str | Sequence[str],
        *,
        dimensions: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        run_at: Timestamp | None = None,
        delay_s: float | None = None,
        priority: int | None = None,
    ) -> JobPublic:
        """Submit an ``embed`` job for one text or a list of texts (scheduling as
        ``generate``)."""
        body = calls.embed_body(
            model, texts, dimensions=dimensions, metadata=metadata,
            schedule=calls.schedule_fields(run_at, delay_s, priority),
        )  # fmt: skip
        return await self.submit(body, idempotency_key=idempotency_key)

    async def get(
        self, job_id: str, *, vectors: bool = True, vector_format: VectorFormat = "float"
    ) -> JobPublic:
        """A job. An embedding job's ``result`` holds its vectors (lists of floats, or
        base64 float32 with ``vector_format="base64"``) unless ``vectors=False``."""
        return await self._send(calls.get(job_id, vectors=vectors, vector_format=vector_format))

    async def embeddings(self, job_id: str) -> Embeddings:
        """A succeeded embedding job's vectors, fetched in the compact base64 form
        (``NoResult`` if the job has not succeeded)."""
        return await self._send(calls.embeddings(job_id))

    async def jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        kind: JobKind | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        metadata: Mapping[str, str | int] | None = None,
        created_after: Timestamp | None = None,
        created_before: Timestamp | None = None,
        order: ListOrder | None = None,
    ) -> JobPage:
        """One page of your jobs, newest first (``order="run_at"``: the scheduled ones,
        soonest first); pass its ``next_cursor`` for the next. ``metadata``: jobs whose
        metadata has each key with that value; ``created_after <= created_at <
        created_before``. Lists never carry vectors."""
        filters = calls.JobFilters(metadata, created_after, created_before, order)
        call = calls.list_jobs(
            status=status, kind=kind, limit=limit, cursor=cursor, filters=filters
        )
        return await self._send(call)

    async def iter_jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        kind: JobKind | str | None = None,
        page_size: int = 100,
        metadata: Mapping[str, str | int] | None = None,
        created_after: Timestamp | None = None,
        created_before: Timestamp | None = None,
        order: ListOrder | None = None,
    ) -> AsyncIterator[JobPublic]:
        """Every job that matches, newest first, fetching page after page as you go."""
        filters = calls.JobFilters(metadata, created_after, created_before, order)
        pager = calls.JobsPager(status=status, kind=kind, page_size=page_size, filters=filters)
        while (call := pager.next_call()) is not None:
            for job in pager.take(await self._send(call)):
                yield job

    async def cancel(self, job_id: str) -> CancelAnswer:
        """Cancel a job: a waiting one never runs, a running one stops at its next chunk;
        a finished one is left as it is (``detail`` says which)."""
        return await self._send(calls.cancel(job_id))

    async def retry(self, job_id: str, *, idempotency_key: str | None = None) -> JobPublic:
        """Run a failed or cancelled job again as a new job (its metadata's
        ``replay_of`` names the old one); the new job. ``ApiError`` 409 for a job in
        another state."""
        return await self._send(calls.retry(job_id, idempotency_key))

    async def usage(
        self,
        *,
        start: Timestamp | None = None,
        end: Timestamp | None = None,
        group_by: calls.UsageGroup | None = None,
    ) -> UsageReport:
        """Your tokens (prompt, completion, cached), jobs, attempts and cost in ``[start,
        end)`` (default: this month so far, UTC), in all or per ``model`` or ``day``, and
        your budgets with what each period has spent."""
        return await self._send(calls.usage(start, end, group_by))

    async def delete(self, job_id: str) -> None:
        """Delete a job: its input, output and events are scrubbed, and it is gone (a
        running one is cancelled first; ``ApiError`` 409 if it does not stop in time)."""
        await self._send(calls.delete(job_id))

    async def token(self, job_id: str) -> EventToken:
        """A short-lived token that opens only this job's events (for a browser)."""
        return calls.absolute_urls(await self._send(calls.token(job_id)), self.base_url)

    # -- events -------------------------------------------------------------------------

    async def events(
        self, job_id: str, *, after: int = 0, timeout_s: float | None = None
    ) -> AsyncIterator[JobEvent]:
        """Every event of the job after event id ``after``, in order, each once, until
        ``done`` (or, if the job had ended at ``after``, nothing).

        Reconnects by itself after a dropped connection, a timeout or an API restart,
        resuming after the last event it yielded; raises ``ApiUnavailable`` when the API
        stays out of reach (``RetryPolicy.reconnect_for_s``), ``ApiError`` when it
        refuses, ``WaitTimeout`` after ``timeout_s``.
        """
        stream = EventStream(
            job_id, after=after, policy=self._retry, read_timeout_s=self._read_timeout_s,
            timeout_s=timeout_s,
        )  # fmt: skip
        while True:
            request = stream.request()
            try:
                async with self._http.stream(
                    request.method, request.path, headers=request.headers,
                    timeout=httpx.Timeout(self._timeout_s, read=stream.read_timeout_s()),
                ) as response:  # fmt: skip
                    if response.status_code != 200:
                        await response.aread()
                    wait_s = stream.opened(response)
                    if wait_s is None:
                        if stream.finished:
                            return
                        async for line in aiter_lines(response.aiter_bytes()):
                            event = stream.feed(line)
                            if event is not None:
                                yield event
                                if stream.finished:
                                    return
                        wait_s = stream.dropped()
            except httpx.RequestError as exc:
                wait_s = stream.dropped(exc)
            # Logged with the cursor as a field, so a UI (the CLI's status line) can say so.
            log.info("events of job %s: reconnecting after event %d in %.2fs",
                     job_id, stream.after, wait_s,
                     extra={"job_id": job_id, "reconnect_after": stream.after})  # fmt: skip
            await asyncio.sleep(wait_s)

    async def text(
        self, job_id: str, *, timeout_s: float | None = None
    ) -> AsyncIterator[str | TextReset]:
        """The job's text as it is generated: ``str`` pieces to append, and a
        ``TextReset`` whenever the text starts over (a new attempt, a repair round, text
        the server restored): then drop what you hold and take ``reset.text``.

        The pieces after the last ``TextReset`` (with its ``text``) are the final text.
        """
        state = TextState()
        async for event in self.events(job_id, timeout_s=timeout_s):
            piece = state.feed(event)
            if piece is not None:
                yield piece

    async def wait(
        self, job_id: str, *, timeout_s: float | None = None, vectors: bool = False
    ) -> JobPublic:
        """Wait until the job finishes; the finished job (``WaitTimeout`` after
        ``timeout_s``). An embedding job's vectors only with ``vectors=True`` (or see
        ``embeddings()``)."""
        async for _ in self.events(job_id, timeout_s=timeout_s):
            pass
        return await self.get(job_id, vectors=vectors)
