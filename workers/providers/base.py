"""The provider interface the job kinds are written against."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class ProviderError(Exception):
    """Raised when a provider call fails; says whether trying again can help."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s

    def as_error(self) -> dict[str, Any]:
        """The job ``error`` object for this failure."""
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A chat completion request, provider-neutral."""

    model: str
    messages: list[dict[str, str]]
    max_tokens: int | None = None
    temperature: float | None = None
    response_format: dict[str, Any] | None = None


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
    ) -> ChatOutcome:
        """Stream ``request``, calling ``on_text`` per piece of text.

        Between pieces it asks ``should_stop``; when true it closes the upstream
        stream and returns with ``stopped`` set. Raises ``ProviderError``.
        """
        ...

    def embed(self, model: str, inputs: list[str], dimensions: int | None) -> EmbeddingBatch:
        """Embed ``inputs`` in one request. Raises ``ProviderError``."""
        ...
