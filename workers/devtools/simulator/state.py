"""Mutable simulator state, kept on ``app.state.sim`` (never in module globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aijobs.devtools.simulator.chaos import ChaosDice
from aijobs.devtools.simulator.config import SimulatorConfig
from aijobs.devtools.simulator.faults import FaultQueue
from aijobs.devtools.simulator.request_log import RequestLog
from aijobs.devtools.simulator.stats import Stats


@dataclass(slots=True)
class SimulatorState:
    """Config, pending faults, chaos draws, counters and the request log of one simulator."""

    config: SimulatorConfig
    faults: FaultQueue = field(default_factory=FaultQueue)
    stats: Stats = field(default_factory=Stats)
    log: RequestLog = field(default_factory=RequestLog)
    dice: ChaosDice = field(init=False)
    #: Prompts answered before (hashes), for ``prompt_cache``: a repeat reports its
    #: prompt tokens as cached, as a provider's prompt cache does.
    seen_prompts: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        """Start the chaos sequence of the initial config."""
        self.dice = ChaosDice(self.config.chaos)

    def set_config(self, config: SimulatorConfig, restart_chaos: bool) -> None:
        """Install ``config``; ``restart_chaos`` starts the chaos sequence over from request 1."""
        self.config = config
        if restart_chaos or config.chaos != self.dice.config:
            self.dice = ChaosDice(config.chaos)

    def reset(self) -> None:
        """Clear counters, the request window, pending faults and the request log, and start
        the chaos sequence over (the config is kept)."""
        self.faults.clear()
        self.stats = Stats()
        self.log = RequestLog()
        self.seen_prompts = set()
        self.dice = ChaosDice(self.config.chaos)

    def stats_snapshot(self) -> dict[str, Any]:
        """``GET /_sim/stats`` body."""
        out = self.stats.snapshot()
        out["faults_pending"] = len(self.faults)
        out["config"] = self.config.as_dict()
        return out
