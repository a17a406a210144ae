"""Per-tenant limit on open event readers in this API process."""

from __future__ import annotations

from collections import Counter


class ReaderSlots:
    """Counts open SSE/WebSocket readers per tenant (the event loop is the only user)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    def try_acquire(self, tenant: str) -> bool:
        """Take a slot; False if the tenant already holds ``limit`` (0: unlimited)."""
        if self.limit and self._open[tenant] >= self.limit:
            return False
        self._open[tenant] += 1
        return True

    def release(self, tenant: str) -> None:
        """Give a slot back."""
        self._open[tenant] -= 1
        if self._open[tenant] <= 0:
            del self._open[tenant]
