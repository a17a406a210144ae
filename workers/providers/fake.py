"""A provider that answers from a script, in memory: for tests of the kinds and the runner
without HTTP (the simulator is the real-wire double; this is the small one).

Each chat call takes the next ``FakeAnswer`` (the last one repeats); each embedding call
returns deterministic vectors of the requested width.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aijobs.errors import ProviderError
from aijobs.providers.base import CallGuard, ChatOutcome, ChatRequest, EmbeddingBatch


@dataclass(frozen=True, slots=True)
class FakeAnswer:
    """One scripted chat answer: its pieces of text, how it ends, or the error it raises
    (after ``fail_after`` pieces)."""

    pieces: Sequence[str] = ("Hello", " world")
    finish_reason: str = "stop"
    refusal: str | None = None
    error: ProviderError | None = None
    fail_after: int = 0


@dataclass
class FakeProvider:
    """Scripted answers; every request is kept in ``requests`` for the test to read."""

    answers: list[FakeAnswer] = field(default_factory=lambda: [FakeAnswer()])
    dimensions: int = 4
    embed_errors: list[ProviderError] = field(default_factory=list)
    name: str = "fake"
    requests: list[ChatRequest] = field(default_factory=list)
    embedded: list[list[str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def stream_chat(
        self,
        request: ChatRequest,
        on_text: Callable[[str], None],
        should_stop: Callable[[], bool],
        guard: CallGuard | None = None,
    ) -> ChatOutcome:
        """Play the next scripted answer."""
        with self._lock:
            self.requests.append(request)
            answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if answer.error is not None and answer.fail_after == 0:
            raise answer.error
        outcome = ChatOutcome()
        for i, piece in enumerate(answer.pieces):
            if answer.error is not None and i == answer.fail_after:
                raise answer.error
            on_text(piece)
            if should_stop():
                outcome.stopped = True
                return outcome
        words = sum(len(p.split()) for p in answer.pieces)
        outcome.finish_reason = answer.finish_reason
        outcome.refusal = answer.refusal
        outcome.usage = {"prompt_tokens": 3, "completion_tokens": words,
                         "total_tokens": 3 + words}  # fmt: skip
        return outcome

    def embed(
        self,
        model: str,
        inputs: list[str],
        dimensions: int | None,
        guard: CallGuard | None = None,
    ) -> EmbeddingBatch:
        """Deterministic vectors: each text's hash spread over ``dimensions`` floats."""
        with self._lock:
            self.embedded.append(list(inputs))
            error = self.embed_errors.pop(0) if self.embed_errors else None
        if error is not None:
            raise error
        width = dimensions or self.dimensions
        blob = b"".join(_vector(text, width) for text in inputs)
        tokens = sum(max(1, len(t) // 4) for t in inputs)
        return EmbeddingBatch(vectors=blob, dimensions=width, count=len(inputs),
                              prompt_tokens=tokens)  # fmt: skip


def _vector(text: str, width: int) -> bytes:
    digest = hashlib.sha256(text.encode()).digest()
    values = [(digest[i % len(digest)] - 128) / 128 for i in range(width)]
    return struct.pack(f"<{width}f", *values)
