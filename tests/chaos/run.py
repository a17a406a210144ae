"""One chaos run, start to end: submit the jobs with their readers while the faults land,
wait for the recovery, gather what every part recorded, audit it, and write the table.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy.exc import SQLAlchemyError

from aijobs import redis_keys
from aijobs.devtools.harness import HarnessError, figures_table, wait_for, write_json
from tests.chaos.audit import (
    COLUMNS,
    Findings,
    JobRecord,
    audit_job,
    decode_vectors,
    table_figures,
)
from tests.chaos.cluster import STACK_SETTINGS, TENANT, Cluster
from tests.chaos.faults import Disruption, FaultDriver, make_schedule
from tests.chaos.readers import Reader, iter_sse_until
from tests.chaos.workload import JobPlan, expected_output, make_plans, reference_simulators
from tests.support import SseEvent

TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass
class RunConfig:
    """The size of a run (the defaults are the suite's: about 3 minutes on 2 cores)."""

    seed: int
    jobs: int = 96
    #: Submissions are spread over this many seconds; faults over ``fault_span_s``.
    spread_s: float = 110.0
    fault_span_s: float = 120.0
    kills: int = 24
    stalls: int = 5
    duplicates: int = 14
    workers: int = 3
    #: After the last fault, every job must be terminal within this (promise 3: "within
    #: about a minute"), and every reader must have ended soon after.
    recovery_s: float = 75.0
    readers_grace_s: float = 20.0


@dataclass
class RunOutcome:
    """The run's table, its counts, and where its evidence is."""

    table: str
    counts: dict[str, int]
    findings: Findings
    report_path: Path
    logs: Path
    problems: list[str] = field(default_factory=list)


class ChaosRun:
    """Drives one run on a :class:`Cluster` under ``workdir``."""

    def __init__(self, workdir: Path, config: RunConfig) -> None:
        self.workdir = workdir
        self.config = config
        self.plans = make_plans(config.seed, jobs=config.jobs, spread_s=config.spread_s)
        self.schedule = make_schedule(config.seed, span_s=config.fault_span_s,
                                      kills=config.kills, stalls=config.stalls,
                                      duplicates=config.duplicates)  # fmt: skip
        self.cluster = Cluster(workdir / "stack", config.seed)
        self.readers: dict[int, list[Reader]] = {}
        self._readers_lock = threading.Lock()
        self.reader_deadline = 0.0
        self.statuses: dict[str, list[str]] = {}
        self._watching = threading.Event()

    def run(self) -> RunOutcome:
        wall = time.monotonic()
        try:
            self.cluster.start(workers=self.config.workers)
            self.cluster.supervise()
            driver = FaultDriver(self.cluster, self.schedule, seed=self.config.seed)
            t0 = time.monotonic()
            # Readers get until every fault had its recovery time, and a little more.
            horizon = max(self.config.spread_s, self.config.fault_span_s)
            self.reader_deadline = t0 + horizon + self.config.recovery_s * 2
            driver.start(t0)
            watch = threading.Thread(target=self._watch_statuses, name="status-watch",
                                     daemon=True)  # fmt: skip
            watch.start()
            submitter = threading.Thread(target=self._submit_all, args=(t0,), daemon=True)
            submitter.start()
            submitter.join(self.config.spread_s + 120)
            driver.join(self.config.fault_span_s + 120)
            driver.stop()
            self._wait_recovery(driver)
            self._wait_readers()
            self._watching.set()
            watch.join(10)
            records = self._gather()
            calls = self.cluster.simulator_requests()
        finally:
            self._watching.set()
            self._stop_readers()
            self.cluster.close()
        return self._report(records, driver, calls, time.monotonic() - wall)

    # -- submitting ------------------------------------------------------------------------

    def _submit_all(self, t0: float) -> None:
        with self.cluster.client() as client:
            for plan in self.plans:
                # The submit's moment is the workload's schedule, not a condition.
                time.sleep(max(0.0, t0 + plan.submit_at_s - time.monotonic()))
                self._submit(client, plan)
                if plan.job_id:
                    self._start_readers(plan)

    def _submit(self, client: httpx.Client, plan: JobPlan) -> None:
        """POST the job, retrying through errors with the same Idempotency-Key (a client
        that did not hear the answer must not create the job twice)."""
        headers = {"Idempotency-Key": f"chaos-{self.config.seed}-{plan.index}"}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                answer = client.post("/v1/jobs", json=plan.body, headers=headers)
            except httpx.HTTPError as exc:
                plan.submit_error = repr(exc)
            else:
                if answer.status_code == 202:
                    plan.job_id = answer.json()["id"]
                    plan.accepted_at = time.time()
                    return
                plan.submit_error = f"HTTP {answer.status_code}: {answer.text[:200]}"
                if answer.status_code < 500 and answer.status_code != 429:
                    return  # refused for good: not an accepted job
            time.sleep(0.5)  # a client's pause between tries

    def _start_readers(self, plan: JobPlan) -> None:
        assert plan.job_id is not None
        started: list[Reader] = []
        for reader_plan in plan.readers:
            reader = Reader(reader_plan, plan.job_id, self.cluster.api.url, self.reader_deadline)
            started.append(reader)
        with self._readers_lock:
            self.readers[plan.index] = started
        for reader in started:
            if reader.plan.delay_s:
                timer = threading.Timer(reader.plan.delay_s, reader.start)
                timer.daemon = True
                timer.start()
            else:
                reader.start()

    def _watch_statuses(self) -> None:
        """Poll the rows twice a second: a job must become terminal once, and stay so."""
        while not self._watching.wait(0.5):
            try:
                rows, _ = self.cluster.repo.list(tenant=TENANT, limit=1000)
            except SQLAlchemyError:
                continue  # the store blinked under load: the next poll sees it
            for row in rows:
                seen = self.statuses.setdefault(row.id, [])
                if not seen or seen[-1] != row.status:
                    seen.append(row.status)

    # -- waiting ---------------------------------------------------------------------------

    def _wait_recovery(self, driver: FaultDriver) -> None:
        """Until every accepted job is terminal, or the recovery window after the last
        fault (or submit) ran out: what is left then is hung."""
        last = max([driver.last_end] + [p.accepted_at or 0.0 for p in self.plans])
        deadline_s = max(1.0, last + self.config.recovery_s - time.time())
        ids = [p.job_id for p in self.plans if p.job_id]

        def all_terminal() -> bool:
            rows = [self.cluster.repo.get(job_id) for job_id in ids]
            return all(row is not None and row.status in TERMINAL for row in rows)

        with contextlib.suppress(HarnessError):
            wait_for(all_terminal, timeout_s=deadline_s, what="every job to end", interval_s=1)

    def _wait_readers(self) -> None:
        deadline = min(self.reader_deadline, time.monotonic() + self.config.recovery_s
                       + self.config.readers_grace_s)  # fmt: skip

        def all_ended() -> bool:
            # A late reader whose timer has not fired yet has not ended either.
            return all(r.finished or r.hung for r in self._all_readers())

        with contextlib.suppress(HarnessError):
            wait_for(all_ended, timeout_s=max(1.0, deadline - time.monotonic()),
                     what="every reader to end", interval_s=0.5)  # fmt: skip
        for reader in self._all_readers():
            if not reader.finished:
                reader.hung = True  # its verdict is taken now, whatever it does later

    def _all_readers(self) -> list[Reader]:
        with self._readers_lock:
            return [r for group in self.readers.values() for r in group]

    def _stop_readers(self) -> None:
        for reader in self._all_readers():
            reader.deadline = 0.0  # each loop notices within its read timeout

    # -- gathering -------------------------------------------------------------------------

    def _gather(self) -> list[JobRecord]:
        """Each job's row, a fresh read of its events from the start, its raw Redis stream,
        its vectors, and what it should have ended with."""
        records: list[JobRecord] = []
        master = redis.Redis.from_url(self.cluster.redis.direct_url(), decode_responses=True,
                                      socket_timeout=10)  # fmt: skip
        try:
            with self.cluster.client(timeout_s=30) as client, reference_simulators() as bases:
                for plan in self.plans:
                    if plan.job_id is None:
                        continue
                    events, done = _read_all(client, plan.job_id)
                    vectors: list[bytes] = []
                    if plan.kind == "embed":
                        answer = client.get(f"/v1/jobs/{plan.job_id}",
                                            params={"format": "base64"})  # fmt: skip
                        vectors = decode_vectors(answer.json().get("result"))
                    records.append(JobRecord(
                        plan=plan,
                        row=self.cluster.repo.get(plan.job_id),
                        final_read=events,
                        final_done=done,
                        raw_stream=_raw_stream(master, plan.job_id),
                        vectors=vectors,
                        readers=self.readers.get(plan.index, []),
                        calls={},
                        expected=expected_output(plan, bases),
                        statuses=self.statuses.get(plan.job_id, []),
                    ))  # fmt: skip
        finally:
            master.close()
        return records

    # -- the report ------------------------------------------------------------------------

    def _report(self, records: list[JobRecord], driver: FaultDriver,
                calls: list[dict[str, Any]], wall_s: float) -> RunOutcome:  # fmt: skip
        by_key: dict[str, list[dict[str, Any]]] = {}
        for call in calls:
            by_key.setdefault(str(call.get("key")), []).append(call)
        findings = Findings()
        deadline_s = float(str(STACK_SETTINGS["provider_deadline_s"]))
        disruptions = driver.log + self._crashes()
        for record in records:
            record.calls = {key: by_key.get(key, []) for key in record.plan.keys}
            audit_job(record, disruptions, findings, deadline_s=deadline_s)
        not_accepted = [p for p in self.plans if p.job_id is None]
        counts = findings.counts()
        readers = self._all_readers()
        figures = table_figures(
            seed=self.config.seed, wall_s=wall_s, plans=self.plans, readers=readers,
            slowest_s=max((s for s in map(_seconds, records) if s is not None), default=None),
            disruptions=driver.log, calls=calls, workers_started=len(self.cluster.fleet),
            crashes=len(self.cluster.crashes()), counts=counts,
        )  # fmt: skip
        table = figures_table(figures, ours="run", baseline="needed")
        report = self.workdir / "chaos-report.json"
        write_json(report, {
            "seed": self.config.seed,
            "wall_s": round(wall_s, 1),
            "table": [f.as_dict() for f in figures],
            "counts": counts,
            "problems": findings.problems,
            "explained_calls": dict(findings.explanations),
            "ok_calls_cut_by_the_deadline": findings.deadline_cut_ok_calls,
            "not_accepted": [{"index": p.index, "error": p.submit_error} for p in not_accepted],
            "fault_errors": driver.errors,
            "faults_skipped": driver.skipped,
            "worker_crashes": [{"worker": m.worker.name, "at": m.crashed_at,
                                "exit_code": m.worker.returncode}
                               for m in self.cluster.crashes()],
            "disruptions": [vars(d) for d in sorted(disruptions, key=lambda d: d.start)],
            "evidence": self._evidence(findings, records, disruptions),
            "jobs": [_job_summary(r) for r in records],
        })  # fmt: skip
        problems = [f"[{column}] {line}" for column in COLUMNS
                    for line in findings.problems[column]]  # fmt: skip
        problems += [f"[fault not done] {e}" for e in driver.errors]
        problems += [f"[not accepted] #{p.index}: {p.submit_error}" for p in not_accepted]
        return RunOutcome(table, counts, findings, report, self.cluster.harness.log_dir, problems)

    def _crashes(self) -> list[Disruption]:
        """Workers that exited by themselves, from the crash their log tells of (kombu's
        "Unrecoverable error") to the exit the supervisor saw."""
        found: list[Disruption] = []
        for member in self.cluster.crashes():
            assert member.crashed_at is not None
            start = member.crashed_at
            with contextlib.suppress(OSError):
                for line in member.worker.log_path.read_text(errors="replace").splitlines():
                    stamp = _LOG_STAMP.match(line)
                    if stamp and "Unrecoverable error" in line:
                        start = _epoch(stamp.group(1))
                        break
            found.append(Disruption("crash", start, member.crashed_at,
                                    {"worker": member.worker.name}))  # fmt: skip
        return found

    def _evidence(self, findings: Findings, records: list[JobRecord],
                  disruptions: list[Disruption]) -> dict[str, Any]:  # fmt: skip
        """For each job with a problem: its calls, the faults around them, and every log
        line of the run that names it (the raw material of a repro)."""
        named = {m for lines in findings.problems.values() for line in lines
                 for m in _JOB_ID.findall(line)}  # fmt: skip
        logs = sorted(self.cluster.harness.log_dir.glob("*.log"))
        evidence: dict[str, Any] = {}
        for record in records:
            job_id = record.plan.job_id
            if job_id not in named:
                continue
            calls = [c for key in record.plan.keys for c in record.calls.get(key, [])]
            starts = [float(c["started"]) for c in calls] or [0.0]
            ends = [float(c.get("ended") or c["started"]) for c in calls] or [0.0]
            near = [vars(d) for d in disruptions
                    if d.end >= min(starts) - 15 and d.start <= max(ends) + 15]  # fmt: skip
            lines: list[str] = []
            for path in logs:
                with contextlib.suppress(OSError):
                    lines += [
                        f"{path.stem}: {line}"
                        for line in path.read_text(errors="replace").splitlines()
                        if job_id in line
                    ]
            evidence[job_id] = {
                "calls": calls,
                "disruptions_near": near,
                "log": lines[:120],
                "row": _job_summary(record),
                "result": getattr(record.row, "result", None),
                "fresh_read": [vars(e) for e in record.final_read],
                "raw_stream": record.raw_stream,
                "readers": {r.plan.name: {"events": [vars(e) for e in r.events],
                                          "errors": r.errors[-5:]}
                            for r in record.readers},
            }  # fmt: skip
        return evidence


_JOB_ID = re.compile(r"\b[0-9a-f]{32}\b")
#: The timestamp of a worker's log line: ours ("2026-12-01 14:02:39,930 ...") or Celery's
#: ("[2026-12-01 14:02:39,930: ...").
_LOG_STAMP = re.compile(r"^\[?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})")


def _epoch(stamp: str) -> float:
    """A log timestamp (local time, milliseconds after a comma) as epoch seconds."""
    whole, _, millis = stamp.partition(",")
    return time.mktime(time.strptime(whole, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000


def _read_all(client: httpx.Client, job_id: str) -> tuple[list[SseEvent], bool]:
    """A fresh reader at the end: every event from the start, in one connection (a job
    that never ended gets 20 s of it)."""
    events: list[SseEvent] = []
    deadline = time.monotonic() + 20
    try:
        with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
            if response.status_code != 200:
                return events, False
            for event in iter_sse_until(response, deadline):
                events.append(event)
                if event.event == "done":
                    return events, True
    except (httpx.HTTPError, TimeoutError):
        pass
    return events, False


def _raw_stream(master: redis.Redis, job_id: str) -> list[tuple[int, str, dict[str, Any]]]:
    entries = master.xrange(redis_keys.events_key(job_id))
    return [(redis_keys.event_id_of(entry_id), fields["e"], json.loads(fields["d"]))
            for entry_id, fields in entries]  # fmt: skip


def _seconds(record: JobRecord) -> float | None:
    """Submit to terminal, by the row."""
    row = record.row
    if row is None or row.finished_at is None:
        return None
    return float((row.finished_at - row.created_at).total_seconds())


def _job_summary(record: JobRecord) -> dict[str, Any]:
    row = record.row
    seconds = _seconds(record)
    return {
        "index": record.plan.index,
        "kind": record.plan.kind,
        "job_id": record.plan.job_id,
        "status": getattr(row, "status", None),
        "attempts": getattr(row, "attempts", None),
        "error": getattr(row, "error", None),
        "seconds": None if seconds is None else round(seconds, 2),
        "statuses": record.statuses,
        "calls": {key: [(c["seq"], c.get("outcome"), c.get("end")) for c in calls]
                  for key, calls in record.calls.items()},
        "readers": [{"name": r.plan.name, "transport": r.plan.transport, "events": len(r.events),
                     "reconnects": r.reconnects, "done": r.done, "ended_204": r.ended_with_204}
                    for r in record.readers],
    }  # fmt: skip


def run_chaos(workdir: Path, config: RunConfig) -> RunOutcome:
    """Run once and return the outcome (the caller prints and asserts)."""
    return ChaosRun(workdir, config).run()
