"""The embed kind against the fake provider and an in-memory batch store."""

from __future__ import annotations

import threading

import pytest

from aijobs.errors import ErrorCode, ProviderError, WaitForBudget
from aijobs.kinds.embed import EmbedLimits, plan_batches, run_embed
from aijobs.providers.base import EmbeddingBatch
from aijobs.providers.fake import FakeProvider
from aijobs.schemas import EmbedInput

LIMITS = EmbedLimits(max_inputs=3, max_tokens=1000, concurrency=2, batch_retries=1)


class MemoryBatches:
    def __init__(self, stored: dict[int, EmbeddingBatch] | None = None) -> None:
        self.rows: dict[int, EmbeddingBatch] = dict(stored or {})
        self.lock = threading.Lock()

    def stored(self) -> dict[int, int]:
        return {i: b.dimensions for i, b in self.rows.items()}

    def save(self, batch: int, start: int, result: EmbeddingBatch) -> None:
        with self.lock:
            self.rows[batch] = result


def embed(texts: list[str], provider: FakeProvider, store: MemoryBatches,
          admit: object = None) -> object:  # fmt: skip
    job = EmbedInput(kind="embed", model="m", input=texts, dimensions=4)
    return run_embed(job, provider, store, limits=LIMITS,
                     admit=admit or (lambda _tokens: None), backoff_s=lambda *_: 0.0,
                     on_progress=lambda *_: None, should_stop=lambda: False)  # fmt: skip


def test_batches_respect_both_caps() -> None:
    assert plan_batches(["a"] * 7, max_inputs=3, max_tokens=1000) == [(0, 3), (3, 6), (6, 7)]
    assert plan_batches(["x" * 400] * 3, max_inputs=10, max_tokens=150) == [(0, 1), (1, 2), (2, 3)]


def test_every_text_is_embedded_once_in_order_and_stored_by_batch() -> None:
    provider, store = FakeProvider(), MemoryBatches()
    out = embed([f"t{i}" for i in range(7)], provider, store)
    assert out.result() == {"count": 7, "dimensions": 4}  # type: ignore[attr-defined]
    assert sorted(store.rows) == [0, 1, 2]
    asked = sorted(t for batch in provider.embedded for t in batch)
    assert asked == sorted(f"t{i}" for i in range(7))


def test_a_failed_batch_is_retried_alone_and_stored_batches_are_skipped() -> None:
    failure = ProviderError(ErrorCode.STREAM_INTERRUPTED, "cut", retryable=True)
    first = FakeProvider(embed_errors=[failure])
    store = MemoryBatches()
    embed([f"t{i}" for i in range(6)], first, store)
    assert len(first.embedded) == 3  # two batches, one of them twice
    again = FakeProvider()
    embed([f"t{i}" for i in range(6)], again, store)
    assert again.embedded == []  # a new attempt asks only for what is missing


def test_a_long_wait_for_budget_stops_the_batches_and_is_raised() -> None:
    def admit(_tokens: int) -> None:
        raise WaitForBudget(30.0)

    with pytest.raises(WaitForBudget):
        embed(["a", "b", "c", "d"], FakeProvider(), MemoryBatches(), admit)
