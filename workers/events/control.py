"""Event writes made outside a running attempt: a job cancelled while it waited, a job
failed before another attempt, a job that waits for budget.

Each is one script call, fenced like a worker's, at ids its caller reserved in SQL
(``floor``: the reservation starts above it). It may jump over ids without a ``reset``
(it writes no text), and a ``write_id`` makes a retried call write nothing twice.
"""

from __future__ import annotations

import secrets
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from aijobs import redis_keys
from aijobs.events.protocol import dumps
from aijobs.events.scripts import WRITE_EVENTS, WriteStatus, parse_reply, write_events_args
from aijobs.settings import Settings


def _args(
    settings: Settings,
    job_id: str,
    attempt: int,
    events: list[tuple[str, dict[str, Any]]],
    *,
    floor: int,
    write_id: str,
    begin: bool,
) -> tuple[list[str], list[Any]]:
    return write_events_args(
        job_id,
        attempt,
        "begin" if begin else "append",
        [(event, dumps(data)) for event, data in events],
        retention_s=settings.stream_retention_s,
        maxlen=settings.stream_maxlen,
        floor=floor,
        jump_ok=True,
        write_id=write_id or f"w-{secrets.token_hex(8)}",
    )


def _last(reply: Any) -> int:
    last, _current, _cancel, status = parse_reply(reply)
    return 0 if status is WriteStatus.FENCED else max(0, last)


def append_once(
    redis: Redis,
    settings: Settings,
    job_id: str,
    attempt: int,
    events: list[tuple[str, dict[str, Any]]],
    *,
    floor: int,
    write_id: str = "",
    begin: bool = False,
) -> int:
    """Write ``events`` as ``attempt``; the last event id (0 if a newer attempt owns it)."""
    script_keys, args = _args(
        settings, job_id, attempt, events, floor=floor, write_id=write_id, begin=begin
    )
    return _last(redis.eval(WRITE_EVENTS, len(script_keys), *script_keys, *args))


async def append_once_async(
    redis: AsyncRedis,
    settings: Settings,
    job_id: str,
    attempt: int,
    events: list[tuple[str, dict[str, Any]]],
    *,
    floor: int,
    write_id: str = "",
) -> int:
    """``append_once`` from an asyncio process (the API)."""
    script_keys, args = _args(
        settings, job_id, attempt, events, floor=floor, write_id=write_id, begin=False
    )
    return _last(await redis.eval(WRITE_EVENTS, len(script_keys), *script_keys, *args))


async def flag_cancel(redis: AsyncRedis, job_id: str, *, retention_s: int) -> None:
    """Tell the worker running the job to stop (it reads the flag on its next write; the
    store's flag, which it also reads, is the durable one)."""
    pipe = redis.pipeline(transaction=False)
    pipe.hset(redis_keys.meta_key(job_id), "cancel", 1)
    pipe.expire(redis_keys.meta_key(job_id), retention_s)
    await pipe.execute()
