"""``python -m ops.bench``: every workload beside its baseline in one run, one table.

    python -m ops.bench [--smoke] [--out DIR] [--only submit,dispatch,...] [sizes...]

Workloads (each in its own stack of processes, one after the other):

* submit: ``POST /v1/jobs`` (concurrent clients and one sequential client) against raw
  Celery ``send_task``, with ``GET /healthz`` and ``GET /v1/jobs/{id}`` for reference;
* starts: a burst of short jobs, worker and API CPU per job and job starts a second,
  against a bare Celery worker with our settings (no-op, and making the same call);
* dispatch: a burst of POSTs each followed by an SSE reader, end to end over HTTP (POST →
  running, added time to first token, job time, CPU per chunk and per event) against one
  asyncio ``AsyncOpenAI`` process streaming the same jobs (raw lines, typed), once per
  API process count;
* catchup: a finished job's whole log over SSE against ``XRANGE`` + ``json.loads``;
* readers: fan-out, SSE readers on ``aijobs api --workers 2`` against one ``XREAD BLOCK``
  connection each;
* streaming: ``aijobs worker`` relaying token streams against a naive Celery worker,
  swept over streams (one process) and over worker processes;
* memory: Redis ``used_memory`` per finished job;
* embeddings: one embed job through API and worker against direct SDK calls.

Prints one markdown table (figure, ours, baseline, ratio), writes ``bench.json`` and
``bench.png`` (throughput and job-time ratio against streams, worker processes and API
processes) to ``--out`` (default ``.aijobs/bench``). Exit code 1 if any workload failed
or checked wrong. No figure is asserted anywhere: the machine is shared, so compare
within one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from aijobs.devtools.harness import HarnessError, figures_table, write_json
from ops.bench import (
    catchup,
    chart,
    dispatch,
    embeddings,
    memory,
    readers,
    starts,
    streaming,
    submit,
)
from ops.bench.common import Workload, bench_harness

WORKLOADS = {
    "submit": submit.run,
    "dispatch": dispatch.run,
    "starts": starts.run,
    "catchup": catchup.run,
    "readers": readers.run,
    "streaming": streaming.run,
    "memory": memory.run,
    "embeddings": embeddings.run,
}

#: Sizes of a full run and of ``--smoke``; any option given on the command line wins.
FULL: dict[str, Any] = {
    "streams": [50, 200, 500, 1000], "processes": [1, 2], "process_streams": 200,
    "tokens": 200, "tps": 50.0, "baseline_jobs": 12,
    "readers": 1000, "reader_jobs": 50, "rate": 20.0, "seconds": 10.0,
    "texts": 100_000, "sample": 1000,
    "submits": 2000, "sequential": 300, "clients": 50,
    "burst": 200, "api_processes": [1, 2], "catchup_events": 10_000, "memory_jobs": 10_000,
}  # fmt: skip
SMOKE: dict[str, Any] = {
    "streams": [8], "processes": [1, 2], "process_streams": 8,
    "tokens": 20, "tps": 200.0, "baseline_jobs": 2,
    "readers": 20, "reader_jobs": 4, "rate": 20.0, "seconds": 1.0,
    "texts": 3000, "sample": 200,
    "submits": 100, "sequential": 20, "clients": 8,
    "burst": 8, "api_processes": [1, 2], "catchup_events": 1000, "memory_jobs": 100,
}  # fmt: skip


def int_list(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ops.bench", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add = parser.add_argument
    add("--smoke", action="store_true", help="tiny sizes (seconds, for tests)")
    add("--out", type=Path, default=Path(".aijobs/bench"), help="where JSON and PNG go")
    add("--only", default=",".join(WORKLOADS), help="comma-separated workloads to run")
    add("--api-workers", type=int, default=1, help="API processes (aijobs api --workers N)")
    sizes = parser.add_argument_group("sizes (defaults: a full run, or --smoke's)")
    size = sizes.add_argument
    size("--streams", type=int_list, help="streaming: streams of the sweep, e.g. 50,200,1000")
    size("--processes", type=int_list, help="streaming: worker processes of the sweep")
    size("--process-streams", type=int, help="streaming: streams in the process sweep")
    size("--tokens", type=int, help="streaming: tokens per job")
    size("--tps", type=float, help="streaming: provider tokens per second")
    size("--baseline-jobs", type=int, help="streaming: jobs of the naive baseline")
    size("--baseline-concurrency", type=int, default=2, help="naive prefork processes")
    size("--readers", type=int, help="readers: concurrent readers")
    size("--fanout-api-workers", type=int, default=2, help="readers: API processes")
    size("--reader-jobs", type=int, help="readers: running jobs they read")
    size("--rate", type=float, help="readers: deltas per second per job")
    size("--seconds", type=float, help="readers: how long the writer writes")
    size("--flush-ms", type=float, default=5.0, help="readers: EventWriter flush window")
    size("--texts", type=int, help="embeddings: texts to embed")
    size("--dimensions", type=int, default=256, help="embeddings: vector size")
    size("--embed-concurrency", type=int, default=4, help="embeddings: requests in flight")
    size("--sample", type=int, help="embeddings: vectors compared")
    size("--submits", type=int, help="submit: POSTs by the concurrent clients")
    size("--sequential", type=int, help="submit: POSTs by the sequential client")
    size("--clients", type=int, help="submit: concurrent clients")
    size("--burst", type=int, help="dispatch: jobs POSTed at once, each with an SSE reader")
    size("--api-processes", type=int_list, help="dispatch: API processes of the sweep")
    size("--catchup-events", type=int, help="catchup: events of the finished job read back")
    size("--memory-jobs", type=int, help="memory: finished jobs Redis holds")
    args = parser.parse_args(argv)
    for name, value in (SMOKE if args.smoke else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.only = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = set(args.only) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
    return args


def machine() -> dict[str, Any]:
    """What the figures were measured on, and how busy it was (other work shares it)."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
    }


def fmt_load(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in load)


def raise_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds every harness: all children stop


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    started = time.time()
    results: list[Workload] = []
    report: dict[str, Any] = {"config": vars(args), "machine_before": machine()}
    with tempfile.TemporaryDirectory(prefix="aijobs-bench-") as tmp:
        for name in args.only:
            print(f"== {name}", file=sys.stderr, flush=True)
            t0, load_at_start = time.time(), os.getloadavg()
            try:
                with bench_harness(Path(tmp) / name) as h:
                    result = WORKLOADS[name](h, args)
            except HarnessError as exc:
                result = Workload(name, problems=[f"failed: {exc}"])
            except Exception as exc:  # one broken workload must not hide the others' figures
                traceback.print_exc()
                result = Workload(name, problems=[f"failed: {type(exc).__name__}: {exc}"])
            result.details["run_s"] = time.time() - t0
            result.details["load_average_at_start"] = load_at_start
            results.append(result)
    figures = [f for r in results for f in r.figures]
    print(figures_table(figures))
    before, after = report["machine_before"], machine()
    print(
        f"\n{before['cpus']} CPUs, Python {before['python']}; load average (1, 5, 15 min) "
        f"before {fmt_load(before['load_average'])}, after {fmt_load(after['load_average'])}"
    )
    problems = [f"{r.name}: {p}" for r in results for p in r.problems]
    for problem in problems:
        print(f"PROBLEM {problem}")
    report |= {
        "machine_after": after,
        "total_run_s": time.time() - started,
        "figures": figures,
        "workloads": {r.name: {"details": r.details, "problems": r.problems} for r in results},
    }
    out = write_json(args.out / "bench.json", report)
    print(f"\nJSON: {out}", file=sys.stderr)
    by_name = {r.name: r for r in results}
    series = streaming.chart_series(by_name["streaming"]) if "streaming" in by_name else {}
    if "dispatch" in by_name:
        series |= dispatch.chart_series(by_name["dispatch"])
    if series:
        png = chart.draw(series, args.out / "bench.png")
        print(f"chart: {png}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; everything stopped", file=sys.stderr)
        sys.exit(130)
