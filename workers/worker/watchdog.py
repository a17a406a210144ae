"""Our own clock on running attempts: Celery's threads pool ignores time limits.

Every attempt registers its ``CallGuard`` (its deadline, and how to cut the provider
call in progress). One thread per worker process looks at them a few times a second and
cuts whatever ran out of time — the whole attempt (``AIJOBS_TASK_TIME_LIMIT_S``) or one
provider call (``AIJOBS_PROVIDER_DEADLINE_S``) — even a stream that trickles or stalls
while keeping its connection alive, which no read timeout ever ends.
"""

from __future__ import annotations

import threading
import time

from aijobs.providers.base import CallGuard


class Watchdog:
    """Cuts attempts and provider calls past their deadline."""

    def __init__(self, *, interval_s: float = 0.25) -> None:
        self._interval_s = interval_s
        self._guards: set[CallGuard] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def guard(self, *, time_limit_s: float, call_limit_s: float) -> CallGuard:
        """A guard for an attempt that starts now, watched until ``release``."""
        guard = CallGuard(time.monotonic() + time_limit_s, call_limit_s=call_limit_s)
        with self._lock:
            self._guards.add(guard)
        return guard

    def release(self, guard: CallGuard) -> None:
        """Stop watching an attempt that ended."""
        with self._lock:
            self._guards.discard(guard)

    def check(self, now: float | None = None) -> int:
        """Cut what ran out of time; how many were cut."""
        now = time.monotonic() if now is None else now
        with self._lock:
            due = [g for g in self._guards if g.due <= now and g.expired is None]
        for guard in due:
            whole = guard.deadline <= now
            guard.expire(
                "the job ran past its time limit" if whole
                else "the provider call ran past its deadline"
            )  # fmt: skip
        return len(due)

    def start(self) -> None:
        """Start watching in a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="aijobs-watchdog", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop watching."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            self.check()
