"""Every Redis key and channel name of aijobs, in one place.

A job's own keys carry its id in a hash tag (``{...}``) so they share a slot and one Lua
script may touch them all. The fair queue's scripts build per-tenant names from the
patterns below (``{kind}``, ``{tenant}``), so the names still live only here.
"""

from __future__ import annotations

PREFIX = "aijobs"

#: Held for a moment by the worker process that runs a reconciler pass.
RECONCILER_LOCK = f"{PREFIX}:reconciler:lock"
#: Held for a purge interval by the worker process that ran the last retention purge.
PURGE_LOCK = f"{PREFIX}:purge:lock"
#: Held for a moment by the worker process that moves finished jobs' event logs to SQL.
ARCHIVE_LOCK = f"{PREFIX}:archive:lock"
#: A random value set once per Redis dataset: when it is gone, so is everything else.
EPOCH = f"{PREFIX}:epoch"

# -- the fair queue (see aijobs.fairqueue) ------------------------------------------------

#: Hash: worker process id -> "<kinds>;<slots>;<expires ms>" (the fleet's capacity).
FLEET = f"{PREFIX}:fleet"
#: List pushed on every submit and every freed slot: wakes one feeder at once.
WAKE = f"{PREFIX}:wake"
#: Sorted set of jobs that may not start yet (member ``kind|tenant|priority|job``,
#: score = when due, ms): retry backoffs, waits for budget, ``run_at``.
DELAYED = f"{PREFIX}:delayed"
#: Counter that keeps jobs of one priority first in, first out.
QUEUE_SEQ = f"{PREFIX}:q:seq"
#: Hash: tenant -> weight of its fair share (default 1).
WEIGHTS = f"{PREFIX}:weights"
#: Sorted set of a tenant's waiting jobs of one kind (score: priority, then arrival).
PENDING_PATTERN = PREFIX + ":q:{kind}:t:{tenant}"
#: Sorted set of tenants with waiting jobs of one kind (score: virtual time, fair share).
RING_PATTERN = PREFIX + ":q:{kind}:ring"
#: Hash: tenant -> its virtual time of one kind, kept while it has nothing waiting.
VTIME_PATTERN = PREFIX + ":q:{kind}:vt"
#: Sorted sets of jobs handed to a worker or running (score: until when, ms) — per kind
#: (the fleet's busy slots) and per tenant (its running cap). Entries past their time
#: lost their message or their worker: the reconciler puts them back in the queue.
KIND_ACTIVE_PATTERN = PREFIX + ":active:k:{kind}"
TENANT_ACTIVE_PATTERN = PREFIX + ":active:t:{tenant}"


def pending_key(kind: str, tenant: str) -> str:
    """A tenant's waiting jobs of one kind."""
    return PENDING_PATTERN.format(kind=kind, tenant=tenant)


def ring_key(kind: str) -> str:
    """The tenants with waiting jobs of one kind."""
    return RING_PATTERN.format(kind=kind)


def vtime_key(kind: str) -> str:
    """Tenants' virtual times for one kind."""
    return VTIME_PATTERN.format(kind=kind)


def kind_active_key(kind: str) -> str:
    """Jobs of one kind handed out or running."""
    return KIND_ACTIVE_PATTERN.format(kind=kind)


def tenant_active_key(tenant: str) -> str:
    """A tenant's jobs handed out or running."""
    return TENANT_ACTIVE_PATTERN.format(tenant=tenant)


def delayed_member(kind: str, tenant: str, priority: int, job_id: str) -> str:
    """A job's member in ``DELAYED``."""
    return f"{kind}|{tenant}|{priority}|{job_id}"


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
