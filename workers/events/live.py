"""One pub/sub connection per API process, shared by every reader in it.

Readers subscribe to a job's channel while they follow it; the hub holds one
SUBSCRIBE per channel however many readers share it, and hands each reader a
bounded queue. A reader that falls behind is not allowed to stall the others:
its queue is marked overflowed and it catches up from the Stream by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from aijobs import redis_keys as keys
from aijobs.events.protocol import Event, parse_live_message

log = logging.getLogger(__name__)


class Subscription:
    """A reader's view of one job's live events."""

    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.overflowed = False

    def offer(self, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True

    def take_overflow(self) -> bool:
        """True (once) if events were dropped: the reader must re-read the Stream."""
        if not self.overflowed:
            return False
        self.overflowed = False
        while not self.queue.empty():
            self.queue.get_nowait()
        return True

    async def get(self, timeout_s: float) -> Event | None:
        """The next live event, or None after ``timeout_s`` of silence."""
        if not self.queue.empty():
            return self.queue.get_nowait()  # no timer, no task: the common case under load
        try:
            async with asyncio.timeout(timeout_s):
                return await self.queue.get()
        except TimeoutError:
            return None

    def drain(self, limit: int) -> list[Event]:
        """Up to ``limit`` events that are already waiting."""
        out: list[Event] = []
        queue = self.queue
        while len(out) < limit and not queue.empty():
            out.append(queue.get_nowait())
        return out


class LiveHub:
    """Multiplexes every reader's channel subscriptions over one pub/sub connection."""

    def __init__(self, redis: Redis, *, queue_size: int = 1024) -> None:
        self._redis = redis
        self._queue_size = queue_size
        self._pubsub: PubSub | None = None
        self._subs: dict[str, set[Subscription]] = {}
        self._lock = asyncio.Lock()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the reader task."""
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._task = asyncio.create_task(self._run(), name="aijobs-live-hub")

    async def close(self) -> None:
        """Stop reading and drop the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._pubsub is not None:
            await self._pubsub.aclose()
            self._pubsub = None

    @contextlib.asynccontextmanager
    async def subscribe(self, job_id: str) -> AsyncIterator[Subscription]:
        """Receive the job's live events for the duration of the block."""
        if self._pubsub is None:
            raise RuntimeError("LiveHub.start() was not called")
        channel = keys.live_channel(job_id)
        sub = Subscription(self._queue_size)
        async with self._lock:
            readers = self._subs.get(channel)
            if readers is None:
                await self._pubsub.subscribe(channel)
                readers = self._subs[channel] = set()
                self._ready.set()
            readers.add(sub)
        try:
            yield sub
        finally:
            async with self._lock:
                readers = self._subs.get(channel)
                if readers is not None:
                    readers.discard(sub)
                    if not readers:
                        del self._subs[channel]
                        with contextlib.suppress(RedisError, RuntimeError):
                            await self._pubsub.unsubscribe(channel)

    async def _run(self) -> None:
        assert self._pubsub is not None
        pubsub = self._pubsub
        await self._ready.wait()
        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except (RedisError, OSError) as exc:
                # Messages may have been lost while the connection was down: every
                # reader re-reads the Stream from its cursor.
                log.warning("live connection lost: %s", exc)
                for subs in self._subs.values():
                    for sub in subs:
                        sub.overflowed = True
                await asyncio.sleep(0.5)
                continue
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"]
            if isinstance(channel, bytes):
                channel = channel.decode()
            readers = self._subs.get(channel)
            if not readers:
                continue
            try:
                event = parse_live_message(message["data"])
            except ValueError:
                continue
            for sub in readers:
                sub.offer(event)
