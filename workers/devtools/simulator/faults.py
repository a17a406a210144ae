"""Scripted faults: a FIFO queue of specs, each consumed by the next request it matches.

A spec is a JSON object ``{"kind": ..., <options>}``; see :class:`FaultSpec` for the fields.
Matching is in queue order: the first pending spec whose filters match the request is used
(and its ``times`` counter decremented), so specs with different filters can be queued at once.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal, Self

FaultKind = Literal[
    "rate_limit",
    "insufficient_quota",
    "bad_request",
    "server_error",
    "cut",
    "trickle",
    "stall",
    "hang",
    "refusal",
    "invalid_json",
    "schema_violation",
    "length",
    "content_filter",
]
FAULT_KINDS: frozenset[str] = frozenset(FaultKind.__args__)  # type: ignore[attr-defined]
CHAT_ONLY_KINDS: frozenset[str] = frozenset(
    {"refusal", "invalid_json", "schema_violation", "length", "content_filter"}
)
RATE_LIMIT_HEADER_MODES: frozenset[str] = frozenset(
    {"all", "retry_after_only", "retry_after_ms_only", "reset_only", "none"}
)
Endpoint = Literal["chat", "embeddings"]
JsonMode = Literal["json_object", "json_schema"] | None


@dataclass(slots=True)
class FaultSpec:
    """One scripted fault.

    Attributes:
        kind: what happens (see the module docs of :mod:`aijobs.devtools.simulator` for each kind).
        model: only requests for this model match (``None``: any model).
        endpoint: only ``"chat"`` or ``"embeddings"`` requests match (``None``: both; kinds in
            :data:`CHAT_ONLY_KINDS` never match embeddings). ``invalid_json`` only matches chat
            requests with a ``json_schema``/``json_object`` response format and
            ``schema_violation`` only those with ``json_schema``.
        times: how many requests consume this spec.
        retry_after_s: ``rate_limit``: advertised wait.
        headers: ``rate_limit``: which headers to send: ``all``, ``retry_after_only``
            (``retry-after``), ``retry_after_ms_only`` (``retry-after-ms``), ``reset_only``
            (the ``x-ratelimit-*`` headers) or ``none``.
        status: ``server_error`` (default 500) / ``bad_request`` (default 400) status override.
        code: error ``code`` override (``bad_request``: default null).
        message: error message override.
        param: ``bad_request``: the error's ``param``.
        after_chunks: ``cut``: content chunks sent before the connection is dropped;
            ``stall``: content chunks sent before the keep-alives start.
        seconds: ``hang``: delay before answering normally.
        interval_s: ``trickle``: pause before each chunk (streams) or body piece (non-streamed
            answers); ``stall``: pause between keep-alives.
    """

    kind: FaultKind
    model: str | None = None
    endpoint: Endpoint | None = None
    times: int = 1
    retry_after_s: float = 1.0
    headers: str = "all"
    status: int | None = None
    code: str | None = None
    message: str | None = None
    param: str | None = None
    after_chunks: int = 0
    seconds: float = 10.0
    interval_s: float = 1.0

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        """Validate and build a spec from its JSON form (``ValueError`` when invalid)."""
        if not isinstance(data, dict):
            raise ValueError("a fault spec must be an object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
        kind = data.get("kind")
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {sorted(FAULT_KINDS)}, got {kind!r}")
        spec = cls(**data)
        spec._check()
        return spec

    def _check(self) -> None:
        def _num(name: str, value: Any, lo: float) -> None:
            if isinstance(value, bool) or not isinstance(value, int | float) or value < lo:
                raise ValueError(f"{name} must be a number >= {lo}")

        if self.model is not None and not isinstance(self.model, str):
            raise ValueError("model must be a string")
        if self.endpoint not in (None, "chat", "embeddings"):
            raise ValueError("endpoint must be 'chat' or 'embeddings'")
        if isinstance(self.times, bool) or not isinstance(self.times, int) or self.times < 1:
            raise ValueError("times must be an integer >= 1")
        _num("retry_after_s", self.retry_after_s, 0)
        _num("seconds", self.seconds, 0)
        _num("interval_s", self.interval_s, 0.001)
        if isinstance(self.after_chunks, bool) or not isinstance(self.after_chunks, int):
            raise ValueError("after_chunks must be an integer")
        _num("after_chunks", self.after_chunks, 0)
        if self.headers not in RATE_LIMIT_HEADER_MODES:
            raise ValueError(f"headers must be one of {sorted(RATE_LIMIT_HEADER_MODES)}")
        if self.status is not None and (
            isinstance(self.status, bool)
            or not isinstance(self.status, int)
            or not 400 <= self.status <= 599
        ):
            raise ValueError("status must be an HTTP error status (400-599)")
        for name in ("code", "message", "param"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a string or null")

    def matches(self, endpoint: Endpoint, model: str | None, json_mode: JsonMode) -> bool:
        """Whether a request with these properties consumes this spec."""
        if self.endpoint is not None and self.endpoint != endpoint:
            return False
        if self.model is not None and self.model != model:
            return False
        if endpoint != "chat" and self.kind in CHAT_ONLY_KINDS:
            return False
        if self.kind == "invalid_json":
            return json_mode is not None
        if self.kind == "schema_violation":
            return json_mode == "json_schema"
        return True

    def detail(self, streamed: bool) -> dict[str, Any]:
        """The parameters that shape what this kind does (for the request log); chunk counts
        only for ``streamed`` answers, as a non-streamed one has no chunks."""
        if self.kind == "rate_limit":
            return {"retry_after_s": self.retry_after_s}
        if self.kind == "server_error":
            return {"status": self.status or 500}
        if self.kind == "bad_request":
            return {"status": self.status or 400}
        if self.kind == "cut":
            return {"after_chunks": self.after_chunks} if streamed else {}
        if self.kind == "stall":
            if not streamed:
                return {"interval_s": self.interval_s}
            return {"after_chunks": self.after_chunks, "interval_s": self.interval_s}
        if self.kind == "trickle":
            return {"interval_s": self.interval_s}
        if self.kind == "hang":
            return {"seconds": self.seconds}
        return {}

    def as_dict(self) -> dict[str, Any]:
        """JSON form of the spec (``times`` is the remaining count)."""
        return dataclasses.asdict(self)


class FaultQueue:
    """FIFO of pending :class:`FaultSpec` (used from the event loop only)."""

    def __init__(self) -> None:
        """Create an empty queue."""
        self._pending: deque[FaultSpec] = deque()

    def add(self, specs: list[FaultSpec]) -> None:
        """Append specs in order."""
        self._pending.extend(specs)

    def clear(self) -> int:
        """Drop every pending spec; return how many there were."""
        count = len(self._pending)
        self._pending.clear()
        return count

    def take(self, endpoint: Endpoint, model: str | None, json_mode: JsonMode) -> FaultSpec | None:
        """Consume one use of the first matching spec, or return ``None``."""
        for spec in self._pending:
            if spec.matches(endpoint, model, json_mode):
                spec.times -= 1
                if spec.times <= 0:
                    self._pending.remove(spec)
                return dataclasses.replace(spec, times=1)
        return None

    def pending(self) -> list[dict[str, Any]]:
        """JSON form of the pending specs, in order."""
        return [s.as_dict() for s in self._pending]

    def __len__(self) -> int:
        """Number of pending specs."""
        return len(self._pending)
