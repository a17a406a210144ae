"""A fleet-wide rate limiter: every worker process shares one budget per provider and model.

Celery's ``rate_limit`` is per worker, so N workers would spend N times the budget. Here
one atomic Lua script on the shared Redis, on Redis's own clock, checks before each
provider call:

- requests per window: an exact sliding log (a sorted set of admission times), so no
  window of ``window_s`` ever holds more than ``rpm`` admissions;
- tokens per window: a token bucket charged with an estimate before the call and
  corrected with the real usage after it;
- "blocked until": learned from a provider's 429 (retry-after), shared by all;
- each tenant's share: a second token bucket per tenant holding
  ``AIJOBS_TENANT_BUDGET_SHARE`` of the model's tokens per window, so one tenant's jobs
  can never spend the whole budget and defer everyone else's.

It answers "go" or "wait this long"; the caller decides whether to sleep or re-queue.
"""

from __future__ import annotations

import secrets
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from aijobs import redis_keys as keys
from aijobs.settings import RateLimit

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local rpm = tonumber(ARGV[2])
local tpm = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local wait = 0
local blocked = tonumber(redis.call('GET', KEYS[3]) or '0')
if blocked > now then wait = blocked - now end
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  local n = redis.call('ZCARD', KEYS[1])
  if n >= rpm then
    local nth = redis.call('ZRANGE', KEYS[1], n - rpm, n - rpm, 'WITHSCORES')
    wait = math.max(wait, tonumber(nth[2]) + window - now + 1)
  end
end
local function bucket(key, size)
  local b = redis.call('HMGET', key, 'level', 'ts')
  local level = tonumber(b[1] or size)
  local last = tonumber(b[2] or now)
  level = math.min(size, level + (now - last) * size / window)
  local need = math.min(cost, size)
  if level < need then wait = math.max(wait, math.ceil((need - level) * window / size)) end
  return level
end
local level, share_level = 0, 0
local share = tonumber(ARGV[6])
if tpm > 0 then level = bucket(KEYS[2], tpm) end
if share > 0 then share_level = bucket(KEYS[4], share) end
if wait > 0 then return wait end
if rpm > 0 then
  redis.call('ZADD', KEYS[1], now, ARGV[5])
  redis.call('PEXPIRE', KEYS[1], window * 2)
end
if tpm > 0 then
  redis.call('HSET', KEYS[2], 'level', tostring(level - cost), 'ts', now)
  redis.call('PEXPIRE', KEYS[2], window * 2)
end
if share > 0 then
  redis.call('HSET', KEYS[4], 'level', tostring(share_level - cost), 'ts', now)
  redis.call('PEXPIRE', KEYS[4], window * 2)
end
return 0
"""

_ADJUST = """
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('HINCRBYFLOAT', key, 'level', ARGV[1])
  end
end
return 0
"""

_BLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = now + tonumber(ARGV[1])
if due > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], due, 'PX', tonumber(ARGV[1]) + 1000)
end
return 0
"""


class RateLimiter:
    """Checks and spends the shared budgets of provider+model pairs."""

    def __init__(
        self,
        redis: Redis,
        limits: dict[str, RateLimit],
        *,
        provider: str,
        safety_ms: int = 250,
        tenant_share: float = 1.0,
        async_redis: AsyncRedis | None = None,
    ) -> None:
        self._redis = redis
        self._limits = limits
        self._provider = provider
        self._safety_ms = safety_ms
        self._tenant_share = tenant_share
        self._acquire = redis.register_script(_ACQUIRE)
        self._adjust = redis.register_script(_ADJUST)
        self._block = redis.register_script(_BLOCK)
        # For callers on an event loop (the API's submit limit): the same script.
        self._acquire_async = async_redis.register_script(_ACQUIRE) if async_redis else None

    def limit_for(self, model: str) -> RateLimit | None:
        """The configured budget of ``model`` (or the ``*`` default)."""
        return self._limits.get(model) or self._limits.get("*")

    def acquire(self, model: str, tokens: int, *, tenant: str | None = None) -> float:
        """Spend one request and ``tokens`` if the budget (and ``tenant``'s share of it)
        allows; else seconds to wait.

        Always consults "blocked until", even for models without a budget.
        """
        keys_, args = self._acquire_call(model, tokens, tenant)
        return int(self._acquire(keys=keys_, args=args)) / 1000.0

    async def acquire_async(self, model: str, tokens: int, *, tenant: str | None = None) -> float:
        """``acquire`` on the asyncio client given at construction."""
        if self._acquire_async is None:
            raise RuntimeError("RateLimiter built without async_redis")
        keys_, args = self._acquire_call(model, tokens, tenant)
        return int(await self._acquire_async(keys=keys_, args=args)) / 1000.0

    def _acquire_call(
        self, model: str, tokens: int, tenant: str | None
    ) -> tuple[list[str], list[Any]]:
        limit = self.limit_for(model) or RateLimit()
        # A little slack on the window: the provider's clock starts when our request
        # arrives, a moment after we admitted it.
        window_ms = int(limit.window_s * 1000) + self._safety_ms
        share = self._share(limit, tenant)
        args = [window_ms, limit.requests, limit.tokens, max(0, tokens), secrets.token_hex(8),
                share]  # fmt: skip
        return [*self._keys(model), self._tenant_key(model, tenant)], args

    def settle(self, model: str, estimated: int, actual: int, *, tenant: str | None = None) -> None:
        """Correct the token buckets once the real usage is known (a refund when the call
        billed less than was charged, nothing billed included)."""
        limit = self.limit_for(model)
        if limit is None or not limit.tokens or actual == estimated:
            return
        buckets = [self._keys(model)[1]]
        if self._share(limit, tenant):
            buckets.append(self._tenant_key(model, tenant))
        self._adjust(keys=buckets, args=[estimated - actual])

    def _share(self, limit: RateLimit, tenant: str | None) -> int:
        if tenant is None or not limit.tokens or self._tenant_share >= 1.0:
            return 0
        return max(1, int(limit.tokens * self._tenant_share))

    def _tenant_key(self, model: str, tenant: str | None) -> str:
        return keys.rate_limit_keys(self._provider, model)[1] + f":t:{tenant or '-'}"

    def block_for(self, model: str, seconds: float) -> None:
        """Hold every worker's calls to ``model`` for ``seconds`` (a provider's 429 said so)."""
        if seconds > 0:
            self._block(keys=[self._keys(model)[2]], args=[int(seconds * 1000)])

    def _keys(self, model: str) -> list[str]:
        return keys.rate_limit_keys(self._provider, model)
