"""The audit of a chaos run: every promise checked against what the run recorded, and the
one table.

What counts where (each job or reader counts at most once per column):

- **lost**: an accepted job that ended other than ``succeeded``, or whose result is not
  the provider's answer (text, data, vectors), or whose stream's ``result`` differs from
  its row's.
- **doubled**: a job or reader with two ``result`` or two ``done`` events (in the job's
  raw Redis stream too), a job whose row left a terminal state (polled twice a second
  through the run: terminal exactly once), a reader that got one event id twice, a job
  with more provider calls than attempts, or a provider call nothing explains (below):
  work done twice.
- **gaps**: a reader (or the fresh reader at the end, from the start) whose ids went down,
  or whose text at the end is not the result's text.
- **incomplete**: a reader that ended (``done`` or a 204) without the result of a job
  that succeeded, or the fresh reader at the end that got no ``done``.
- **hung**: a job not terminal by the run's deadline (the last fault + the recovery
  window), a reader that had not ended by then.

A provider call that is not the one whose answer became the result must be *explained*:
a fault the simulator served (429, 5xx, cut, stall, a trickle the deadline cut), or an
answer cut (or completed but not recorded) by a disruption of the run at that moment — a
worker SIGKILL (the call ended within 2 s of it), a stall (started before the SIGCONT,
ended from the SIGSTOP to 4 s after the SIGCONT; a worker that crashed by itself counts
the same, from its crash to its exit), a Redis outage (ended from its start to 8 s after
it was over), or the provider deadline (it ran that long). A duplicated
message is never an explanation: a duplicate must not reach the provider. The simulator
does not know which worker made a call, so the windows are the run's, not the worker's:
a spurious call inside some window passes; the calls-per-attempt count catches a
duplicate that ran as an attempt of its own.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from aijobs.devtools.harness import Figure
from tests.chaos.faults import Disruption
from tests.chaos.readers import Reader
from tests.chaos.workload import Expected, JobPlan
from tests.support import SseEvent, text_of

FAULT_OUTCOMES = ("rate_limit", "server_error", "cut", "trickle", "stall")
TERMINAL = ("succeeded", "failed", "cancelled")
COLUMNS = ("lost", "doubled", "gaps", "incomplete", "hung")


@dataclass
class JobRecord:
    """Everything the run learned about one accepted job."""

    plan: JobPlan
    row: Any  # the job's row at the end (aijobs.store.models.Job) or None
    final_read: list[SseEvent]
    final_done: bool
    raw_stream: list[tuple[int, str, dict[str, Any]]]
    vectors: list[bytes]
    readers: list[Reader]
    calls: dict[str, list[dict[str, Any]]]  # by request key
    expected: Expected | None
    #: The row's statuses as polled through the run, each change once, in order.
    statuses: list[str] = field(default_factory=list)


@dataclass
class Findings:
    """Problems by column, each a line that says whose and what; a column counts the jobs
    and readers with a problem (a job's own checks and its readers' apart)."""

    problems: dict[str, list[str]] = field(default_factory=lambda: {c: [] for c in COLUMNS})
    explanations: Counter[str] = field(default_factory=Counter)
    deadline_cut_ok_calls: int = 0
    _subjects: dict[str, set[str]] = field(default_factory=lambda: {c: set() for c in COLUMNS})

    def add(self, column: str, who: str, what: str, *, subject: str | None = None) -> None:
        self.problems[column].append(f"{who}: {what}")
        self._subjects[column].add(subject or who)

    def counts(self) -> dict[str, int]:
        return {c: len(v) for c, v in self._subjects.items()}


def explain_call(call: dict[str, Any], disruptions: Iterable[Disruption], *,
                 deadline_s: float) -> str | None:  # fmt: skip
    """Why a call that did not give the result happened, or None (see the module doc)."""
    outcome, end = call.get("outcome"), call.get("end")
    if outcome in FAULT_OUTCOMES and not (outcome == "trickle" and end == "completed"):
        return str(outcome)
    started = float(call["started"])
    ended = float(call["ended"]) if call.get("ended") is not None else None
    if ended is None:
        return None
    for d in disruptions:
        if d.kind == "kill" and started <= d.end + 0.2 and d.start - 2 <= ended <= d.end + 2:
            return "kill"
        if (
            d.kind in ("stall", "crash")
            and started <= d.end
            and (d.start - 1 <= ended <= d.end + 4)
        ):
            return d.kind
        if (
            d.kind.startswith("redis")
            and started <= d.end + 2
            and (d.start - 1 <= ended <= d.end + 8)
        ):
            return d.kind
    if end == "client_closed" and ended - started >= deadline_s - 0.5:
        return "deadline"
    return None


def _ids_problem(ids: list[int]) -> tuple[str | None, str | None]:
    """(doubled, gaps) descriptions of an id sequence: repeats, and ids going down."""
    seen: set[int] = set()
    doubled = gaps = None
    previous = 0
    for event_id in ids:
        if event_id in seen and doubled is None:
            doubled = f"event id {event_id} twice"
        elif event_id <= previous and gaps is None:
            gaps = f"event id {event_id} after {previous}"
        seen.add(event_id)
        previous = max(previous, event_id)
    return doubled, gaps


def _text_matches(plan: JobPlan, result: dict[str, Any] | None, text: str) -> bool:
    """The text a reader holds is the result's text (JSON-equal for extractions)."""
    if result is None:
        return True  # nothing to compare with: the job is counted as lost already
    if plan.kind == "generate":
        return text == result.get("text")
    if plan.kind == "extract":
        try:
            return json.loads(text) == result.get("data")
        except ValueError:
            return False
    return text == ""


def audit_job(record: JobRecord, disruptions: list[Disruption], findings: Findings, *,
              deadline_s: float) -> None:  # fmt: skip
    """Check one job's promises and its readers' (see the module's doc)."""
    plan, row = record.plan, record.row
    who = plan.label
    if row is None or row.status not in TERMINAL:
        findings.add("hung", who, f"not terminal at the deadline ({getattr(row, 'status', None)})")
    elif row.status != "succeeded":
        findings.add("lost", who, f"ended {row.status}: {row.error}")
    ended = [n for n, status in enumerate(record.statuses) if status in TERMINAL]
    if ended and ended[0] != len(record.statuses) - 1:
        findings.add("doubled", who, f"terminal, then not: {' -> '.join(record.statuses)}")
    result = row.result if row is not None and row.status == "succeeded" else None
    if result is not None and record.expected is not None:
        wrong = _wrong_output(record, result)
        if wrong:
            findings.add("lost", who, wrong)
    _audit_stream(record, result, findings)
    _audit_calls(record, result, disruptions, findings, deadline_s=deadline_s)
    for reader in record.readers:
        _audit_reader(plan, reader, result, findings)


def _wrong_output(record: JobRecord, result: dict[str, Any]) -> str | None:
    plan, expected = record.plan, record.expected
    assert expected is not None
    if plan.kind == "generate":
        if result.get("text") not in expected.texts.values():
            return f"result text {result.get('text')!r:.80} is neither provider answer"
    elif plan.kind == "extract":
        if result.get("data") != expected.data:
            return f"result data {result.get('data')!r:.80} is not {expected.data!r:.80}"
    else:
        if result.get("count") != len(expected.vectors) or (
            result.get("dimensions") != expected.dimensions
        ):
            return f"result {result} does not describe {len(expected.vectors)} vectors"
        if record.vectors != expected.vectors:
            wrong = sum(1 for a, b in zip(record.vectors, expected.vectors, strict=False)
                        if a != b)  # fmt: skip
            return (f"{len(record.vectors)} vectors, {wrong} of them unlike the direct "
                    f"embeddings of {len(expected.vectors)} inputs")  # fmt: skip
    return None


def _audit_stream(record: JobRecord, result: dict[str, Any] | None, findings: Findings) -> None:
    """The fresh reader at the end (from the start, through the API) and the raw stream."""
    who = f"{record.plan.label} (fresh reader)"
    job = record.plan.label
    events = record.final_read
    counts = Counter(e.event for e in events)
    doubled, gaps = _ids_problem([e.id for e in events])
    if doubled or counts["result"] > 1 or counts["done"] > 1:
        findings.add("doubled", who, doubled or f"{counts['result']} results, "
                                                f"{counts['done']} done", subject=job)  # fmt: skip
    if gaps:
        findings.add("gaps", who, gaps, subject=job)
    elif not _text_matches(record.plan, result, text_of(events)):
        findings.add("gaps", who, f"holds {text_of(events)!r:.80}, the result is {result!r:.80}",
                     subject=job)  # fmt: skip
    if not record.final_done:
        findings.add("incomplete", who, f"no done ({len(events)} events)", subject=job)
    elif result is not None and counts["result"] == 0:
        findings.add("incomplete", who, "done without the result", subject=job)
    streamed = [e.data for e in events if e.event == "result"]
    if result is not None and streamed and streamed[-1] != _public_result(record, result):
        findings.add("lost", who, f"the stream's result {streamed[-1]!r:.80} is not the row's",
                     subject=job)  # fmt: skip
    raw = Counter(event for _, event, _ in record.raw_stream)
    if raw["result"] > 1 or raw["done"] > 1:
        findings.add("doubled", f"{job} (Redis stream)",
                     f"{raw['result']} results, {raw['done']} done", subject=job)  # fmt: skip


def _public_result(record: JobRecord, result: dict[str, Any]) -> dict[str, Any]:
    if record.plan.kind == "embed":  # the event carries the counts; the row the vectors
        return {k: result[k] for k in ("count", "dimensions") if k in result}
    return result


def _audit_reader(plan: JobPlan, reader: Reader, result: dict[str, Any] | None,
                  findings: Findings) -> None:  # fmt: skip
    who = f"{plan.label} reader {reader.plan.name} ({reader.plan.transport})"
    if reader.hung or not reader.finished:
        findings.add("hung", who, f"no done by the deadline ({len(reader.events)} events, "
                                  f"last errors {reader.errors[-2:]})")  # fmt: skip
        return
    events = reader.events
    counts = Counter(e.event for e in events)
    doubled, gaps = _ids_problem([e.id for e in events])
    if doubled or counts["result"] > 1 or counts["done"] > 1:
        findings.add("doubled", who, doubled or f"{counts['result']} results, "
                                                f"{counts['done']} done")  # fmt: skip
    if gaps:
        findings.add("gaps", who, gaps)
    elif not _text_matches(plan, result, text_of(events)):
        findings.add("gaps", who, f"holds {text_of(events)!r:.80}, the result is {result!r:.80}")
    if not reader.done and not reader.ended_with_204:
        findings.add("incomplete", who, "ended without done or a 204")
    elif result is not None and counts["result"] == 0:
        findings.add(
            "incomplete",
            who,
            f"ended ({'204' if reader.ended_with_204 else 'done'}) without the result",
        )


def _audit_calls(record: JobRecord, result: dict[str, Any] | None,
                 disruptions: list[Disruption], findings: Findings, *,
                 deadline_s: float) -> None:  # fmt: skip
    """Provider calls per job, each explained (promise 4)."""
    plan, row = record.plan, record.row
    who = f"{plan.label} (provider calls)"
    finals = _final_calls(record, result)
    attempts = int(getattr(row, "attempts", 0) or 0)
    for key in plan.keys:
        calls = record.calls.get(key, [])
        per_attempt = 1 if plan.kind != "embed" else 3  # an embedding batch retries twice
        if len(calls) > max(1, attempts) * per_attempt:
            findings.add("doubled", who, f"{len(calls)} calls of key {key} in {attempts} attempts",
                         subject=plan.label)  # fmt: skip
            continue
        for call in calls:
            if call["seq"] in finals:
                continue
            why = explain_call(call, disruptions, deadline_s=deadline_s)
            if why == "deadline":
                findings.deadline_cut_ok_calls += 1
            if why is None:
                findings.add("doubled", who, "unexplained call " + _describe(call),
                             subject=plan.label)  # fmt: skip
                break
            findings.explanations[why] += 1


def _final_calls(record: JobRecord, result: dict[str, Any] | None) -> set[int]:
    """The calls whose answers became the result: one per key, the last that gave it."""
    if result is None or record.expected is None:
        return set()
    finals: set[int] = set()
    for key in record.plan.keys:
        done = [c for c in record.calls.get(key, []) if c.get("end") == "completed"
                and c.get("outcome") in ("ok", "trickle")]  # fmt: skip
        if record.plan.kind == "generate":
            texts = record.expected.texts
            done = [c for c in done if texts["odd" if c.get("odd_text") else "plain"]
                    == result.get("text")]  # fmt: skip
        if done:
            finals.add(int(done[-1]["seq"]))
    return finals


def _describe(call: dict[str, Any]) -> str:
    span = ""
    if call.get("ended") is not None:
        span = f" {call['started']:.3f}-{call['ended']:.3f}"
    return (f"seq={call['seq']} outcome={call.get('outcome')} end={call.get('end')}"
            f" chunks={call.get('chunks')}{span}")  # fmt: skip


def decode_vectors(result: dict[str, Any] | None) -> list[bytes]:
    """An embedding job's vectors from ``GET ?format=base64``."""
    if not result or not isinstance(result.get("embeddings"), list):
        return []
    return [base64.b64decode(v) for v in result["embeddings"]]


def table_figures(*, seed: int, wall_s: float, plans: list[JobPlan], readers: list[Reader],
                  slowest_s: float | None,
                  disruptions: list[Disruption], calls: list[dict[str, Any]],
                  workers_started: int, crashes: int, counts: dict[str, int]
                  ) -> list[Figure]:  # fmt: skip
    """The run's one table: load, faults, readers, then the five promises."""
    accepted = [p for p in plans if p.job_id]
    kinds = Counter(p.kind for p in accepted)
    done = Counter(d.kind for d in disruptions)
    faults = Counter(c["outcome"] for c in calls if c.get("source") == "chaos")
    odd = sum(1 for c in calls if c.get("odd_text"))
    transports = Counter(r.plan.transport for r in readers)

    def f(group: str, name: str, value: Any, needed: str = "") -> Figure:
        return Figure(group, name, value, needed or None, spec=",.0f")

    return [
        f("run", "seed", str(seed)),
        f("run", "wall time (s)", round(wall_s)),
        f("run", "jobs (generate / extract / embed)",
          f"{len(accepted)} ({kinds['generate']} / {kinds['extract']} / {kinds['embed']})",
          ">= 60 streaming"),
        f("run", "worker processes started", workers_started),
        f("run", "workers that exited by themselves (replaced)", crashes,
          "0: test_worker_survives_redis_outage"),
        f("run", "slowest job, submit to end (s)",
          None if slowest_s is None else round(slowest_s, 1), "about a minute"),
        f("faults", "worker SIGKILLs", done["kill"], ">= 20"),
        f("faults", "worker stalls (SIGSTOP > lease TTL)", done["stall"], ">= 1"),
        f("faults", "duplicated broker messages", done["duplicate"], ">= 1"),
        f("faults", "Redis restarts (AOF / empty / failover)",
          f"{done['redis_aof']} / {done['redis_empty']} / {done['redis_failover']}",
          ">= 1 / 1 / 1"),
        f("faults", "provider faults (429 / 5xx / cut / trickle / stall)",
          " / ".join(str(faults[k]) for k in FAULT_OUTCOMES)),
        f("faults", "odd-text answers (U+2028, U+2029, U+0085)", odd),
        f("faults", "provider calls", len(calls)),
        f("readers", "readers (SSE / WebSocket)",
          f"{len(readers)} ({transports['sse']} / {transports['ws']})"),
        f("readers", "reconnects", sum(r.reconnects for r in readers)),
        f("readers", "resets seen (a new attempt, or text again after a loss)",
          sum(1 for r in readers for e in r.events if e.event == "reset")),
        f("readers", "id jumps seen (ids skipped over a new attempt or a loss)",
          sum(1 for r in readers for a, b in pairwise(r.events) if b.id > a.id + 1)),
        *(f("promises", name, counts[name], "0") for name in COLUMNS),
    ]  # fmt: skip
