"""A job's usage: what each attempt was billed, and the totals the job record shows.

Every attempt that ran is one entry (retries included: what the job really cost). When
the provider said what it billed (its ``usage``, or vLLM-style usage in every chunk of a
stream cut short), the entry is exact; when an attempt ended before the provider could
say (a connection cut mid-stream), its completion tokens are the chunks received and its
prompt tokens an estimate, and the entry says ``estimated``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aijobs.spend.prices import Price, cost_usd, price_for


@dataclass(frozen=True, slots=True)
class AttemptUsage:
    """What one attempt of a job was billed."""

    attempt: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = None
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, Any]:
        """The entry as the job record's ``usage.attempts`` lists it."""
        return {
            "attempt": self.attempt,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": self.cost_usd,
            "estimated": self.estimated,
        }


def priced(
    attempt: int,
    model: str,
    prices: Mapping[str, Price],
    *,
    prompt: int,
    completion: int,
    cached: int,
    estimated: bool = False,
) -> AttemptUsage:
    """An attempt's usage with its cost under ``prices``."""
    cost = cost_usd(price_for(prices, model), prompt=prompt, completion=completion, cached=cached)
    return AttemptUsage(attempt, prompt, completion, cached, cost, estimated)


def provider_tokens(usage: Mapping[str, Any]) -> tuple[int, int, int]:
    """(prompt, completion, cached) of a provider's ``usage`` object (or ours)."""
    details = usage.get("prompt_tokens_details") or {}
    cached = usage.get("cached_tokens", details.get("cached_tokens") if details else 0)
    return (
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
        int(cached or 0),
    )


def job_usage(attempts: Iterable[AttemptUsage]) -> dict[str, Any]:
    """The job record's ``usage``: totals over every attempt, and the attempts."""
    entries = sorted(attempts, key=lambda a: a.attempt)
    costs = [a.cost_usd for a in entries if a.cost_usd is not None]
    prompt = sum(a.prompt_tokens for a in entries)
    completion = sum(a.completion_tokens for a in entries)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cached_tokens": sum(a.cached_tokens for a in entries),
        "cost_usd": round(sum(costs), 8) if costs else None,
        "estimated": any(a.estimated for a in entries),
        "attempts": [a.as_dict() for a in entries],
    }
