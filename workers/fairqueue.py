"""The fair queue in front of Celery: per-tenant waiting lists in Redis, weighted fair
dequeue, priorities, delays, and a fleet-wide cap of running jobs per tenant.

Celery delivers, acks and retries; it does not know tenants. So a job does not go to the
broker when it is submitted: it waits in its tenant's list (a sorted set by priority,
then arrival), and a *feeder* in every worker process hands the broker only as many jobs
as the fleet has free slots, picking tenants by weighted fair queuing (the tenant with
the least virtual time goes next; each job it starts costs it ``1/weight``). One
tenant's backlog therefore waits behind its own jobs, never in front of another
tenant's. The feeder wakes on a push (a submit, a freed slot), not on a timer.

Every change of this state is one Lua script, so any number of feeders, APIs and
reconcilers can act at once. A job is in exactly one of: its tenant's list, ``DELAYED``
(not before a time), or *active* (handed to the broker with a deadline to start, then
held by its lease). An active entry past its deadline means the message or the worker
was lost; the reconciler puts the job back (see ``aijobs.worker.reconciler``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import NoScriptError

from aijobs import redis_keys as keys

log = logging.getLogger(__name__)


def _lua_key(pattern: str) -> str:
    """A Lua expression for a key pattern with ``{kind}`` / ``{tenant}`` placeholders."""
    out = "'" + pattern.replace("{kind}", "' .. kind .. '").replace("{tenant}", "' .. tenant .. '")
    return (out + "'").replace(" .. ''", "")


_HELPERS = f"""
local function pending(kind, tenant) return {_lua_key(keys.PENDING_PATTERN)} end
local function ring(kind) return {_lua_key(keys.RING_PATTERN)} end
local function vtimes(kind) return {_lua_key(keys.VTIME_PATTERN)} end
local function kind_active(kind) return {_lua_key(keys.KIND_ACTIVE_PATTERN)} end
local function tenant_active(tenant) return {_lua_key(keys.TENANT_ACTIVE_PATTERN)} end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function enqueue(kind, tenant, priority, job)
  local score = (9 - priority) * 1e13 + redis.call('INCR', '{keys.QUEUE_SEQ}')
  redis.call('ZADD', pending(kind, tenant), 'NX', score, job)
  local r = ring(kind)
  if not redis.call('ZSCORE', r, tenant) then
    -- A tenant coming back starts at the present, not at the credit it had long ago.
    local low = redis.call('ZRANGE', r, 0, 0, 'WITHSCORES')
    local vt = tonumber(redis.call('HGET', vtimes(kind), tenant) or '0')
    if low[2] and tonumber(low[2]) > vt then vt = tonumber(low[2]) end
    redis.call('ZADD', r, vt, tenant)
  end
end
local function parse_delayed(member)
  local kind, rest = string.match(member, '^([^|]*)|(.*)$')
  local tenant, priority, job = string.match(rest, '^(.*)|(%d)|([^|]*)$')
  return kind, tenant, tonumber(priority), job
end
"""

# ARGV: kind, tenant, priority, job id, due (epoch ms; 0 = now).
_PUSH = (
    _HELPERS
    + f"""
local kind, tenant, priority, job = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local due = tonumber(ARGV[5])
if due > now_ms() then
  local member = kind .. '|' .. tenant .. '|' .. ARGV[3] .. '|' .. job
  redis.call('ZADD', '{keys.DELAYED}', due, member)
  -- Feeders sleep until the next due job: wake one to look again (this one may be sooner).
  if redis.call('LLEN', '{keys.WAKE}') < 4 then redis.call('LPUSH', '{keys.WAKE}', 1) end
  return 0
end
enqueue(kind, tenant, priority, job)
if redis.call('LLEN', '{keys.WAKE}') < 4 then redis.call('LPUSH', '{keys.WAKE}', 1) end
return 1
"""
)

# ARGV: kind, at most n, tenant cap (0: none), dispatch deadline (ms from now),
#       default weight.
# Returns {job, tenant, priority, ...}: handed out now (already marked active).
_TAKE = (
    _HELPERS
    + f"""
local kind, want, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local deadline = now + tonumber(ARGV[4])
local default_weight = tonumber(ARGV[5])
-- Delayed jobs whose time has come join their tenant's list first.
for _, member in ipairs(redis.call('ZRANGEBYSCORE', '{keys.DELAYED}', '-inf', now,
                                   'LIMIT', 0, 500)) do
  local k, tenant, priority, job = parse_delayed(member)
  if k then enqueue(k, tenant, priority, job) end
  redis.call('ZREM', '{keys.DELAYED}', member)
end
-- Free slots: what live workers serving this kind offer, minus what is handed out.
local slots = 0
local fleet = redis.call('HGETALL', '{keys.FLEET}')
for i = 1, #fleet, 2 do
  local kinds, n, expires = string.match(fleet[i + 1], '^([^;]*);(%d+);(%d+)$')
  if not expires or tonumber(expires) < now then
    redis.call('HDEL', '{keys.FLEET}', fleet[i])
  elseif string.find(',' .. kinds .. ',', ',' .. kind .. ',', 1, true) then
    slots = slots + tonumber(n)
  end
end
local active = kind_active(kind)
local free = slots - redis.call('ZCOUNT', active, now, '+inf')
if free < want then want = free end
local out = {{}}
if want <= 0 then return out end
local r = ring(kind)
local skipped = {{}}
while #out < 3 * want do
  local head = redis.call('ZRANGE', r, 0, 0, 'WITHSCORES')
  if not head[1] then break end
  local tenant, vt = head[1], tonumber(head[2])
  local busy = cap > 0 and redis.call('ZCOUNT', tenant_active(tenant), now, '+inf') >= cap
  if busy then
    -- At its cap: out of this round (it keeps its place for the next).
    redis.call('ZREM', r, tenant)
    table.insert(skipped, vt)
    table.insert(skipped, tenant)
  else
    local popped = redis.call('ZPOPMIN', pending(kind, tenant), 1)
    if not popped[1] then
      redis.call('ZREM', r, tenant)
    else
      local job = popped[1]
      redis.call('ZADD', active, deadline, job)
      redis.call('ZADD', tenant_active(tenant), deadline, job)
      table.insert(out, job)
      table.insert(out, tenant)
      table.insert(out, 9 - math.floor(tonumber(popped[2]) / 1e13))
      local weight = tonumber(redis.call('HGET', '{keys.WEIGHTS}', tenant) or default_weight)
      vt = vt + 1 / weight
      redis.call('HSET', vtimes(kind), tenant, vt)
      if redis.call('ZCARD', pending(kind, tenant)) > 0 then
        redis.call('ZADD', r, vt, tenant)
      else
        redis.call('ZREM', r, tenant)
      end
    end
  end
end
for i = 1, #skipped, 2 do redis.call('ZADD', r, skipped[i], skipped[i + 1]) end
return out
"""
)

# ARGV: kind, now (ms), at most n. Active entries past their time whose lease is gone:
# removed from the kind's active set and returned (the caller re-queues or drops them).
_EXPIRED = f"""
local kind = ARGV[1]
local active = {_lua_key(keys.KIND_ACTIVE_PATTERN)}
local out = {{}}
for _, job in ipairs(redis.call('ZRANGEBYSCORE', active, '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])) do
  if redis.call('EXISTS', '{keys.PREFIX}:{{' .. job .. '}}:lease') == 0 then
    redis.call('ZREM', active, job)
    table.insert(out, job)
  end
end
return out
"""


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """What the queue holds of a job."""

    id: str
    kind: str
    tenant: str
    priority: int = 5


def _due_ms(run_at_epoch_s: float | None) -> int:
    # Rounded up: a job never becomes due before its time, not even by a millisecond.
    return 0 if run_at_epoch_s is None else math.ceil(run_at_epoch_s * 1000)


def push_args(job: QueuedJob, run_at_epoch_s: float | None = None) -> list[Any]:
    """ARGV of the push script for ``job``."""
    return [job.kind, job.tenant, job.priority, job.id, _due_ms(run_at_epoch_s)]


def _queued_jobs(kind: str, reply: Any) -> list[QueuedJob]:
    """The jobs a ``_TAKE`` handed out: (id, tenant, priority) triples."""
    items = [x.decode() if isinstance(x, bytes) else str(x) for x in reply]
    return [
        QueuedJob(job_id, kind, tenant, int(priority))
        for job_id, tenant, priority in zip(items[::3], items[1::3], items[2::3], strict=True)
    ]


class FairQueue:
    """The queue as the workers (feeder, reconciler, runner) see it."""

    def __init__(self, redis: Redis, *, default_weight: float = 1.0) -> None:
        self._redis = redis
        self._push = redis.register_script(_PUSH)
        self._take = redis.register_script(_TAKE)
        self._expired = redis.register_script(_EXPIRED)
        self._default_weight = default_weight

    def push(self, job: QueuedJob, *, run_at_epoch_s: float | None = None) -> None:
        """Queue ``job`` (not before ``run_at_epoch_s``); a job already waiting keeps its place."""
        self._push(args=push_args(job, run_at_epoch_s))

    def push_many(self, jobs: Iterable[tuple[QueuedJob, float | None]]) -> None:
        """Queue many jobs in one round trip."""
        items = list(jobs)
        if len(items) <= 1:
            for job, run_at in items:
                self.push(job, run_at_epoch_s=run_at)
            return
        # EVALSHA by hand: a pipeline of Script calls first asks SCRIPT EXISTS, a second
        # round trip on every push. A Redis that lost its scripts answers NOSCRIPT: load
        # and push again (a push of a job already waiting changes nothing).
        for attempt in (1, 2):
            pipe = self._redis.pipeline(transaction=False)
            for job, run_at in items:
                pipe.evalsha(self._push.sha, 0, *push_args(job, run_at))
            try:
                pipe.execute()
                return
            except NoScriptError:
                if attempt == 2:
                    raise
                self._redis.script_load(_PUSH)

    def take(
        self, kind: str, max_jobs: int, *, tenant_cap: int, dispatch_ttl_s: float
    ) -> list[QueuedJob]:
        """Hand out up to ``max_jobs`` of ``kind`` (free slots permitting), fairly across
        tenants, each already marked active until it must start."""
        reply = self._take(
            args=[kind, max_jobs, tenant_cap, int(dispatch_ttl_s * 1000), self._default_weight]
        )
        return _queued_jobs(kind, reply)

    def take_all(
        self, kinds: Sequence[str], max_jobs: int, *, tenant_cap: int, dispatch_ttl_s: float
    ) -> tuple[dict[str, list[QueuedJob]], float | None]:
        """``take`` for each of ``kinds``, and the seconds until the next delayed job is
        due (None: none waits), in one round trip (a feeder's round: at a burst of submits
        it runs once per job).

        A Redis that lost its scripts answers NOSCRIPT to each take, which then did
        nothing: the script is loaded and those takes run again. A take that failed
        otherwise is logged and left for the next round; its kind took nothing.
        """
        args = [tenant_cap, int(dispatch_ttl_s * 1000), self._default_weight]
        pipe = self._redis.pipeline(transaction=False)
        for kind in kinds:
            pipe.evalsha(self._take.sha, 0, kind, max_jobs, *args)
        pipe.zrange(keys.DELAYED, 0, 0, withscores=True)
        *replies, head = pipe.execute(raise_on_error=False)
        if isinstance(head, Exception):
            raise head
        taken: dict[str, list[QueuedJob]] = {}
        for kind, reply in zip(kinds, replies, strict=True):
            if isinstance(reply, NoScriptError):
                reply = self._take(args=[kind, max_jobs, *args])  # loads it, then runs
            elif isinstance(reply, Exception):
                log.warning("fair queue: take of %s failed (%s)", kind, reply)
                continue
            taken[kind] = _queued_jobs(kind, reply)
        due_s = max(0.0, float(head[0][1]) / 1000 - time.time()) if head else None
        return taken, due_s

    def expired_active(self, kind: str, *, limit: int = 500) -> list[str]:
        """Jobs of ``kind`` that were handed out or running and lost their message or
        worker (deadline passed, no lease); removed from the active set."""
        reply = self._expired(args=[kind, int(time.time() * 1000), limit])
        return [x.decode() if isinstance(x, bytes) else str(x) for x in reply]

    def release_tenant_slots(self, jobs: Sequence[tuple[str, str]]) -> None:
        """Drop (job, tenant) entries from their tenants' active sets."""
        if not jobs:
            return
        pipe = self._redis.pipeline(transaction=False)
        for job_id, tenant in jobs:
            pipe.zrem(keys.tenant_active_key(tenant), job_id)
        pipe.execute()

    def register_worker(
        self, worker_id: str, kinds: Sequence[str], slots: int, ttl_s: float
    ) -> None:
        """Offer this worker process's slots to the feeders for ``ttl_s``."""
        expires = int((time.time() + ttl_s) * 1000)
        self._redis.hset(keys.FLEET, worker_id, f"{','.join(kinds)};{slots};{expires}")

    def unregister_worker(self, worker_id: str) -> None:
        """Withdraw this worker process's slots."""
        self._redis.hdel(keys.FLEET, worker_id)

    def set_weights(self, weights: dict[str, float]) -> None:
        """Publish the tenants' fair-share weights."""
        if weights:
            self._redis.hset(keys.WEIGHTS, mapping={t: str(w) for t, w in weights.items()})

    def wait_for_work(self, timeout_s: float) -> bool:
        """Block until something is pushed or a slot frees (True), or ``timeout_s``."""
        seconds = max(0.01, min(timeout_s, 2.0))
        return self._redis.blpop([keys.WAKE], timeout=seconds) is not None

    def wake(self) -> None:
        """Wake one feeder (a slot was freed)."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.lpush(keys.WAKE, 1)
        pipe.ltrim(keys.WAKE, 0, 3)
        pipe.execute()

    def where(self, jobs: Sequence[QueuedJob]) -> list[bool]:
        """For each job: is it anywhere in the queue (waiting, delayed or active)?"""
        if not jobs:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for job in jobs:
            pipe.zscore(keys.pending_key(job.kind, job.tenant), job.id)
            pipe.zscore(keys.kind_active_key(job.kind), job.id)
            pipe.exists(keys.lease_key(job.id))
            member = keys.delayed_member(job.kind, job.tenant, job.priority, job.id)
            pipe.zscore(keys.DELAYED, member)
        replies = pipe.execute()
        found = [
            pending is not None or active is not None or bool(lease) or delayed is not None
            for pending, active, lease, delayed in zip(
                replies[::4], replies[1::4], replies[2::4], replies[3::4], strict=True
            )
        ]
        missing = {job.id for job, hit in zip(jobs, found, strict=True) if not hit}
        # Scheduled jobs can make the delayed set large: it is scanned only when an exact
        # lookup missed (a job pushed with another priority than its row says, say).
        delayed = self._delayed_jobs(missing) if missing else set()
        return [hit or job.id in delayed for hit, job in zip(found, jobs, strict=True)]

    def _delayed_jobs(self, wanted: set[str]) -> set[str]:
        out: set[str] = set()
        for member, _ in self._redis.zscan_iter(keys.DELAYED, count=1000):
            text = member.decode() if isinstance(member, bytes) else str(member)
            job_id = text.rpartition("|")[2]
            if job_id in wanted:
                out.add(job_id)
        return out

    def waiting(self) -> dict[str, int]:
        """Jobs waiting per kind (every tenant's list), for metrics."""
        from aijobs.schemas import JobKind

        out: dict[str, int] = {}
        for kind in JobKind:
            tenants = self._redis.zrange(keys.ring_key(kind.value), 0, -1)
            pipe = self._redis.pipeline(transaction=False)
            for tenant in tenants:
                name = tenant.decode() if isinstance(tenant, bytes) else str(tenant)
                pipe.zcard(keys.pending_key(kind.value, name))
            out[kind.value] = sum(int(n) for n in pipe.execute()) if tenants else 0
        return out


async def push_async(
    redis: AsyncRedis, job: QueuedJob, *, run_at_epoch_s: float | None = None
) -> None:
    """Queue ``job`` from an asyncio process (the API): one round trip."""
    await redis.eval(_PUSH, 0, *push_args(job, run_at_epoch_s))
