"""An ASGI response that streams a job's events as Server-Sent Events.

It sends keep-alive comments on quiet spells, stops when the client goes away, and
drops a client whose socket stops taking data (it can resume by id), so a stalled
reader holds no buffer and no Redis connection.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from workers.events.protocol import Event

log = logging.getLogger(__name__)

KEEPALIVE = b": keep-alive\n\n"


def sse_frame(event: Event) -> bytes:
    """One event in the text/event-stream format (its data is one line of JSON)."""
    return f"id: {event.id}\nevent: {event.event}\ndata: {event.data}\n\n".encode()


class EventStreamResponse(Response):
    """Streams ``events`` (``None`` = keep-alive) until they end or the client leaves."""

    media_type = "text/event-stream"

    def __init__(
        self,
        events: AsyncIterator[Event | None],
        *,
        retry_ms: int,
        send_timeout_s: float,
        headers: dict[str, str],
    ) -> None:
        super().__init__(headers=headers, media_type=self.media_type)
        # A stream has no length: drop the Content-Length the base class computed.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.events = events
        self.retry_ms = retry_ms
        self.send_timeout_s = send_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        async with anyio.create_task_group() as group:

            async def stream() -> None:
                await self._stream(send)
                group.cancel_scope.cancel()

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(stream)
            group.start_soon(watch)
        aclose = getattr(self.events, "aclose", None)
        if aclose is not None:
            await aclose()

    async def _stream(self, send: Send) -> None:
        async def put(body: bytes, more: bool = True) -> None:
            with anyio.fail_after(self.send_timeout_s):
                await send({"type": "http.response.body", "body": body, "more_body": more})

        try:
            await put(f"retry: {self.retry_ms}\n\n".encode())
            async for event in self.events:
                await put(KEEPALIVE if event is None else sse_frame(event))
            await put(b"", more=False)
        except TimeoutError:
            log.info("dropped an event reader that stopped reading")
        except OSError:
            pass  # the client went away mid-send
