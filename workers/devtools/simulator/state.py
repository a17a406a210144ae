"""Mutable simulator state, kept on ``app.state.sim`` (never in module globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aijobs.devtools.simulator.config import SimulatorConfig
from aijobs.devtools.simulator.faults import FaultQueue
from aijobs.devtools.simulator.stats import Stats


@dataclass(slots=True)
class SimulatorState:
    """Config, pending faults and counters of one simulator app."""

    config: SimulatorConfig
    faults: FaultQueue = field(default_factory=FaultQueue)
    stats: Stats = field(default_factory=Stats)

    def reset(self) -> None:
        """Clear counters, the request window and pending faults (the config is kept)."""
        self.faults.clear()
        self.stats = Stats()

    def stats_snapshot(self) -> dict[str, Any]:
        """``GET /_sim/stats`` body."""
        out = self.stats.snapshot()
        out["faults_pending"] = len(self.faults)
        out["config"] = self.config.as_dict()
        return out
