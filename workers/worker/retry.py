"""When to try a failed attempt again: a policy object, and the pure backoff it uses."""

from __future__ import annotations

import random
from dataclasses import dataclass


def backoff_ceiling_s(attempt: int, *, base_s: float, cap_s: float) -> float:
    """The most that ``compute_backoff_s`` waits after attempt ``attempt`` without a hint."""
    return min(cap_s, base_s * 2.0 ** max(0, attempt - 1))


def compute_backoff_s(
    attempt: int,
    *,
    base_s: float,
    cap_s: float,
    hint_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    A provider's hint (retry-after) is honoured as given, plus a little jitter so a
    fleet does not return in lockstep; otherwise exponential backoff with full jitter.
    """
    draw = (rng or random).uniform
    if hint_s is not None:
        return hint_s + draw(0.0, min(1.0, hint_s * 0.1))
    return draw(0.0, backoff_ceiling_s(attempt, base_s=base_s, cap_s=cap_s))


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again after ``wait_s``; ``ceiling_s`` is the backoff's cap when no hint set it."""

    wait_s: float
    ceiling_s: float | None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Whether a failed attempt is tried again, and after how long.

    An error that cannot succeed on a second try (``retryable`` false) is never retried;
    others are, until the job has spent ``max_attempts`` (failed plus lost attempts).
    """

    max_attempts: int
    base_s: float
    cap_s: float

    def after(
        self, attempt: int, *, retryable: bool, spent: int, hint_s: float | None
    ) -> Retry | None:
        """The retry after attempt number ``attempt`` failed, or None to give up."""
        if not retryable or spent >= self.max_attempts:
            return None
        wait_s = compute_backoff_s(attempt, base_s=self.base_s, cap_s=self.cap_s, hint_s=hint_s)
        ceiling = None if hint_s is not None else backoff_ceiling_s(
            attempt, base_s=self.base_s, cap_s=self.cap_s
        )  # fmt: skip
        return Retry(wait_s, ceiling)
