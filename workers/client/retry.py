"""When the client tries again, and how long it waits: a policy and pure functions.

Retried: connection errors (refused, reset, timed out, cut mid-answer) and the answers
429, 502, 503 and 504. A 429 or 503 that says ``Retry-After`` is waited out exactly (plus
a little jitter so a crowd of clients does not come back in step); anything else waits
an exponential backoff with full jitter. Every request may be retried: reads are
idempotent, a cancel of a cancelled job changes nothing, and a submit carries an
``Idempotency-Key`` that makes its retries return the one job it created.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from aijobs.client.errors import ApiUnavailable

RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard the client tries.

    - ``attempts``: tries of one request, the first included (1: never retry);
    - ``base_s``, ``cap_s``: the backoff, ``uniform(0, min(cap_s, base_s * 2**n))``;
    - ``max_retry_after_s``: a ``Retry-After`` longer than this is not waited out: the
      ``ApiError`` is raised with its ``retry_after_s``;
    - ``reconnect_for_s``: how long ``events()`` keeps reconnecting without hearing from
      the API before it raises ``ApiUnavailable`` (``None``: for ever). A stream that
      delivers anything starts the count again, so a long job is never cut short.
    """

    attempts: int = 5
    base_s: float = 0.25
    cap_s: float = 4.0
    max_retry_after_s: float = 60.0
    reconnect_for_s: float | None = 300.0
    statuses: frozenset[int] = field(default=RETRY_STATUSES)

    @classmethod
    def never(cls) -> RetryPolicy:
        """One try per request; ``events()`` still resumes, for at most 10 s."""
        return cls(attempts=1, reconnect_for_s=10.0)

    def backoff_s(self, failures: int) -> float:
        """The wait after ``failures`` failures in a row (1, 2, ...)."""
        return compute_backoff(failures, base_s=self.base_s, cap_s=self.cap_s)


def compute_backoff(failures: int, *, base_s: float, cap_s: float) -> float:
    """Exponential backoff with full jitter: ``uniform(0, min(cap_s, base_s * 2**(n-1)))``."""
    ceiling = min(cap_s, base_s * 2 ** max(0, min(failures - 1, 30)))
    return random.uniform(0, ceiling)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date), or ``None``."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def is_retryable_error(exc: Exception) -> bool:
    """True for network failures worth another try; a malformed URL is not one."""
    return isinstance(exc, httpx.TransportError) and not isinstance(exc, httpx.UnsupportedProtocol)


class Retries:
    """The retry state of one request: asked after each failure how long to wait, it
    answers a wait in seconds, or ``None`` when the failure is final."""

    __slots__ = ("_failures", "_policy")

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._failures = 0

    def after_response(self, response: httpx.Response) -> float | None:
        """The wait before retrying this answer, or ``None`` to take it as it is."""
        if response.status_code not in self._policy.statuses:
            return None
        self._failures += 1
        if self._failures >= self._policy.attempts:
            return None
        asked = parse_retry_after(response.headers)
        if asked is None:
            return self._policy.backoff_s(self._failures)
        if asked > self._policy.max_retry_after_s:
            return None
        return asked + random.uniform(0, min(1.0, 0.1 * asked))

    def after_error(self, exc: Exception) -> float:
        """The wait before retrying after a network error; raises ``ApiUnavailable``
        (from the error) when it is not worth another try."""
        self._failures += 1
        if not is_retryable_error(exc) or self._failures >= self._policy.attempts:
            raise ApiUnavailable(f"cannot reach the API: {_describe(exc)}") from exc
        return self._policy.backoff_s(self._failures)


def _describe(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
