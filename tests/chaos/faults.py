"""The fault schedule of a run (drawn from its seed) and the threads that carry it out.

Process faults (SIGKILL of a worker and its replacement, a SIGSTOP longer than the lease
then SIGCONT, a duplicated broker message for a running job) and Redis faults (restart
from the AOF, restart empty, failover to a lagging replica) run on two threads of their
own, so a Redis outage does not hold up the kills around it. Every fault done is logged
as a :class:`Disruption` with wall-clock times, which the audit lines up with the
simulator's request log.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from aijobs.schemas import JobStatus
from tests.chaos.cluster import TENANT, Cluster


@dataclass(frozen=True)
class Fault:
    """One planned fault: what, when (seconds from the run's start), and its parameter."""

    at_s: float
    kind: str  # kill | stall | duplicate | redis_aof | redis_empty | redis_failover
    duration_s: float = 0.0


@dataclass
class Disruption:
    """A fault as it happened (``time.time()``): from ``start`` to ``end``."""

    kind: str
    start: float
    end: float
    detail: dict[str, Any] = field(default_factory=dict)


PROCESS_FAULTS = ("kill", "stall", "duplicate")
REDIS_FAULTS = ("redis_aof", "redis_empty", "redis_failover")


def make_schedule(seed: int, *, span_s: float, kills: int, stalls: int, duplicates: int
                  ) -> list[Fault]:  # fmt: skip
    """The run's faults over ``span_s`` seconds: the process faults at random moments, the
    Redis ones in a seeded order, far enough apart that each recovery is its own."""
    rng = random.Random(f"{seed}/faults")
    start = 6.0
    faults = [Fault(rng.uniform(start, span_s), "kill") for _ in range(kills)]
    faults += [Fault(rng.uniform(start, span_s - 6), "stall", rng.uniform(3.0, 5.0))
               for _ in range(stalls)]  # fmt: skip
    faults += [Fault(rng.uniform(start, span_s), "duplicate") for _ in range(duplicates)]
    # Two AOF restarts, one empty restart, one failover; the failover goes last because it
    # changes which node is the master for good.
    redis_kinds = ["redis_aof", "redis_aof", "redis_empty"]
    rng.shuffle(redis_kinds)
    redis_kinds.append("redis_failover")
    slot = (span_s - 20.0) / len(redis_kinds)
    for n, kind in enumerate(redis_kinds):
        at = 15.0 + n * slot + rng.uniform(0, slot * 0.5)
        # A failover's lag; a restart's outage (loading a dataset takes seconds).
        faults.append(Fault(at, kind, 3.0 if kind == "redis_failover" else rng.uniform(0.5, 2.5)))
    return sorted(faults, key=lambda f: f.at_s)


class FaultDriver:
    """Carries out a schedule against a cluster; every fault done goes in ``log``."""

    def __init__(self, cluster: Cluster, schedule: list[Fault], *, seed: int) -> None:
        self.cluster = cluster
        self.schedule = schedule
        self.rng = random.Random(f"{seed}/driver")
        self.log: list[Disruption] = []
        self.errors: list[str] = []
        self.skipped: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._t0 = 0.0
        self._pending_resumes: list[threading.Timer] = []

    def start(self, t0: float) -> None:
        """Run the schedule, with ``t0`` (``time.monotonic()``) as its zero."""
        self._t0 = t0
        process = [f for f in self.schedule if f.kind in PROCESS_FAULTS]
        redis = [f for f in self.schedule if f.kind in REDIS_FAULTS]
        for name, faults in (("process", process), ("redis", redis)):
            thread = threading.Thread(target=self._run, args=(faults,), name=f"faults-{name}",
                                      daemon=True)  # fmt: skip
            thread.start()
            self._threads.append(thread)

    def join(self, timeout_s: float) -> bool:
        """Wait for the schedule to be carried out; True if it was."""
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for timer in self._pending_resumes:
            timer.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads + self._pending_resumes)

    def stop(self) -> None:
        self._stop.set()

    @property
    def last_end(self) -> float:
        with self._lock:
            return max((d.end for d in self.log), default=0.0)

    def count(self, kind: str) -> int:
        with self._lock:
            return sum(1 for d in self.log if d.kind == kind)

    # -- the loop -------------------------------------------------------------------------

    def _run(self, faults: list[Fault]) -> None:
        actions: dict[str, Callable[[Fault], None]] = {
            "kill": self._kill, "stall": self._stall, "duplicate": self._duplicate,
            "redis_aof": self._redis_restart, "redis_empty": self._redis_restart,
            "redis_failover": self._redis_failover,
        }  # fmt: skip
        for fault in faults:
            # Waiting for the fault's moment is the schedule itself, not a condition.
            if self._stop.wait(max(0.0, self._t0 + fault.at_s - time.monotonic())):
                return
            try:
                actions[fault.kind](fault)
            except Exception as exc:  # a fault that could not be done is reported, not fatal
                self.errors.append(f"{fault.kind} at {fault.at_s:.1f}s: {exc!r}")

    def _record(self, kind: str, start: float, end: float, **detail: Any) -> None:
        with self._lock:
            self.log.append(Disruption(kind, start, end, detail))

    # -- process faults -------------------------------------------------------------------

    def _pick_worker(self) -> Any:
        running = self.cluster.running_workers()
        return self.rng.choice(running) if running else None

    def _kill(self, fault: Fault) -> None:
        member = self._pick_worker()
        if member is None:
            self.skipped.append(f"kill at {fault.at_s:.1f}s: no running worker")
            return
        start = time.time()
        self.cluster.kill_worker(member)
        self._record("kill", start, time.time(), worker=member.worker.name)
        self.cluster.start_worker()  # the replacement, as an orchestrator would

    def _stall(self, fault: Fault) -> None:
        member = self._pick_worker()
        if member is None:
            self.skipped.append(f"stall at {fault.at_s:.1f}s: no running worker")
            return
        start = time.time()
        self.cluster.stall_worker(member)

        def resume() -> None:
            self.cluster.resume_worker(member)
            self._record("stall", start, time.time(), worker=member.worker.name,
                         seconds=round(fault.duration_s, 2))  # fmt: skip

        timer = threading.Timer(fault.duration_s, resume)
        timer.daemon = True
        self._pending_resumes.append(timer)
        timer.start()

    def _duplicate(self, fault: Fault) -> None:
        # A job running right now, as its row says: its message delivered once more.
        last = "no running job"
        for _ in range(20):
            rows, _ = self.cluster.repo.list(tenant=TENANT, status=JobStatus.RUNNING, limit=100)
            if rows:
                row = self.rng.choice(sorted(rows, key=lambda r: r.id))
                start = time.time()
                try:
                    self.cluster.send_duplicate(row.id, row.kind)
                except OperationalError as exc:  # the broker is down this instant
                    last = repr(exc)
                else:
                    self._record("duplicate", start, time.time(), job=row.id,
                                 attempt=row.attempts)  # fmt: skip
                    return
            # Nothing runs (or the broker is down) this instant: the schedule waits a bit.
            if self._stop.wait(0.5):
                return
        self.skipped.append(f"duplicate at {fault.at_s:.1f}s: {last}")

    # -- Redis faults ---------------------------------------------------------------------

    def _redis_restart(self, fault: Fault) -> None:
        empty = fault.kind == "redis_empty"
        start = time.time()
        port = self.cluster.redis.restart(empty=empty, down_s=fault.duration_s)
        self.cluster.redis.wait_master_answers()
        self._record(fault.kind, start, time.time(), port=port, down_s=round(fault.duration_s, 2))

    def _redis_failover(self, fault: Fault) -> None:
        start = time.time()
        try:
            report = self.cluster.redis.fail_over_to_lagging_replica(fault.duration_s)
            self.cluster.redis.wait_master_answers()
        except RedisError as exc:
            raise RuntimeError(f"failover failed: {exc}") from exc
        self._record(fault.kind, start, time.time(), old_master=report.old_master,
                     new_master=report.new_master, lag_bytes=report.lag_bytes,
                     promotion_s=round(report.promotion_s, 2))  # fmt: skip
