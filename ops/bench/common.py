"""What every workload module shares: the result type and how to start a bench role."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aijobs.devtools.harness import Figure, Harness, HarnessError

#: The repository root: bench roles run as ``python -m ops.bench.X`` from here.
ROOT = Path(__file__).resolve().parents[2]


class Failed(HarnessError):
    """A workload ran but its answer is wrong (a failed job, missing vectors)."""


@dataclass
class Workload:
    """One workload's outcome: table rows, everything measured (JSON), what went wrong."""

    name: str
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, label: str, name: str, ours: Any, baseline: Any = None, unit: str = "",
            spec: str = ",.0f") -> None:  # fmt: skip
        """One row of the table."""
        self.figures.append(Figure(label, name, ours, baseline, unit, spec))


def role_argv(module: str, *args: object) -> list[str]:
    """``python -m ops.bench.MODULE ARGS``: a helper process of a benchmark.

    Not ``-P``: these modules live in the repository, not in the installed package, and the
    harness starts them with the repository root as their working directory.
    """
    return [sys.executable, "-m", f"ops.bench.{module}", *map(str, args)]


def bench_harness(workdir: Path) -> Harness:
    """A harness whose children start in the repository root (so bench roles import)."""
    return Harness(workdir, cwd=ROOT)
