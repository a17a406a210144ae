"""A running attempt's eye on its tenant's budgets.

Cheap by design: no SQL per chunk. Every ``every_chunks`` pieces of text the attempt adds
what it spent since the last look to the tenant's Redis counters (one script per period)
and compares the answer with the budgets; when one is reached the attempt stops between
chunks and ends ``budget_exceeded``. At the attempt's end the estimate is replaced by
what the provider billed.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from aijobs.spend.budgets import Budget, Period, Spent, over
from aijobs.spend.counters import SpendCounters
from aijobs.spend.usage import AttemptUsage
from aijobs.store.models import utcnow
from aijobs.worker.metering import Meter

log = logging.getLogger(__name__)


class BudgetWatch:
    """Charges ``tenant``'s counters as the attempt spends, and says when a budget is hit."""

    def __init__(
        self,
        counters: SpendCounters,
        tenant: str,
        budgets: list[Budget],
        meter: Meter,
        *,
        every_chunks: int,
    ) -> None:
        self._counters = counters
        self._tenant = tenant
        self._budgets = budgets
        self._meter = meter
        self._every = every_chunks
        self._chunks = 0
        self._tokens = 0
        self._usd = 0.0
        #: The budget this attempt reached, once it has.
        self.exceeded: Budget | None = None
        self.spent: dict[Period, Spent] = {}

    def chunk(self) -> None:
        """A piece of text arrived: look every ``every_chunks``."""
        self._chunks += 1
        if self._chunks % self._every == 0 and self.exceeded is None:
            self.check(self._meter.running())

    def check(self, so_far: AttemptUsage) -> Budget | None:
        """Charge what was spent since the last look; the budget reached, if any."""
        try:
            self.spent = self._charge(so_far)
        except RedisError as exc:  # the budget is bookkeeping: the job goes on
            log.warning("tenant budget not checked (%s)", exc)
            return None
        if self.exceeded is None:
            self.exceeded = over(self._budgets, self.spent)
        return self.exceeded

    def settle(self, final: AttemptUsage) -> None:
        """The attempt ended: its counters take what it was really billed."""
        try:
            self._charge(final)
        except RedisError as exc:
            log.warning("tenant spend not settled (%s)", exc)

    def _charge(self, so_far: AttemptUsage) -> dict[Period, Spent]:
        tokens = so_far.total_tokens - self._tokens
        usd = (so_far.cost_usd or 0.0) - self._usd
        spent = self._counters.add(self._tenant, tokens, usd, utcnow())
        self._tokens += tokens
        self._usd += usd
        return spent
