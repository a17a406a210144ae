"""The Lua script that appends a job's events: atomic, fenced by attempt, idempotent, and
never reusing an event id.

One call writes one batch of events of one attempt: ``XADD`` each to the job's Stream
(entry id ``0-<event id>``) and ``PUBLISH`` it on the job's channel. The job's meta hash
holds the fence (``attempt``), the last event id (``seq``), the last batch applied
(``applied``), the last one-shot write (``w``) and the cancel flag.

- **Fenced.** ``begin`` raises the fence to its attempt (refused unless newer);
  ``append`` writes only for the current attempt. A stale attempt's writes are refused.
- **Idempotent.** Each batch of an attempt has a sequence number: a batch already applied
  (a retry after a lost reply) writes nothing and answers as the first time did. A
  ``begin``, and a one-shot writer (the API cancelling a queued job), pass a write id
  instead: the same id again is the same write.
- **Ids never go back.** The caller passes a floor: the first id its reservation in SQL
  allows, or the last id it wrote itself. When Redis has less (it lost data: a restart
  without persistence, a lagging replica promoted), numbering continues above the floor.
  An attempt writer must start such a jump with a ``reset`` (a reader that fell into the
  hole recovers at it): without one the script writes nothing and answers ``RESTORE``,
  and the writer sends the batch again behind a ``reset`` that carries the text so far.
  A meta hash that is gone entirely (the fence with it) is restored the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum
from typing import Any

from aijobs import redis_keys


class WriteStatus(IntEnum):
    """How a write ended (the script's fourth answer)."""

    WRITTEN = 0
    DUPLICATE = 1  # this batch was applied before: nothing written again
    FENCED = 2  # another (newer) attempt owns the job's events
    RESTORE = 3  # Redis lost data: send again, starting with a reset


# KEYS: meta hash, events stream.
# ARGV: attempt, channel, retention_s, maxlen, mode ("begin" | "append"), batch seq
#       (0: none), floor, jump_ok (1: this writer may jump without a reset), write id
#       ("": none), then event type / data JSON pairs.
# Returns {last event id, current attempt, cancel flag, WriteStatus}.
WRITE_EVENTS = """
local attempt = tonumber(ARGV[1])
local bseq = tonumber(ARGV[6])
local floor = tonumber(ARGV[7])
local meta = redis.call('HMGET', KEYS[1], 'attempt', 'seq', 'applied', 'cancel', 'w')
local current = tonumber(meta[1] or '-1')
local seq = tonumber(meta[2] or '0')
local applied = tonumber(meta[3] or '0')
local cancel = tonumber(meta[4] or '0')
if ARGV[9] ~= '' and meta[5] == ARGV[9] then return {seq, current, cancel, 1} end
if ARGV[5] == 'begin' then
  if attempt <= current then return {-1, current, cancel, 2} end
elseif current == attempt then
  if bseq > 0 and bseq <= applied then return {seq, current, cancel, 1} end
elseif current > attempt then
  return {-1, current, cancel, 2}
end
local first = ARGV[10]
-- Lost: an appender whose fence is gone, or ids below what this writer already used.
local lost = (ARGV[5] ~= 'begin' and current == -1) or seq < floor
if first and lost and ARGV[8] ~= '1' and first ~= 'reset' then
  return {seq, current, cancel, 3}
end
if attempt > current then redis.call('HSET', KEYS[1], 'attempt', attempt) end
if seq < floor then seq = floor end
for i = 10, #ARGV, 2 do
  seq = seq + 1
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '0-' .. seq,
    'e', ARGV[i], 'a', ARGV[1], 'd', ARGV[i + 1])
  redis.call('PUBLISH', ARGV[2], '{"id":' .. seq .. ',"event":"' .. ARGV[i]
    .. '","attempt":' .. ARGV[1] .. ',"data":' .. ARGV[i + 1] .. '}')
end
redis.call('HSET', KEYS[1], 'seq', seq)
if bseq > 0 then redis.call('HSET', KEYS[1], 'applied', bseq) end
if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], 'w', ARGV[9]) end
if first then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {seq, attempt, cancel, 0}
"""


def write_events_args(
    job_id: str,
    attempt: int,
    mode: str,
    events: Iterable[tuple[str, str]],
    *,
    retention_s: int,
    maxlen: int,
    batch: int = 0,
    floor: int = 0,
    jump_ok: bool = False,
    write_id: str = "",
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of ``WRITE_EVENTS`` for ``events`` (type, data JSON) of one attempt."""
    args: list[Any] = [
        attempt,
        redis_keys.live_channel(job_id),
        retention_s,
        maxlen,
        mode,
        batch,
        floor,
        1 if jump_ok else 0,
        write_id,
    ]
    for event, data in events:
        args.append(event)
        args.append(data)
    return [redis_keys.meta_key(job_id), redis_keys.events_key(job_id)], args


def parse_reply(reply: Any) -> tuple[int, int, bool, WriteStatus]:
    """(last event id, current attempt, cancel requested, status) of a script answer."""
    last, current, cancel, status = (int(x) for x in reply)
    return last, current, bool(cancel), WriteStatus(status)
