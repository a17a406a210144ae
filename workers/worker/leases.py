"""Liveness leases: a running attempt holds a Redis key that its worker renews.

A second delivery of a job whose lease is alive leaves it alone; when a worker
dies its leases lapse within ``ttl_s`` and the job may run again (fenced).
"""

from __future__ import annotations

import logging
import threading

from redis import Redis
from redis.exceptions import RedisError

from aijobs import redis_keys as keys
from aijobs.worker.periodic import Periodic

log = logging.getLogger(__name__)

# Renew (or release) only a lease we still own.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaseKeeper:
    """Holds and renews the leases of the attempts running in this process."""

    def __init__(self, redis: Redis, *, ttl_s: float) -> None:
        self._redis = redis
        self._ttl_ms = int(ttl_s * 1000)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._held: dict[str, str] = {}
        self._lock = threading.Lock()
        self._loop = Periodic(
            "aijobs-lease-keeper", ttl_s / 3, self.renew_all, expected=(RedisError,)
        )

    def acquire(self, job_id: str, attempt: int) -> bool:
        """Take the job's lease for ``attempt``; False while another attempt holds it."""
        token = str(attempt)
        if not self._redis.set(keys.lease_key(job_id), token, nx=True, px=self._ttl_ms):
            return False
        with self._lock:
            self._held[job_id] = token
        return True

    def release(self, job_id: str) -> None:
        """Give the lease back (only if it is still ours)."""
        with self._lock:
            token = self._held.pop(job_id, None)
        if token is not None:
            try:
                self._release(keys=[keys.lease_key(job_id)], args=[token])
            except RedisError:
                log.warning("could not release lease of job %s; it will lapse", job_id)

    def renew_all(self) -> None:
        """Renew every held lease in one pipeline."""
        with self._lock:
            held = list(self._held.items())
        if not held:
            return
        pipe = self._redis.pipeline(transaction=False)
        for job_id, token in held:
            self._renew(keys=[keys.lease_key(job_id)], args=[token, self._ttl_ms], client=pipe)
        for (job_id, _), renewed in zip(held, pipe.execute(), strict=True):
            if not renewed:
                log.warning("lease of job %s was lost", job_id)

    def start(self) -> None:
        """Renew leases every third of their TTL in a background thread."""
        self._loop.start()

    def stop(self) -> None:
        """Stop renewing (held leases then lapse on their own)."""
        self._loop.stop()
