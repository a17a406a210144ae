"""Liveness leases: each delivery of a job that runs holds a Redis key that its worker renews.

A lease belongs to a *delivery*, not to a job: it holds a random token, and renewing or
releasing it compares that token (in Lua). So a stale or duplicate delivery of the same
job — even in the same process — can neither renew nor release the live one's lease.
While it holds the lease, a delivery also holds the job's entries in the queue's active
sets (its kind's busy slots, its tenant's running count), with the lease's expiry as
their score: when a worker dies its leases lapse within ``ttl_s``, its entries expire
with them, and the reconciler puts the job back in the queue (fenced, so safely).
"""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError

from aijobs import redis_keys as keys
from aijobs.worker.periodic import Periodic

log = logging.getLogger(__name__)

# KEYS: lease, kind active set, tenant active set. ARGV: token, ttl ms, job id.
# Takes the lease if it is free or already this token's (a renewal; or one Redis lost and
# nobody else took since), and marks the job active until it expires. Returns 1, else 0.
_HOLD = """
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local t = redis.call('TIME')
local expires = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
redis.call('ZADD', KEYS[2], expires, ARGV[3])
redis.call('ZADD', KEYS[3], expires, ARGV[3])
return 1
"""

# KEYS: lease, kind active set, tenant active set, wake list. ARGV: token, job id.
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
if redis.call('LLEN', KEYS[4]) < 4 then redis.call('LPUSH', KEYS[4], 1) end
return 1
"""


@dataclass(frozen=True, slots=True)
class Lease:
    """A delivery's hold on a job."""

    job_id: str
    kind: str
    tenant: str
    token: str

    def keys(self) -> list[str]:
        return [
            keys.lease_key(self.job_id),
            keys.kind_active_key(self.kind),
            keys.tenant_active_key(self.tenant),
        ]


class LeaseKeeper:
    """Holds and renews the leases of the deliveries running in this process."""

    def __init__(self, redis: Redis, *, ttl_s: float) -> None:
        self._redis = redis
        self._ttl_ms = int(ttl_s * 1000)
        self._hold = redis.register_script(_HOLD)
        self._release = redis.register_script(_RELEASE)
        self._held: dict[str, Lease] = {}  # by token
        self._lost: set[str] = set()
        self._lock = threading.Lock()
        self._loop = Periodic(
            "aijobs-lease-keeper", ttl_s / 3, self.renew_all, expected=(RedisError,)
        )

    def acquire(self, job_id: str, kind: str, tenant: str) -> Lease | None:
        """Take the job's lease for a new delivery; None while another delivery holds it."""
        lease = Lease(job_id, kind, tenant, secrets.token_hex(12))
        if not self._hold(keys=lease.keys(), args=[lease.token, self._ttl_ms, job_id]):
            return None
        with self._lock:
            self._held[lease.token] = lease
        return lease

    def lost(self, lease: Lease) -> bool:
        """True once another delivery took this lease (this one must stop)."""
        return lease.token in self._lost

    def release(self, lease: Lease) -> None:
        """Give the lease back (only if it is still this delivery's) and free its slot."""
        with self._lock:
            self._held.pop(lease.token, None)
            self._lost.discard(lease.token)
        try:
            self._release(keys=[*lease.keys(), keys.WAKE], args=[lease.token, lease.job_id])
        except RedisError:
            log.warning("could not release lease of job %s; it will lapse", lease.job_id)

    def renew_all(self) -> None:
        """Renew every held lease in one pipeline (taking back any Redis lost)."""
        with self._lock:
            held = list(self._held.values())
        if not held:
            return
        pipe = self._redis.pipeline(transaction=False)
        for lease in held:
            self._hold(
                keys=lease.keys(), args=[lease.token, self._ttl_ms, lease.job_id], client=pipe
            )
        for lease, renewed in zip(held, pipe.execute(), strict=True):
            if not renewed:
                log.warning("lease of job %s was taken by another delivery", lease.job_id)
                with self._lock:
                    self._lost.add(lease.token)

    def held(self) -> list[Lease]:
        """The leases this process holds."""
        with self._lock:
            return list(self._held.values())

    def start(self) -> None:
        """Renew leases every third of their TTL in a background thread."""
        self._loop.start()

    def stop(self) -> None:
        """Stop renewing (held leases then lapse on their own)."""
        self._loop.stop()
