"""The provider interface the job kinds are written against."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Protocol

from aijobs.errors import ProviderError

__all__ = ["CallGuard", "ChatOutcome", "ChatRequest", "EmbeddingBatch", "Provider", "ProviderError"]


class CallGuard:
    """A provider call that can be cut from outside: the watchdog's handle on it.

    The provider registers how to close its open response (``watch``); when the attempt
    runs out of time the watchdog calls ``expire``, which closes it from the watchdog's
    thread, so a stream that trickles or stalls without ever timing out a read still ends.
    """

    def __init__(self, deadline: float, *, call_limit_s: float | None = None) -> None:
        #: time.monotonic() when the whole attempt must be over.
        self.deadline = deadline
        self.call_limit_s = call_limit_s
        self.expired: str | None = None
        self._close: Callable[[], None] | None = None
        self._call_deadline = deadline
        self._lock = threading.Lock()

    @property
    def due(self) -> float:
        """When the current call (or the attempt) must end."""
        return self._call_deadline

    @contextmanager
    def watch(self, close: Callable[[], None]) -> Iterator[None]:
        """Around one provider call: ``close`` cuts it."""
        limit = self.call_limit_s
        with self._lock:
            self._close = close
            self._call_deadline = (
                self.deadline if limit is None else min(self.deadline, time.monotonic() + limit)
            )
            expired = self.expired
        if expired:
            close()
        try:
            yield
        finally:
            with self._lock:
                self._close = None
                self._call_deadline = self.deadline

    def expire(self, reason: str) -> None:
        """Time is up: mark it and cut the call in progress, if any."""
        with self._lock:
            if self.expired is None:
                self.expired = reason
            close = self._close
        if close is not None:
            with suppress(Exception):  # closing a half-read response may itself raise
                close()


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A chat completion request, provider-neutral."""

    model: str
    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    temperature: float | None = None
    response_format: dict[str, Any] | None = None
    max_completion_tokens: int | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    reasoning_effort: str | None = None
    #: Provider-specific fields, merged into the request's body as they are.
    extra_body: dict[str, Any] | None = None

    def options(self) -> dict[str, Any]:
        """The optional parameters that are set, by their OpenAI names."""
        fields = {
            "max_tokens": self.max_tokens, "max_completion_tokens": self.max_completion_tokens,
            "temperature": self.temperature, "top_p": self.top_p, "stop": self.stop,
            "seed": self.seed, "reasoning_effort": self.reasoning_effort,
            "response_format": self.response_format,
        }  # fmt: skip
        return {name: value for name, value in fields.items() if value is not None}


@dataclass(slots=True)
class ChatOutcome:
    """How a chat stream ended."""

    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    refusal: str | None = None
    stopped: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EmbeddingBatch:
    """Vectors for one request, in input order, as concatenated little-endian float32."""

    vectors: bytes
    dimensions: int
    count: int
    prompt_tokens: int


class Provider(Protocol):
    """Something that streams chat completions and embeds texts."""

    name: str

    def stream_chat(
        self,
        request: ChatRequest,
        on_text: Callable[[str], None],
        should_stop: Callable[[], bool],
        guard: CallGuard | None = None,
    ) -> ChatOutcome:
        """Stream ``request``, calling ``on_text`` per piece of text.

        Between pieces it asks ``should_stop``; when true it closes the upstream
        stream and returns with ``stopped`` set. ``guard`` lets the watchdog cut the
        call. Raises ``ProviderError``.
        """
        ...

    def embed(
        self,
        model: str,
        inputs: list[str],
        dimensions: int | None,
        guard: CallGuard | None = None,
    ) -> EmbeddingBatch:
        """Embed ``inputs`` in one request. Raises ``ProviderError``."""
        ...
