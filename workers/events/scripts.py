"""Lua scripts that write a job's events atomically and fenced by attempt."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aijobs import redis_keys as keys

# KEYS: meta hash, events stream.
# ARGV: attempt, channel, retention_s, maxlen, mode ("append" | "begin"),
#       then event type / data JSON pairs.
# "begin" raises the fence to ``attempt`` (refused unless it is newer than the
# current one); "append" writes only while ``attempt`` is the current one.
# Returns {last event id or -1 when fenced, current attempt, cancel flag}.
WRITE_EVENTS = """
local attempt = tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', KEYS[1], 'attempt') or '0')
if ARGV[5] == 'begin' then
  if attempt <= current then return {-1, current, 0} end
  redis.call('HSET', KEYS[1], 'attempt', attempt)
  current = attempt
elseif attempt ~= current then
  return {-1, current, 0}
end
local last = 0
for i = 6, #ARGV, 2 do
  last = redis.call('HINCRBY', KEYS[1], 'seq', 1)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '0-' .. last,
    'e', ARGV[i], 'a', ARGV[1], 'd', ARGV[i + 1])
  redis.call('PUBLISH', ARGV[2], '{"id":' .. last .. ',"event":"' .. ARGV[i]
    .. '","attempt":' .. ARGV[1] .. ',"data":' .. ARGV[i + 1] .. '}')
end
if last == 0 then
  last = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
else
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {last, current, tonumber(redis.call('HGET', KEYS[1], 'cancel') or '0')}
"""


def write_events_args(
    job_id: str,
    attempt: int,
    mode: str,
    events: Iterable[tuple[str, str]],
    *,
    retention_s: int,
    maxlen: int,
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of ``WRITE_EVENTS`` for ``events`` (type, data JSON) of one attempt."""
    args: list[Any] = [attempt, keys.live_channel(job_id), retention_s, maxlen, mode]
    for event, data in events:
        args.append(event)
        args.append(data)
    return [keys.meta_key(job_id), keys.events_key(job_id)], args
