"""CPU seconds (user + sys) of process trees, as snapshots and differences."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import psutil


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """User and system CPU seconds."""

    user: float = 0.0
    system: float = 0.0

    @property
    def total(self) -> float:
        """User + system."""
        return self.user + self.system

    def __add__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.user + other.user, self.system + other.system)

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.user - other.user, self.system - other.system)


def tree_cpu(pid: int) -> CpuTimes:
    """CPU so far of a process, its live descendants and the children they have reaped.

    A descendant that exited and was reaped is in its parent's ``children_*`` times; one
    that exited but was not reaped yet is counted nowhere (psutil cannot see it), which is
    why a measurement should end while the measured processes still run. A process that is
    gone counts zero.
    """
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return CpuTimes()
    procs = [root]
    with contextlib.suppress(psutil.Error):
        procs += root.children(recursive=True)
    user = system = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            user += t.user + t.children_user
            system += t.system + t.children_system
    return CpuTimes(user, system)


def cpu_snapshot(pids: Mapping[str, int]) -> dict[str, CpuTimes]:
    """``tree_cpu`` of each named process tree, now."""
    return {name: tree_cpu(pid) for name, pid in pids.items()}


def cpu_diff(before: Mapping[str, CpuTimes], after: Mapping[str, CpuTimes]) -> dict[str, CpuTimes]:
    """What each named tree used between two snapshots (names missing before count zero)."""
    return {name: used - before.get(name, CpuTimes()) for name, used in after.items()}


class CpuMeter:
    """CPU of named process trees over a window: ``start()``, the work, ``stop()``."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self.before: dict[str, CpuTimes] = {}

    def start(self) -> None:
        """Take the opening snapshot."""
        self.before = cpu_snapshot(self.pids)

    def stop(self) -> dict[str, CpuTimes]:
        """CPU used by each tree since ``start()``."""
        return cpu_diff(self.before, cpu_snapshot(self.pids))


def own_cpu() -> CpuTimes:
    """CPU so far of this process alone (not its children: those are the measured ones)."""
    t = psutil.Process().cpu_times()
    return CpuTimes(t.user, t.system)
