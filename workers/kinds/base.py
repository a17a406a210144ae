"""What a job kind is: its wiring, and what an attempt offers the kind running in it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aijobs.providers.base import CallGuard, EmbeddingBatch, Provider
from aijobs.schemas import JobKind
from aijobs.settings import Settings


class BatchStore(Protocol):
    """Where an embedding job's finished batches go, and which are there already."""

    def stored(self) -> dict[int, int]:
        """Batch number -> dimensions of the batches stored so far."""
        ...

    def save(self, batch: int, start: int, result: EmbeddingBatch) -> None:
        """Store one finished batch."""
        ...


class KindOutput(Protocol):
    """What an attempt of any kind produced."""

    @property
    def usage(self) -> dict[str, int] | None:
        """Tokens used, when the provider said."""
        ...

    @property
    def stopped(self) -> bool:
        """Asked to stop early."""
        ...

    def result(self) -> dict[str, Any]:
        """The job's ``result`` object."""
        ...


class KindContext(Protocol):
    """What an attempt offers the kind running in it."""

    provider: Provider
    settings: Settings
    guard: CallGuard
    batches: BatchStore

    def text(self, text: str) -> None:
        """Generated text, as it comes (written to the job's stream)."""

    def new_round(self, round_: int) -> None:
        """An extraction's repair round starts: the text starts over."""

    def progress(self, done: int, total: int) -> None:
        """How many inputs are done (embeddings)."""

    def should_stop(self) -> bool:
        """Cancelled, superseded, timed out or handing off: stop between chunks."""

    def admit(self, tokens: int) -> None:
        """Spend the fleet's budget for one provider call of ``tokens``; waits a little,
        or raises ``WaitForBudget`` when the wait is too long to hold a worker slot."""

    def backoff_s(self, try_: int, hint_s: float | None) -> float:
        """How long to wait before retrying one provider call."""


@dataclass(frozen=True, slots=True)
class Kind:
    """One job kind's wiring."""

    name: JobKind
    #: Tokens charged to the budget before the attempt starts (0: the kind admits each
    #: of its calls itself, as embeddings do batch by batch).
    estimate: Callable[[Any, Settings], int]
    run: Callable[[Any, KindContext], KindOutput]
