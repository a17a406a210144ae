"""Event writes made outside a worker (the API cancelling a job that is not running)."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from aijobs import redis_keys as keys
from aijobs.events.protocol import dumps
from aijobs.events.scripts import WRITE_EVENTS, write_events_args


async def append_events(
    redis: Redis,
    job_id: str,
    attempt: int,
    events: list[tuple[str, dict[str, Any]]],
    *,
    retention_s: int,
    maxlen: int,
) -> int:
    """Append ``events`` as ``attempt`` (fenced like a worker's); the last event id, 0 if fenced."""
    script_keys, args = write_events_args(
        job_id,
        attempt,
        "append",
        [(event, dumps(data)) for event, data in events],
        retention_s=retention_s,
        maxlen=maxlen,
    )
    last, _current, _cancel = await redis.eval(WRITE_EVENTS, len(script_keys), *script_keys, *args)
    return max(0, int(last))


async def flag_cancel(redis: Redis, job_id: str, *, retention_s: int) -> None:
    """Tell the worker running the job to stop (it reads the flag on its next write)."""
    pipe = redis.pipeline(transaction=False)
    pipe.hset(keys.meta_key(job_id), "cancel", 1)
    pipe.expire(keys.meta_key(job_id), retention_s)
    await pipe.execute()
