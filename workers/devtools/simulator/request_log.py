"""The request log: one record per chat/embeddings request, explaining what happened to it.

Records live in a bounded ring buffer (the oldest fall off) and are filled in while the
request runs: the outcome once admission decided it, the end once the answer is over.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

REQUESTS_KEPT = 100_000

#: How the exchange ended. ``open``: still running; ``completed``: the whole answer was sent;
#: ``error``: an error answer was sent; ``dropped``: the simulator dropped the connection
#: (``cut``); ``client_closed``: the client went away first; ``aborted``: the server stopped.
End = Literal["open", "completed", "error", "dropped", "client_closed", "aborted"]

#: Who decided the outcome: a random draw, a scripted fault, the RPM limiter, or nobody.
Source = Literal["chaos", "fault", "rpm_limit"] | None


@dataclass(slots=True)
class RequestRecord:
    """What one request was and what happened to it.

    Attributes:
        seq: position in the log since the last reset (1, 2, ...).
        endpoint: ``"chat"`` or ``"embeddings"``.
        key: :mod:`~aijobs.devtools.simulator.request_keys` key (``None``: unreadable body).
        model: the requested model, if any.
        stream: whether a streamed answer was asked for.
        started: arrival time (``time.time()``).
        outcome: ``ok``, a fault kind (``rate_limit``, ``server_error``, ``cut``, ``trickle``,
            ``stall``, ``hang``, ``refusal``, ...) or ``invalid_request`` / ``internal_error``.
        source: see :data:`Source`.
        odd_text: whether the answer's text was the odd (non-ASCII, line-separator) kind.
        status: HTTP status sent (``None`` while none was, e.g. the client left before it).
        end: see :data:`End`.
        ended: when the exchange ended (``time.time()``; ``None`` while open).
        chunks: content chunks sent (streams only).
        detail: the outcome's parameters (``retry_after_s``, ``after_chunks``, ``interval_s``,
            ``seconds``, ``status``).
        usage: what the answer billed (chat): ``prompt_tokens``, ``completion_tokens`` (the
            content chunks sent, for a stream cut short) and ``cached_tokens``.
        params: the generation parameters the request carried (``seed``, ``stop``,
            ``top_p``, ``response_format``, provider-specific fields ...), never its messages.
    """

    seq: int
    endpoint: str
    key: str | None
    model: str | None
    stream: bool
    started: float
    outcome: str | None = None
    source: Source = None
    odd_text: bool = False
    status: int | None = None
    end: End = "open"
    ended: float | None = None
    chunks: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, int] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def decide(self, outcome: str, source: Source, **detail: Any) -> None:
        """Set the outcome (and its parameters)."""
        self.outcome = outcome
        self.source = source
        self.detail.update(detail)

    def finish(self, end: End, status: int | None = None) -> None:
        """Record the end; only the first call counts (later layers see the same end)."""
        if self.end != "open":
            return
        self.end = end
        if status is not None:
            self.status = status
        self.ended = time.time()

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "seq": self.seq,
            "endpoint": self.endpoint,
            "key": self.key,
            "model": self.model,
            "stream": self.stream,
            "outcome": self.outcome,
            "source": self.source,
            "odd_text": self.odd_text,
            "status": self.status,
            "end": self.end,
            "started": self.started,
            "ended": self.ended,
            "chunks": self.chunks,
            "detail": dict(self.detail),
            "usage": None if self.usage is None else dict(self.usage),
            "params": dict(self.params),
        }


class RequestLog:
    """Ring buffer of the last ``maxlen`` :class:`RequestRecord` (event loop only)."""

    def __init__(self, maxlen: int = REQUESTS_KEPT) -> None:
        """Start empty."""
        self._records: deque[RequestRecord] = deque(maxlen=maxlen)
        self.total = 0

    def open(
        self, endpoint: str, key: str | None, model: str | None, stream: bool, started: float
    ) -> RequestRecord:
        """Append and return a new record."""
        self.total += 1
        record = RequestRecord(self.total, endpoint, key, model, stream, started)
        self._records.append(record)
        return record

    def entries(self, key: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        """JSON form of the kept records, oldest first, optionally only ``key``'s and those
        with ``seq > since``."""
        return [
            r.as_dict() for r in self._records if r.seq > since and (key is None or r.key == key)
        ]

    def __len__(self) -> int:
        """Number of records kept."""
        return len(self._records)
