"""Percentiles and the small statistics that benchmark reports share."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of an already sorted list; NaN when empty."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass(frozen=True, slots=True)
class Percentiles:
    """p50, p90, p99 and max of a sample, in the sample's unit."""

    count: int
    p50: float
    p90: float
    p99: float
    max: float

    def scaled(self, factor: float) -> Percentiles:
        """The same in another unit (``scaled(1e3)``: seconds to milliseconds)."""
        return Percentiles(
            self.count, self.p50 * factor, self.p90 * factor, self.p99 * factor, self.max * factor
        )

    def as_dict(self) -> dict[str, float]:
        """For JSON."""
        return asdict(self)


def percentiles(values: Iterable[float]) -> Percentiles:
    """p50/p90/p99/max of ``values`` (NaN for an empty sample)."""
    ordered = sorted(values)
    return Percentiles(
        count=len(ordered),
        p50=percentile(ordered, 0.50),
        p90=percentile(ordered, 0.90),
        p99=percentile(ordered, 0.99),
        max=ordered[-1] if ordered else math.nan,
    )


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an interval ending frees its slot first)."""
    spans = list(intervals)
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    best = current = 0
    for _, step in edges:  # at a tie, -1 sorts first
        current += step
        best = max(best, current)
    return best


def ratio(ours: float | None, baseline: float | None) -> float | None:
    """``ours / baseline``, or None when either is missing, NaN or the baseline is zero."""
    if ours is None or baseline is None or math.isnan(ours) or math.isnan(baseline):
        return None
    return ours / baseline if baseline else None
