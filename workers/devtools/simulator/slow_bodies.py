"""Non-streamed answers that are slow on the wire: trickled and stalled JSON bodies.

Both send the status line and headers at once, then keep the connection busy: a read
timeout never fires, only a total deadline on the client side ends them early.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from aijobs.devtools.simulator.stats import Stats
from aijobs.devtools.simulator.streaming import DisconnectWatch

TRICKLE_BODY_PIECES = 8
"""A trickled body arrives in this many pieces (fewer if it is shorter), one per interval."""

STALL_FILLER = b"\n"
"""What a stalled body sends per interval: JSON allows any amount of leading whitespace."""


def _json_headers(headers: dict[str, str], length: int | None) -> list[tuple[bytes, bytes]]:
    raw = [(b"content-type", b"application/json")]
    if length is not None:
        raw.append((b"content-length", str(length).encode()))
    raw.extend((k.encode(), v.encode()) for k, v in headers.items())
    return raw


class TrickledBody(Response):
    """A complete JSON answer sent in :data:`TRICKLE_BODY_PIECES` pieces, ``interval_s``
    apart; stops early if the client goes away."""

    def __init__(
        self, content: bytes, headers: dict[str, str], interval_s: float, stats: Stats
    ) -> None:
        """Prepare the answer; ``stats.leave()`` is called once it is over."""
        self.content = content
        self.interval_s = interval_s
        self.stats = stats
        self.status_code = 200
        self.background = None
        self.body = b""
        self.raw_headers = _json_headers(headers, len(content))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the headers, then one piece per interval."""
        watch = DisconnectWatch(receive)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            size = max(1, -(-len(self.content) // TRICKLE_BODY_PIECES))  # ceil: <= N pieces
            for start in range(0, len(self.content), size):
                if not await watch.wait(self.interval_s):
                    return
                piece = self.content[start : start + size]
                more = start + size < len(self.content)
                await send({"type": "http.response.body", "body": piece, "more_body": more})
        finally:
            watch.stop()
            self.stats.leave()


class StalledBody(Response):
    """A JSON answer that never comes: :data:`STALL_FILLER` every ``interval_s`` until the
    client goes away."""

    def __init__(self, headers: dict[str, str], interval_s: float, stats: Stats) -> None:
        """Prepare the answer; ``stats.leave()`` is called once the client is gone."""
        self.interval_s = interval_s
        self.stats = stats
        self.status_code = 200
        self.background = None
        self.body = b""
        self.raw_headers = _json_headers(headers, None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the headers, then filler until the client leaves."""
        watch = DisconnectWatch(receive)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            while await watch.wait(self.interval_s):
                await send({"type": "http.response.body", "body": STALL_FILLER, "more_body": True})
        finally:
            watch.stop()
            self.stats.leave()
