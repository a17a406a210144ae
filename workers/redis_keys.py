"""Every Redis key and channel name of aijobs, in one place.

The job id sits in a hash tag (``{...}``) so a job's keys share a Redis Cluster
slot and one Lua script may touch them all.
"""

from __future__ import annotations

PREFIX = "aijobs"

#: Sorted set of parked jobs (member ``<kind>:<job id>``, score = when due, epoch seconds).
PARKED = f"{PREFIX}:parked"
#: Held for a moment by the worker process that runs a reconciler pass.
RECONCILER_LOCK = f"{PREFIX}:reconciler:lock"
#: Held for a purge interval by the worker process that ran the last retention purge.
PURGE_LOCK = f"{PREFIX}:purge:lock"


def events_key(job_id: str) -> str:
    """The job's Redis Stream: the backlog of its events (entry id ``0-<event id>``)."""
    return f"{PREFIX}:{{{job_id}}}:events"


def live_channel(job_id: str) -> str:
    """The job's pub/sub channel: every event, as it is written."""
    return f"{PREFIX}:{{{job_id}}}:live"


def meta_key(job_id: str) -> str:
    """A hash with the job's current attempt (the fence), its event counter and cancel flag."""
    return f"{PREFIX}:{{{job_id}}}:meta"


def lease_key(job_id: str) -> str:
    """Held, with a TTL, by the worker running the job's current attempt."""
    return f"{PREFIX}:{{{job_id}}}:lease"


def rescue_key(job_id: str) -> str:
    """Set when the reconciler re-enqueues the job, so it does so once per lease period."""
    return f"{PREFIX}:{{{job_id}}}:rescued"


def rate_limit_keys(provider: str, model: str) -> list[str]:
    """The limiter's request log, token bucket and blocked-until keys of a provider+model."""
    tag = f"{PREFIX}:rl:{{{provider}:{model}}}"
    return [f"{tag}:requests", f"{tag}:tokens", f"{tag}:blocked"]


def stream_entry_id(event_id: int) -> str:
    """The Stream entry id of an event id (event ids are small integers, 1, 2, 3, ...)."""
    return f"0-{event_id}"


def event_id_of(entry_id: str | bytes) -> int:
    """The event id of a Stream entry id."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.rpartition("-")[2])
