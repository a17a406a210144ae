"""Reports: one aligned markdown table of figures (ours, baseline, ratio) and JSON."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aijobs.devtools.harness.stats import ratio

Value = float | int | str | None


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure of a workload: ours beside the baseline's, in ``unit``.

    ``spec`` formats numbers (``",.0f"``, ``".2f"``); a string value is shown as it is
    (for cells such as "12 / 9.5"), and gets no ratio.
    """

    workload: str
    name: str
    ours: Value
    baseline: Value = None
    unit: str = ""
    spec: str = ",.0f"

    def ratio(self) -> float | None:
        """``ours / baseline`` when both are numbers."""
        if isinstance(self.ours, str) or isinstance(self.baseline, str):
            return None
        return ratio(
            None if self.ours is None else float(self.ours),
            None if self.baseline is None else float(self.baseline),
        )

    def cells(self) -> list[str]:
        """workload, figure (with unit), ours, baseline, ratio: as printed."""
        found = self.ratio()
        name = f"{self.name} ({self.unit})" if self.unit else self.name
        return [
            self.workload,
            name,
            format_value(self.ours, self.spec),
            format_value(self.baseline, self.spec),
            "-" if found is None else f"x{format_ratio(found)}",
        ]

    def as_dict(self) -> dict[str, Any]:
        """For JSON (with the ratio)."""
        return {**dataclasses.asdict(self), "ratio": self.ratio()}


def format_value(value: Value, spec: str = ",.0f") -> str:
    """A cell: ``-`` for nothing (or NaN), a string as it is, a number by ``spec``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, str):
        return value
    return format(value, spec)


def format_ratio(value: float) -> str:
    """Two significant figures or more: x0.0042, x0.25, x3.1, x44."""
    if value == 0 or math.isinf(value):
        return f"{value:g}"
    if abs(value) >= 10:
        return f"{value:,.0f}"
    digits = max(1, 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A markdown table whose columns line up in plain text too."""
    body = [list(map(str, row)) for row in rows]
    widths = [len(h) for h in header]
    for row in body:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in body)])


def figures_table(
    figures: Iterable[Figure], *, ours: str = "ours", baseline: str = "baseline"
) -> str:
    """The one table of a run: every figure, its baseline and their ratio."""
    header = ["workload", "figure", ours, baseline, f"{ours} / {baseline}"]
    return markdown_table(header, (f.cells() for f in figures))


def to_jsonable(value: Any) -> Any:
    """Dataclasses, mappings, sequences, paths and numbers as JSON; NaN and inf as null."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        as_dict = getattr(value, "as_dict", None)
        return to_jsonable(as_dict() if callable(as_dict) else dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` (see :func:`to_jsonable`) as indented JSON; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(data), indent=2, allow_nan=False) + "\n")
    return path
