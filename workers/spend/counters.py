"""Each tenant's spend per period, as atomic Redis counters reconciled with SQL.

SQL (``job_usage``) is the truth; a budget check cannot sum it per chunk, so every
process adds what it spends to one Redis hash per tenant and period
(``aijobs:spend:{tenant}:day:20261201``: ``t`` tokens, ``u`` micro-USD), one
``HINCRBY`` pair in a script. A hash that is missing (a new period, or Redis lost its
data) is seeded from SQL before the first add. Limit, said plainly: an attempt whose
usage row is committed between a seed's SQL sum and its script is counted twice until
the key expires, so a counter can run a little ahead of SQL, never behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from redis import Redis

from aijobs.spend.budgets import PERIODS, Period, Spent, period_start

SPEND_KEY_PREFIX = "aijobs:spend:"
#: Counters outlive their period by a margin (a late settle of the last attempts).
TTL_S: dict[Period, int] = {"day": 3 * 86_400, "month": 40 * 86_400}
_MICRO = 1_000_000

# Add to an existing counter; nil when it is missing (the caller seeds it).
_ADD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
local t = redis.call('HINCRBY', KEYS[1], 't', ARGV[1])
local u = redis.call('HINCRBY', KEYS[1], 'u', ARGV[2])
return {t, u}
"""
# Seed a missing counter with SQL's sum (unless another process just did), then add.
_SEED_ADD = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 't', ARGV[3], 'u', ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
end
local t = redis.call('HINCRBY', KEYS[1], 't', ARGV[1])
local u = redis.call('HINCRBY', KEYS[1], 'u', ARGV[2])
return {t, u}
"""

#: What SQL says a tenant spent since a time: (tenant, since) -> Spent.
Seeder = Callable[[str, datetime], Spent]


def spend_key(tenant: str, period: Period, now: datetime) -> str:
    """The counter of ``tenant``'s spend in the period ``now`` falls in."""
    start = period_start(period, now)
    stamp = start.strftime("%Y%m%d" if period == "day" else "%Y%m")
    return f"{SPEND_KEY_PREFIX}{{{tenant}}}:{period}:{stamp}"


class SpendCounters:
    """Add to, and read, tenants' spend per period."""

    def __init__(self, redis: Redis, seed: Seeder) -> None:
        self._redis = redis
        self._seed = seed
        self._add = redis.register_script(_ADD)
        self._seed_add = redis.register_script(_SEED_ADD)

    def add(self, tenant: str, tokens: int, usd: float, now: datetime) -> dict[Period, Spent]:
        """Count ``tokens`` and ``usd`` (either may be 0 or negative: a settle) in every
        period; the spend after it."""
        micros = round(usd * _MICRO)
        out: dict[Period, Spent] = {}
        for period in PERIODS:
            key = spend_key(tenant, period, now)
            got = self._add(keys=[key], args=[tokens, micros])
            if got is None:
                base = self._seed(tenant, period_start(period, now))
                got = self._seed_add(
                    keys=[key],
                    args=[tokens, micros, base.tokens, round(base.usd * _MICRO), TTL_S[period]],
                )
            out[period] = Spent(int(got[0]), int(got[1]) / _MICRO)
        return out

    def read(self, tenant: str, now: datetime) -> dict[Period, Spent]:
        """The tenant's spend in each period (seeded from SQL where missing)."""
        return self.add(tenant, 0, 0.0, now)


def forget(redis: Redis, tenant: str) -> None:
    """Drop ``tenant``'s current counters: the next check seeds them from SQL."""
    now = datetime.now(UTC)
    redis.delete(*(spend_key(tenant, period, now) for period in PERIODS))
