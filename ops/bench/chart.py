"""The run's PNG: throughput and job-time ratio against streams, worker and API processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def draw(series: dict[str, Any], path: Path) -> Path:
    """Draw a 2 x 3 grid: chunks/s and job time / ideal, by streams, worker processes (the
    streaming workload, against the naive worker) and API processes (the dispatch burst
    through HTTP, against the asyncio limit)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    from matplotlib import pyplot as plt

    columns = [
        ("by_streams", "streams (1 worker process)", "streams", "naive", "naive (prefork -c2)"),
        ("by_processes", "worker processes", "processes", "naive", "naive (prefork -c2)"),
        ("by_api_processes", "API processes (dispatch burst over HTTP)", "api_processes",
         "limit", "limit (asyncio, raw lines)"),
    ]  # fmt: skip
    fig, axes = plt.subplots(2, len(columns), figsize=(16, 7.5), squeeze=False)
    for col, (key, xlabel, field, base_key, base_label) in enumerate(columns):
        naive = series.get(base_key) or {}
        points = series.get(key) or []
        xs = [p[field] for p in points]
        for row, (metric, ylabel) in enumerate(
            [("chunks_per_s", "chunks relayed / s"), ("job_time_ratio", "mean job time / ideal")]
        ):
            ax = axes[row][col]
            if xs:
                ys = [p[metric] for p in points]
                ax.plot(xs, ys, "o-", label="ours (aijobs worker)")
                if metric == "chunks_per_s" and naive.get(metric):
                    for x, y in zip(xs, ys, strict=True):  # the ratio to the baseline
                        ax.annotate(f"x{y / naive[metric]:.1f}", (x, y), xytext=(4, 4),
                                    textcoords="offset points", fontsize=8)  # fmt: skip
            if naive.get(metric) is not None and xs:
                ax.plot(xs, [naive[metric]] * len(xs), "s--", label=base_label)
            if key == "by_streams" and len(xs) > 1 and max(xs) / min(xs) >= 10:
                ax.set_xscale("log")
            ax.minorticks_off()  # only the measured points are labelled
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.3)
            if row == 0:
                ax.set_ylim(bottom=0)  # throughput from zero: a 5 % gap must not look like 2x
            if row == 1:
                ax.axhline(1.0, color="grey", linewidth=0.8)
                # A scale of at least 0.9..1.2, so 3 % of noise does not look like a cliff.
                low, high = ax.get_ylim()
                ax.set_ylim(min(low, 0.9), max(high, 1.2))
            if xs:
                ax.legend(fontsize=8)
    fig.suptitle("aijobs against its baselines, same run")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
