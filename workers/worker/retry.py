"""How long to wait before the next attempt: a pure function."""

from __future__ import annotations

import random


def backoff_ceiling_s(attempt: int, *, base_s: float, cap_s: float) -> float:
    """The most that ``compute_backoff_s`` waits after attempt ``attempt`` without a hint."""
    return min(cap_s, base_s * 2 ** max(0, attempt - 1))


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
