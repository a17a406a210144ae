"""Cheap server-sent-event streaming of ``chat.completion.chunk`` objects.

Each chunk is the pre-serialised chunk template with only the token text JSON-encoded.
Chunks are paced with ``asyncio.sleep``: token ``i`` is due ``(i + 1) / tokens_per_second``
after the first (role) chunk, and all chunks due are sent in one write, at most one write per
:data:`MIN_WRITE_INTERVAL_S` per stream (socket writes dominate the cost). A loaded event
loop therefore degrades to bigger writes instead of falling behind.

A stalled stream sends its first content chunks, then only :data:`KEEP_ALIVE` comment lines
until the client goes away; a trickled one is just paced very slowly.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from aijobs.devtools.simulator.request_log import RequestRecord
from aijobs.devtools.simulator.stats import Stats

SYSTEM_FINGERPRINT = "fp_simulator"
MIN_WRITE_INTERVAL_S = 0.04
"""Chunks due within this interval share one socket write (fewer syscalls per stream)."""
_FAST_BATCH = 256
KEEP_ALIVE = b": keep-alive\n\n"
"""An SSE comment: clients ignore it, yet it keeps every read timeout from firing."""


class SimulatedDisconnect(Exception):
    """Raised from a response after it started so that the server drops the connection."""


class _DropSimulatedDisconnect(logging.Filter):
    """Keep uvicorn from logging the tracebacks of deliberate disconnects."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, SimulatedDisconnect)


def quiet_simulated_disconnects() -> None:
    """Install (once) the log filter hiding :class:`SimulatedDisconnect` tracebacks."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DropSimulatedDisconnect) for f in logger.filters):
        logger.addFilter(_DropSimulatedDisconnect())


@lru_cache(maxsize=8192)
def _json_str(text: str) -> bytes:
    return json.dumps(text, ensure_ascii=False).encode()


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(slots=True)
class StreamPlan:
    """Everything a chat stream sends.

    ``field`` is ``"content"`` or ``"refusal"``; ``cut_after`` (content chunks) makes the
    server drop the connection instead of sending the final chunk and ``[DONE]``;
    ``stall_after`` (content chunks) makes it send a :data:`KEEP_ALIVE` every ``keepalive_s``
    instead, until the client goes away.
    """

    completion_id: str
    created: int
    model: str
    tokens: list[str]
    finish_reason: str
    usage: dict[str, Any]
    include_usage: bool = False
    #: Usage so far in every chunk (vLLM's ``stream_options.continuous_usage_stats``).
    continuous_usage: bool = False
    field: str = "content"
    cut_after: int | None = None
    stall_after: int | None = None
    keepalive_s: float = 1.0
    latency_s: float = 0.0
    tokens_per_second: float = 0.0


class DisconnectWatch:
    """Tracks whether the client went away, by waiting on ``receive()`` in a task."""

    __slots__ = ("gone", "task")

    def __init__(self, receive: Receive) -> None:
        """Start watching (call :meth:`stop` when done)."""
        self.gone = False
        self.task = asyncio.get_running_loop().create_task(self._run(receive))

    async def _run(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.gone = True
                return

    async def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; ``False`` as soon as the client is gone."""
        if not self.gone:
            await asyncio.wait([self.task], timeout=seconds)
        return not self.gone

    def stop(self) -> None:
        """Stop watching."""
        if not self.task.done():
            self.task.cancel()


async def sleep_unless_disconnected(receive: Receive, seconds: float) -> bool:
    """Sleep up to ``seconds``; return ``False`` early if the client disconnects."""
    watch = DisconnectWatch(receive)
    try:
        return await watch.wait(seconds)
    finally:
        watch.stop()


class ChatStream(Response):
    """ASGI response streaming a chat completion as ``text/event-stream``."""

    media_type = "text/event-stream"

    def __init__(
        self,
        plan: StreamPlan,
        stats: Stats,
        headers: dict[str, str],
        record: RequestRecord | None = None,
    ) -> None:
        """Prepare the stream (nothing is sent until the server calls the response).

        ``record.chunks`` follows the content chunks sent.
        """
        self.plan = plan
        self.stats = stats
        self.record = record
        self.status_code = 200
        self.background = None
        self.body = b""
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            *[(k.encode(), v.encode()) for k, v in headers.items()],
        ]

    def _templates(self) -> tuple[bytes, bytes, bytes]:
        p = self.plan
        head = (
            b'data: {"id":' + _dumps(p.completion_id) + b',"object":"chat.completion.chunk",'
            b'"created":' + str(p.created).encode() + b',"model":' + _dumps(p.model)
            + b',"system_fingerprint":"' + SYSTEM_FINGERPRINT.encode() + b'","choices":'
        )  # fmt: skip
        usage_null = b',"usage":null' if p.include_usage else b""
        token_prefix = head + b'[{"index":0,"delta":{"' + p.field.encode() + b'":'
        token_suffix = b'},"logprobs":null,"finish_reason":null}]' + usage_null + b"}\n\n"
        return head, token_prefix, token_suffix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the stream, pacing chunks; count completions and early client closes."""
        p = self.plan
        stats = self.stats
        stats.streams_started += 1
        watch = DisconnectWatch(receive)
        try:
            if p.latency_s > 0:
                await asyncio.wait([watch.task], timeout=p.latency_s)
                if watch.gone:
                    stats.streams_closed_early += 1
                    return
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            completed = await self._send_chunks(send, watch)
            if completed:
                stats.streams_completed += 1
            else:
                stats.streams_closed_early += 1
        finally:
            watch.stop()
            stats.leave()

    async def _send_chunks(self, send: Send, watch: DisconnectWatch) -> bool:
        p = self.plan
        head, prefix, suffix = self._templates()
        suffix_head = b'},"logprobs":null,"finish_reason":null}],"usage":'
        usage_null = b',"usage":null' if p.include_usage else b""
        if p.field == "refusal":
            first_delta = b'{"role":"assistant","content":null,"refusal":""}'
        else:
            first_delta = b'{"role":"assistant","content":"","refusal":null}'
        first = (
            head + b'[{"index":0,"delta":' + first_delta
            + b',"logprobs":null,"finish_reason":null}]' + usage_null + b"}\n\n"
        )  # fmt: skip
        await send({"type": "http.response.body", "body": first, "more_body": True})

        tokens = p.tokens
        stop_at = p.cut_after if p.cut_after is not None else p.stall_after
        limit = len(tokens) if stop_at is None else min(len(tokens), stop_at)
        record = self.record
        if record is not None:
            record.chunks = 0
            record.usage = billed_usage(p.usage, 0)
        loop = asyncio.get_running_loop()
        interval = 1.0 / p.tokens_per_second if p.tokens_per_second > 0 else 0.0
        start = last_write = loop.time()
        i = 0
        while i < limit:
            if watch.gone:
                return False
            if interval:
                due = max(start + (i + 1) * interval, last_write + MIN_WRITE_INTERVAL_S)
                now = loop.time()
                if due > now:
                    await asyncio.sleep(due - now)
                    now = loop.time()
                    if watch.gone:
                        return False
                end = min(limit, max(i + 1, int((now - start) / interval)))
            else:
                now = loop.time()
                end = min(limit, i + _FAST_BATCH)
            if p.continuous_usage:
                body = b"".join([
                    prefix + _json_str(t) + suffix_head + _dumps(_so_far(p.usage, n + 1)) + b"}\n\n"
                    for n, t in enumerate(tokens[i:end], start=i)
                ])  # fmt: skip
            else:
                body = b"".join([prefix + _json_str(t) + suffix for t in tokens[i:end]])
            await send({"type": "http.response.body", "body": body, "more_body": True})
            if record is not None:
                record.chunks = end
                record.usage = billed_usage(p.usage, end)
            last_write = now
            i = end
            if not interval:
                await asyncio.sleep(0)
        if watch.gone:
            return False
        if p.cut_after is not None:
            raise SimulatedDisconnect(f"cut after {limit} chunks")
        if p.stall_after is not None:
            while await watch.wait(p.keepalive_s):
                await send({"type": "http.response.body", "body": KEEP_ALIVE, "more_body": True})
            return False

        tail = (
            head + b'[{"index":0,"delta":{},"logprobs":null,"finish_reason":'
            + _json_str(p.finish_reason) + b"}]" + usage_null + b"}\n\n"
        )  # fmt: skip
        if p.include_usage:
            tail += head + b'[],"usage":' + _dumps(p.usage) + b"}\n\n"
        tail += b"data: [DONE]\n\n"
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        return True


def _so_far(usage: dict[str, Any], completion_tokens: int) -> dict[str, Any]:
    """The usage of a stream ``completion_tokens`` chunks in (continuous usage)."""
    return {
        **usage,
        "completion_tokens": completion_tokens,
        "total_tokens": usage["prompt_tokens"] + completion_tokens,
    }


def billed_usage(usage: dict[str, Any], completion_tokens: int) -> dict[str, int]:
    """What the request log says a stream billed once ``completion_tokens`` chunks went."""
    return {
        "prompt_tokens": int(usage["prompt_tokens"]),
        "completion_tokens": completion_tokens,
        "cached_tokens": int((usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)),
    }


class DropConnection(Response):
    """Response that sends its status line and headers, then drops the connection."""

    def __init__(self, stats: Stats | None = None) -> None:
        """``stats.leave()`` is called once the connection is dropped."""
        self.stats = stats
        self.status_code = 200
        self.background = None
        self.body = b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Start a JSON response and abort it before the body."""
        try:
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            raise SimulatedDisconnect("connection dropped before the body")
        finally:
            if self.stats is not None:
                self.stats.leave()
