"""Dispatch and first token, end to end over HTTP, against the asyncio ``AsyncOpenAI`` limit.

A burst of ``--burst`` clients at once, each POSTing one generate job (``--tokens`` at
``--tps``) to ``aijobs api`` and reading its ``GET /v1/jobs/{id}/events`` to ``done``
(ops/bench/e2e.py); one ``aijobs worker`` process of ``--burst`` threads. Measured per
job at the client: POST → ``status: running`` event, SSE response head after the POST's
answer, added time to first token (first ``delta`` minus the POST's send time minus what
the provider alone takes for its first token, ``1 / tps``), job time (POST to ``done``);
over the burst: chunks/s, worker CPU per chunk, API CPU per SSE event delivered. The
burst runs once per ``--api-processes`` (``aijobs api --workers N``), the same worker.

The limit (ops/bench/limit.py): one asyncio process streaming the same jobs straight from
the simulator, no queue, reading raw lines, then typed chunks. Every job of ours is
verified: succeeded in one attempt, its deltas concatenate to ``result.text``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from sqlalchemy import select

from aijobs.devtools.harness import Harness, LinePipe, child_env, percentiles
from aijobs.store import Database, Job
from ops.bench import e2e
from ops.bench.common import Failed, Workload, role_argv


def ms(values: list[float]) -> dict[str, float]:
    return percentiles(values).scaled(1e3).as_dict()


def run_limit(stack: e2e.Stack, args: argparse.Namespace, mode: str) -> dict[str, Any]:
    """The limit's burst in its own process; its figures beside ours."""
    out = stack.h.workdir / f"limit-{mode}.json"
    argv = role_argv("limit", "--base-url", f"{stack.sim.url}/v1", "--jobs", args.burst,
                     "--tokens", args.tokens, "--mode", mode, "--out", out)  # fmt: skip
    stack.sim_call("POST", "reset")
    child = stack.h.spawn(f"limit-{mode}", argv, env=child_env(), pipe_stdin=True, pipe_stdout=True)
    try:
        LinePipe(child).expect("DONE", timeout_s=120 + 10 * args.tokens / args.tps)
    finally:
        child.stop()
    got = json.loads(out.read_text())
    rows, first_token_s = got["rows"], 1.0 / args.tps
    chunks = sum(r["chunks"] for r in rows)
    problems = [f"limit {mode}: {r['chunks']} chunks, not {args.tokens}" for r in rows
                if r["chunks"] != args.tokens][:3]  # fmt: skip
    busy = max(r["end"] for r in rows) - min(r["start"] for r in rows)
    return {
        "mode": mode,
        "jobs": len(rows),
        "chunks": chunks,
        "chunks_per_s": chunks / busy if busy > 0 else 0.0,
        "added_ttft_ms": ms([r["first"] - r["start"] - first_token_s for r in rows]),
        "mean_job_s": statistics.fmean(r["end"] - r["start"] for r in rows),
        "cpu_s": got["cpu_s"],
        "cpu_per_chunk_us": got["cpu_s"] / max(chunks, 1) * 1e6,
        "problems": problems,
    }


def verify(database_url: str, followed: list[e2e.Followed], tokens: int) -> dict[str, Any]:
    """Every job succeeded once, its deltas are its text; SQL's started_at for each."""
    db = Database(database_url)
    ids = [f.job_id for f in followed if f.job_id]
    with db.session() as s:
        rows = {j.id: j for j in s.scalars(select(Job).where(Job.id.in_(ids)))}
    db.dispose()
    problems, started, chunks = [], {}, 0
    for f in followed:
        job = rows.get(f.job_id)
        if f.errors or job is None:
            problems.append(f"job {f.index}: {f.errors or 'no row'}")
            continue
        used = int((job.usage or {}).get("completion_tokens") or 0)
        chunks += used
        if job.status != "succeeded" or f.status != "succeeded" or job.attempts != 1:
            problems.append(f"job {f.job_id}: {job.status}/{f.status}, {job.attempts} attempts")
        elif "".join(f.text) != (job.result or {}).get("text") or used != tokens:
            problems.append(f"job {f.job_id}: deltas != result.text, or {used} tokens")
        if job.started_at is not None:
            started[f.job_id] = job.started_at.timestamp()
    return {"problems": problems, "started_at": started, "chunks": chunks}


def run_burst(stack: e2e.Stack, args: argparse.Namespace, api_processes: int) -> dict[str, Any]:
    """One measured burst through an API of ``api_processes`` processes."""
    api = stack.start_api(api_processes)
    e2e.warm_up(stack)
    e2e.idle(stack)
    stack.sim_call("POST", "reset")
    meter = stack.meter()
    meter.start()
    ideal = args.tokens / args.tps
    followed = e2e.burst(api.port, args.burst, args.tokens, timeout_s=120 + 20 * ideal)
    cpu = e2e.cpu_totals(meter)
    checked = verify(stack.database_url, followed, args.tokens)
    ok = [f for f in followed if f.finished and f.first_delta and f.running]
    if not ok:
        raise Failed(f"no job of the burst finished: {checked['problems'][:3]}")
    chunks, events = checked["chunks"], sum(f.events for f in followed)
    busy = max(f.done for f in ok) - min(f.posted for f in ok)
    started = checked["started_at"]
    return {
        "api_processes": api_processes,
        "jobs": len(followed),
        "finished": len(ok),
        "verified": len(followed) - len(checked["problems"]),
        "chunks": chunks,
        "events": events,
        "chunks_per_s": chunks / busy if busy > 0 else 0.0,
        "post_ms": ms([f.accepted - f.posted for f in ok]),
        "running_ms": ms([f.running - f.posted for f in ok]),
        "running_sql_ms": ms([started[f.job_id] - f.posted for f in ok if f.job_id in started]),
        "headers_ms": ms([f.headers - f.accepted for f in ok]),
        "added_ttft_ms": ms([f.first_delta - f.posted - 1.0 / args.tps for f in ok]),
        "mean_job_s": statistics.fmean(f.done - f.posted for f in ok),
        "ideal_job_s": ideal,
        "job_time_ratio": statistics.fmean(f.done - f.posted for f in ok) / ideal,
        "cpu_s": cpu,
        "worker_cpu_per_chunk_us": cpu["worker"] / max(chunks, 1) * 1e6,
        "api_cpu_per_event_us": cpu["api"] / max(events, 1) * 1e6,
        "problems": checked["problems"],
    }


def run(h: Harness, args: argparse.Namespace) -> Workload:
    """The limit (raw, typed), then a burst per API process count, in one stack."""
    stack = e2e.start_stack(h, args.tps, args.tokens)
    limits = {mode: run_limit(stack, args, mode) for mode in ("raw", "typed")}
    stack.start_workers(1, concurrency=args.burst)
    bursts = [run_burst(stack, args, n) for n in args.api_processes]
    return report(args, bursts, limits)


def report(args: argparse.Namespace, bursts: list[dict[str, Any]],
           limits: dict[str, dict[str, Any]]) -> Workload:  # fmt: skip
    result = Workload("dispatch", details={"bursts": bursts, "limit": limits})
    raw, typed = limits["raw"], limits["typed"]
    for fig in [*bursts, raw, typed]:
        result.problems += fig["problems"][:5]
    ideal = args.tokens / args.tps
    base = "limit: asyncio AsyncOpenAI, raw lines"
    for b in bursts:
        label = f"dispatch {args.burst} jobs, API x{b['api_processes']}"
        result.add(label, "jobs verified", f"{b['verified']}/{b['jobs']}",
                   f"{raw['jobs']} ({base})")  # fmt: skip
        for q in ("p50", "p99"):
            result.add(label, f"POST → running {q} (reader's status event)",
                       b["running_ms"][q], None, "ms", ".1f")  # fmt: skip
        for q in ("p50", "p99"):
            result.add(label, f"POST → running {q} (job record's started_at)",
                       b["running_sql_ms"][q], None, "ms", ".1f")  # fmt: skip
        result.add(
            label,
            "POST answer p50 / p99",
            f"{b['post_ms']['p50']:.1f} / {b['post_ms']['p99']:.1f}",
            unit="ms",
        )
        for q in ("p50", "p99"):
            result.add(label, f"added time to first token {q}", b["added_ttft_ms"][q],
                       raw["added_ttft_ms"][q], "ms", ".1f")  # fmt: skip
        result.add(
            label,
            "SSE headers after POST answer p50 / p99",
            f"{b['headers_ms']['p50']:.1f} / {b['headers_ms']['p99']:.1f}",
            unit="ms",
        )
        result.add(label, f"mean job time (ideal {ideal:.2f} s)", b["mean_job_s"],
                   raw["mean_job_s"], "s", ".2f")  # fmt: skip
        result.add(label, "chunks / s", b["chunks_per_s"], raw["chunks_per_s"])
        result.add(label, "worker CPU per chunk vs limit raw", b["worker_cpu_per_chunk_us"],
                   raw["cpu_per_chunk_us"], "µs")  # fmt: skip
        result.add(label, "worker CPU per chunk vs limit typed", b["worker_cpu_per_chunk_us"],
                   typed["cpu_per_chunk_us"], "µs")  # fmt: skip
        result.add(label, "API CPU per SSE event (POSTs included)", b["api_cpu_per_event_us"],
                   None, "µs")  # fmt: skip
    return result


def chart_series(result: Workload) -> dict[str, Any]:
    """By API processes: chunks/s and job time / ideal of each burst; the raw-lines limit."""
    bursts = sorted(result.details.get("bursts", []), key=lambda b: b["api_processes"])
    limit = dict(result.details.get("limit", {}).get("raw") or {})
    if bursts and limit:
        limit["job_time_ratio"] = limit["mean_job_s"] / bursts[0]["ideal_job_s"]
    return {"by_api_processes": bursts, "limit": limit}
