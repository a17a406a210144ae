"""The retry policy and its pure backoff."""

from __future__ import annotations

import random

from aijobs.worker.retry import compute_backoff_s


def test_backoff_is_full_jitter_under_a_growing_cap_and_honours_hints() -> None:
    rng = random.Random(7)
    for attempt in range(1, 8):
        ceiling = min(60.0, 1.0 * 2 ** (attempt - 1))
        draws = [compute_backoff_s(attempt, base_s=1, cap_s=60, rng=rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.8
    hinted = compute_backoff_s(3, base_s=1, cap_s=60, hint_s=2.0, rng=rng)
    assert 2.0 <= hinted <= 2.2
