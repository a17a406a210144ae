"""Request counters and the sliding request window (rate limiter and ``max_in_window``)."""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

TIMESTAMPS_KEPT = 10_000


class RequestWindow:
    """Times (monotonic) of admitted chat/embeddings requests within the last window."""

    def __init__(self) -> None:
        """Start empty."""
        self._times: deque[float] = deque()
        self.max_in_window = 0

    def _prune(self, now: float, window_s: float) -> None:
        cutoff = now - window_s
        times = self._times
        while times and times[0] <= cutoff:
            times.popleft()

    def wait_needed(self, now: float, limit: int, window_s: float) -> float | None:
        """Seconds until a slot frees if ``limit`` requests are already in the window, else None."""
        self._prune(now, window_s)
        if limit <= 0 or len(self._times) < limit:
            return None
        oldest_blocking = self._times[len(self._times) - limit]
        return max(0.001, oldest_blocking + window_s - now)

    def admit(self, now: float, window_s: float) -> None:
        """Record an admitted request and update :attr:`max_in_window`."""
        self._prune(now, window_s)
        self._times.append(now)
        self.max_in_window = max(self.max_in_window, len(self._times))

    def remaining(self, limit: int) -> int:
        """Free slots in the current window (after the last prune)."""
        return max(0, limit - len(self._times))


class Stats:
    """Counters exposed by ``GET /_sim/stats`` (mutated from the event loop only)."""

    def __init__(self) -> None:
        """Start with every counter at zero."""
        self.requests: Counter[str] = Counter()
        self.requests_by_model: Counter[str] = Counter()
        self.request_times: dict[str, deque[float]] = {}
        self.faults_served: Counter[str] = Counter()
        self.chaos_served: Counter[str] = Counter()
        self.auth: Counter[str] = Counter()
        self.rate_limited = 0
        self.streams_started = 0
        self.streams_completed = 0
        self.streams_closed_early = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.window = RequestWindow()

    def record_request(self, endpoint: str, model: str | None, started: float, auth: str) -> None:
        """Count one request (``started`` is ``time.time()``; ``auth`` its auth header kind)."""
        self.requests[endpoint] += 1
        if model is not None:
            self.requests_by_model[model] += 1
        times = self.request_times.get(endpoint)
        if times is None:
            times = self.request_times[endpoint] = deque(maxlen=TIMESTAMPS_KEPT)
        times.append(started)
        self.auth[auth] += 1

    def enter(self) -> None:
        """A chat/embeddings request starts being answered."""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        """A chat/embeddings request is done."""
        self.in_flight -= 1

    def snapshot(self) -> dict[str, Any]:
        """JSON form of the counters."""
        return {
            "requests": dict(self.requests),
            "requests_by_model": dict(self.requests_by_model),
            "request_times": {k: list(v) for k, v in self.request_times.items()},
            "faults_served": dict(self.faults_served),
            "chaos_served": dict(self.chaos_served),
            "auth": dict(self.auth),
            "rate_limited": self.rate_limited,
            "streams_started": self.streams_started,
            "streams_completed": self.streams_completed,
            "streams_closed_early": self.streams_closed_early,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "max_in_window": self.window.max_in_window,
        }
