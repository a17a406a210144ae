"""What an attempt's provider calls were billed, counted as they are made.

The attempt hands its kind a ``MeteredProvider``: every call's usage is added up,
whichever kind makes it (one generation, an extraction's repair rounds, embedding
batches), and a call that fails still counts what it cost — exactly when the provider
said (its usage, or usage-so-far in every chunk), else estimated from the chunks received.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aijobs.errors import JobFailed
from aijobs.providers.base import CallGuard, ChatOutcome, ChatRequest, EmbeddingBatch, Provider
from aijobs.spend.prices import Price
from aijobs.spend.usage import AttemptUsage, priced, provider_tokens


def estimate_prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """~4 characters a token, and a few per message (what the provider did not say)."""
    total = 3
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):  # content parts: their text
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        total += 4 + (len(str(content or "")) + 3) // 4
    return total


class Meter:
    """The running sum of one attempt's usage."""

    def __init__(self, attempt: int, model: str, prices: Mapping[str, Price]) -> None:
        self.attempt = attempt
        self.model = model
        self.prices = prices
        self.prompt = 0
        self.completion = 0
        self.cached = 0
        self.estimated = False
        #: The call in progress: its prompt's estimate and the chunks received so far.
        self.live_prompt = 0
        self.live_chunks = 0
        # An embedding job calls from several threads at once.
        self._lock = threading.Lock()

    def chat(self, request: ChatRequest, usage: Mapping[str, Any] | None, chunks: int) -> None:
        """One chat call ended (or failed) with ``usage`` and ``chunks`` text pieces."""
        self.live_prompt = self.live_chunks = 0
        if usage:
            prompt, completion, cached = provider_tokens(usage)
        elif chunks:
            # Cut before the provider said: each chunk is about a token.
            prompt, completion, cached = estimate_prompt_tokens(request.messages), chunks, 0
            self.estimated = True
        else:
            return  # no answer came: nothing was billed
        self.prompt += prompt
        self.completion += completion
        self.cached += cached

    def embedded(self, prompt_tokens: int) -> None:
        """One embedding call's tokens."""
        with self._lock:
            self.prompt += prompt_tokens

    def running_tokens(self) -> int:
        """Tokens so far, the call in progress included (its estimate)."""
        return self.prompt + self.completion + self.live_prompt + self.live_chunks

    def running(self) -> AttemptUsage:
        """The usage so far, the call in progress included (estimated)."""
        return priced(
            self.attempt, self.model, self.prices,
            prompt=self.prompt + self.live_prompt, completion=self.completion + self.live_chunks,
            cached=self.cached, estimated=self.estimated or bool(self.live_chunks),
        )  # fmt: skip

    def result(self) -> AttemptUsage:
        """The attempt's usage, priced."""
        return priced(
            self.attempt, self.model, self.prices, prompt=self.prompt,
            completion=self.completion, cached=self.cached, estimated=self.estimated,
        )  # fmt: skip


class MeteredProvider:
    """``provider``, with every call's usage added to ``meter``; ``on_chunk`` hears each
    piece of text (the budget's watch)."""

    def __init__(self, provider: Provider, meter: Meter, on_chunk: Callable[[], None]) -> None:
        self.name = provider.name
        self._provider = provider
        self._meter = meter
        self._on_chunk = on_chunk

    def stream_chat(
        self,
        request: ChatRequest,
        on_text: Callable[[str], None],
        should_stop: Callable[[], bool],
        guard: CallGuard | None = None,
    ) -> ChatOutcome:
        """``Provider.stream_chat``, metered."""
        meter = self._meter
        meter.live_prompt = estimate_prompt_tokens(request.messages)
        meter.live_chunks = 0
        tick = self._on_chunk

        def counted(text: str) -> None:
            meter.live_chunks += 1
            on_text(text)
            tick()

        try:
            outcome = self._provider.stream_chat(request, counted, should_stop, guard)
        except JobFailed as failure:
            meter.chat(request, failure.usage, meter.live_chunks)
            raise
        meter.chat(request, outcome.usage, meter.live_chunks)
        return outcome

    def embed(
        self,
        model: str,
        inputs: list[str],
        dimensions: int | None,
        guard: CallGuard | None = None,
    ) -> EmbeddingBatch:
        """``Provider.embed``, metered."""
        batch = self._provider.embed(model, inputs, dimensions, guard)
        self._meter.embedded(batch.prompt_tokens)
        return batch
