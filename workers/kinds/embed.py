"""The ``embed`` kind: many texts, split to the provider's limits, embedded in order.

Batches run a few at a time, each through the fleet-wide limiter; a failed request is
retried alone, and each finished batch is stored at once, so a later attempt of the
job only requests the batches still missing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from aijobs.errors import ErrorCode, ProviderError
from aijobs.kinds.base import BatchStore, Kind, KindContext
from aijobs.providers.base import CallGuard, EmbeddingBatch, Provider
from aijobs.schemas import EmbedInput, JobKind
from aijobs.settings import Settings


def text_tokens(text: str) -> int:
    """A provider-side token estimate of one text (~4 characters a token, at least 1)."""
    return max(1, len(text) // 4)


def plan_batches(texts: list[str], *, max_inputs: int, max_tokens: int) -> list[tuple[int, int]]:
    """Split ``texts`` into (start, end) ranges of at most ``max_inputs`` and ``max_tokens``."""
    batches: list[tuple[int, int]] = []
    start, tokens = 0, 0
    for i, text in enumerate(texts):
        cost = text_tokens(text)
        if i > start and (i - start >= max_inputs or tokens + cost > max_tokens):
            batches.append((start, i))
            start, tokens = i, 0
        tokens += cost
    if start < len(texts):
        batches.append((start, len(texts)))
    return batches


@dataclass(frozen=True, slots=True)
class EmbedLimits:
    """How the work is split and paced."""

    max_inputs: int
    max_tokens: int
    concurrency: int
    batch_retries: int


@dataclass(frozen=True, slots=True)
class EmbedOutput:
    """What an embedding job produced (the vectors themselves are in the store)."""

    count: int
    dimensions: int
    usage: dict[str, int] | None
    stopped: bool
    done: int = 0

    def result(self) -> dict[str, Any]:
        """The job's ``result`` as stored in its row; the API adds the vectors."""
        if self.stopped:
            return {"count": self.count, "dimensions": self.dimensions, "embedded": self.done}
        return {"count": self.count, "dimensions": self.dimensions}


def run_embed(
    job: EmbedInput,
    provider: Provider,
    store: BatchStore,
    *,
    limits: EmbedLimits,
    admit: Callable[[int], None],
    backoff_s: Callable[[int, float | None], float],
    on_progress: Callable[[int, int], None],
    should_stop: Callable[[], bool],
    guard: CallGuard | None = None,
) -> EmbedOutput:
    """Embed every input; raises ``ProviderError`` when a batch keeps failing, and lets
    ``admit``'s ``WaitForBudget`` through (the batches stored so far stay)."""
    texts = [job.input] if isinstance(job.input, str) else list(job.input)
    plan = plan_batches(texts, max_inputs=limits.max_inputs, max_tokens=limits.max_tokens)
    stored = store.stored()
    dims = set(stored.values())
    done_inputs = sum(end - start for i, (start, end) in enumerate(plan) if i in stored)
    failed = threading.Event()
    lock = threading.Lock()
    tokens_used = 0

    def stop() -> bool:
        return failed.is_set() or should_stop()

    def run_batch(index: int, start: int, end: int) -> EmbeddingBatch | None:
        nonlocal tokens_used
        batch = texts[start:end]
        cost = sum(text_tokens(t) for t in batch)
        for try_ in range(limits.batch_retries + 1):
            if stop():
                return None
            admit(cost)
            try:
                result = provider.embed(job.model, batch, job.dimensions, guard)
            except ProviderError as exc:
                if not exc.retryable or try_ == limits.batch_retries:
                    raise
                time.sleep(backoff_s(try_ + 1, exc.retry_after_s))
                continue
            store.save(index, start, result)
            with lock:
                tokens_used += result.prompt_tokens
            return result
        return None

    pending = [(i, s, e) for i, (s, e) in enumerate(plan) if i not in stored]
    if pending:
        with ThreadPoolExecutor(limits.concurrency, thread_name_prefix="aijobs-embed") as pool:
            futures: dict[Future[EmbeddingBatch | None], tuple[int, int]] = {
                pool.submit(run_batch, i, s, e): (s, e) for i, s, e in pending
            }
            remaining = set(futures)
            while remaining:
                finished, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                for future in finished:
                    if future.exception() is not None:
                        failed.set()
                        continue
                    result = future.result()
                    if result is not None:
                        dims.add(result.dimensions)
                        start, end = futures[future]
                        done_inputs += end - start
                        on_progress(done_inputs, len(texts))
            errors = [f.exception() for f in futures if f.exception() is not None]
            if errors:
                raise errors[0]  # type: ignore[misc]
    if len(dims) > 1:
        raise ProviderError(
            ErrorCode.PROVIDER_ERROR,
            f"batches came back with different dimensions: {sorted(dims)}",
            retryable=False,
        )
    stopped = should_stop() and done_inputs < len(texts)
    usage = {"prompt_tokens": tokens_used, "total_tokens": tokens_used}
    return EmbedOutput(len(texts), next(iter(dims), 0), usage, stopped, done_inputs)


def _run(job: EmbedInput, ctx: KindContext) -> EmbedOutput:
    settings = ctx.settings
    limits = EmbedLimits(
        max_inputs=settings.embed_batch_size,
        max_tokens=settings.embed_batch_tokens,
        concurrency=settings.embed_concurrency,
        batch_retries=settings.embed_batch_retries,
    )
    return run_embed(
        job,
        ctx.provider,
        ctx.batches,
        limits=limits,
        admit=ctx.admit,
        backoff_s=ctx.backoff_s,
        on_progress=ctx.progress,
        should_stop=ctx.should_stop,
        guard=ctx.guard,
    )


def _no_estimate(_job: EmbedInput, _settings: Settings) -> int:
    return 0  # each batch is admitted on its own, as it goes


KIND = Kind(JobKind.EMBED, _no_estimate, _run)
