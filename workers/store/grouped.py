"""Writes of many threads committed together: one transaction, one commit (one fsync) for
every write that arrived while the previous group was being written.

A worker process runs a hundred jobs on as many threads; each job start (the claim) and
end (the terminal transition) is a small UPDATE whose cost is mostly its commit, and a
database commits one at a time (SQLite holds one write lock; PostgreSQL flushes its WAL
per commit). Alone, a write goes at once; in a burst of job starts, the claims queued
behind one commit share the next.

Each write is a function of the shared connection. If one raises, the group is rolled
back and each of its writes runs again alone, so a bad write fails only its own caller.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection

from aijobs.store.db import Database

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Writes per transaction at most (a longer one holds the write lock for longer).
MAX_GROUP = 200


@dataclass(slots=True)
class _Write(Generic[T]):
    run: Callable[[Connection], T]
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None


class GroupedWrites:
    """Runs ``write(conn)`` calls of any thread in shared transactions."""

    def __init__(self, db: Database, *, name: str = "aijobs-sql-writes") -> None:
        self._db = db
        self._inbox: queue.SimpleQueue[_Write[Any] | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def run(self, write: Callable[[Connection], T]) -> T:
        """Run ``write`` in the next group's transaction; its value once committed.
        Raises what ``write`` or the commit raised."""
        if self._closed:  # after close (a late thread at shutdown): alone, as before
            with self._db.engine.begin() as conn:
                return write(conn)
        item: _Write[T] = _Write(write)
        self._inbox.put(item)
        item.done.wait()
        if item.error is not None:
            raise item.error
        value: T = item.value
        return value

    def close(self) -> None:
        """Write what is waiting, then stop."""
        self._closed = True
        self._inbox.put(None)
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            first = self._inbox.get()
            if first is None:
                return
            group = [first]
            stop = False
            while len(group) < MAX_GROUP:
                try:
                    more = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                group.append(more)
            self._commit(group)
            if stop:
                return

    def _commit(self, group: list[_Write[Any]]) -> None:
        try:
            with self._db.engine.begin() as conn:
                for item in group:
                    item.value = item.run(conn)
        except BaseException as exc:
            if len(group) == 1:
                group[0].error = exc
            else:
                log.debug("a grouped write failed (%s); its %d writes go alone", exc, len(group))
                for item in group:
                    self._alone(item)
        for item in group:
            item.done.set()

    def _alone(self, item: _Write[Any]) -> None:
        item.value, item.error = None, None
        try:
            with self._db.engine.begin() as conn:
                item.value = item.run(conn)
        except BaseException as exc:
            item.error = exc
