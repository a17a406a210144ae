"""The audit's own checks, on made-up runs: a chaos run that passes is only worth something
if the same audit fails the runs that break a promise."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from tests.chaos.audit import Findings, JobRecord, audit_job, explain_call
from tests.chaos.faults import Disruption
from tests.chaos.readers import Reader
from tests.chaos.workload import Expected, JobPlan, ReaderPlan
from tests.support import SseEvent

T0 = 1_700_000_000.0
TEXT = "Hello \u2028odd world"
KEY = "k1"


def events(*items: tuple[int, str, dict[str, Any]]) -> list[SseEvent]:
    return [SseEvent(i, e, d) for i, e, d in items]


def good_story() -> list[SseEvent]:
    return events(
        (1, "status", {"status": "running", "attempt": 1}),
        (2, "delta", {"text": "Hello \u2028odd", "attempt": 1}),
        (3, "delta", {"text": " world", "attempt": 1}),
        (4, "result", {"text": TEXT, "finish_reason": "stop"}),
        (5, "done", {"status": "succeeded"}),
    )


def call(seq: int, outcome: str, end: str, started: float, ended: float,
         odd: bool = True) -> dict[str, Any]:  # fmt: skip
    return {"seq": seq, "outcome": outcome, "end": end, "started": T0 + started,
            "ended": T0 + ended, "odd_text": odd, "source": "chaos", "chunks": 3}  # fmt: skip


def reader(got: list[SseEvent], *, finished: bool = True, ended_204: bool = False) -> Reader:
    plan = ReaderPlan("0.0", "sse", 0.0, 0.1, 1)
    r = Reader(plan, "job", "http://127.0.0.1:1", 0.0, events=list(got))
    r.finished, r.ended_with_204 = finished, ended_204
    return r


def record(*, readers: list[Reader] | None = None, final: list[SseEvent] | None = None,
           calls: list[dict[str, Any]] | None = None, status: str = "succeeded",
           attempts: int = 1, result_text: str = TEXT) -> JobRecord:  # fmt: skip
    plan = JobPlan(0, "generate", {}, [KEY], 0.0, [], job_id="job")
    row = SimpleNamespace(status=status, attempts=attempts, error=None,
                          result={"text": result_text, "finish_reason": "stop"})  # fmt: skip
    final = good_story() if final is None else final
    return JobRecord(
        plan=plan, row=row, final_read=final, final_done=final[-1].event == "done",
        raw_stream=[(e.id, e.event, e.data) for e in final], vectors=[],
        readers=readers if readers is not None else [reader(good_story())],
        calls={KEY: calls if calls is not None else [call(1, "ok", "completed", 0, 2)]},
        expected=Expected(texts={"plain": "Plain text", "odd": TEXT}),
    )  # fmt: skip


def audit(rec: JobRecord, disruptions: list[Disruption] | None = None) -> dict[str, int]:
    findings = Findings()
    audit_job(rec, disruptions or [], findings, deadline_s=12)
    return findings.counts()


def test_a_clean_job_passes() -> None:
    assert audit(record()) == dict.fromkeys(("lost", "doubled", "gaps", "incomplete", "hung"), 0)


def test_a_reader_that_got_an_event_twice_is_doubled() -> None:
    story = good_story()
    assert audit(record(readers=[reader([*story[:3], story[2], *story[3:]])]))["doubled"] == 1


def test_a_reader_missing_text_is_a_gap() -> None:
    story = good_story()
    assert audit(record(readers=[reader([story[0], story[1], *story[3:]])]))["gaps"] == 1


def test_a_reset_carrying_the_text_so_far_is_no_gap() -> None:
    story = good_story()
    reset = SseEvent(1003, "reset", {"attempt": 2, "text": "Hello \u2028odd"})
    later = [SseEvent(1004, "delta", {"text": " world"}), SseEvent(1005, "result", story[3].data),
             SseEvent(1006, "done", story[4].data)]  # fmt: skip
    assert audit(record(readers=[reader([*story[:2], reset, *later])]))["gaps"] == 0


def test_ids_that_go_back_are_a_gap() -> None:
    story = good_story()
    back = [story[0], story[2], story[1], *story[3:]]
    assert audit(record(readers=[reader(back)]))["gaps"] == 1


def test_two_results_in_the_stream_are_doubled() -> None:
    story = good_story()
    twice = [*story[:4], SseEvent(5, "result", story[3].data), SseEvent(6, "done", story[4].data)]
    assert audit(record(final=twice))["doubled"] >= 1


def test_a_result_that_no_provider_call_gave_is_lost() -> None:
    assert audit(record(result_text="made up"))["lost"] == 1


def test_a_failed_job_is_lost_and_an_unfinished_one_hung() -> None:
    assert audit(record(status="failed"))["lost"] == 1
    assert audit(record(status="running"))["hung"] == 1


def test_a_reader_that_ended_without_the_result_is_incomplete() -> None:
    story = good_story()
    assert audit(record(readers=[reader(story[:3], ended_204=True)]))["incomplete"] == 1
    assert audit(record(readers=[reader(story[:3], finished=False)]))["hung"] == 1


def test_a_second_answered_call_needs_a_disruption_to_explain_it() -> None:
    calls = [call(1, "ok", "client_closed", 0, 3), call(2, "ok", "completed", 4, 6)]
    assert audit(record(calls=calls, attempts=2))["doubled"] == 1
    kill = Disruption("kill", T0 + 2.9, T0 + 3.0)
    assert audit(record(calls=calls, attempts=2), [kill])["doubled"] == 0
    duplicate = Disruption("duplicate", T0 + 2.9, T0 + 3.0)
    assert audit(record(calls=calls, attempts=2), [duplicate])["doubled"] == 1


def test_more_calls_than_attempts_is_doubled_even_when_explained() -> None:
    calls = [call(1, "server_error", "error", 0, 0.1), call(2, "ok", "completed", 1, 3)]
    assert audit(record(calls=calls, attempts=2))["doubled"] == 0
    assert audit(record(calls=calls, attempts=1))["doubled"] == 1


def test_the_final_call_is_the_one_whose_variant_is_the_result() -> None:
    # The odd answer became the result; the plain one that completed too needs a reason.
    calls = [call(1, "ok", "completed", 0, 2, odd=False), call(2, "ok", "completed", 3, 5)]
    assert audit(record(calls=calls, attempts=2))["doubled"] == 1
    stall = Disruption("stall", T0 + 1.0, T0 + 2.5)
    assert audit(record(calls=calls, attempts=2), [stall])["doubled"] == 0


def test_fault_outcomes_explain_themselves() -> None:
    for outcome, end in (("rate_limit", "error"), ("cut", "dropped"), ("stall", "client_closed"),
                         ("trickle", "client_closed")):  # fmt: skip
        assert explain_call(call(1, outcome, end, 0, 1), [], deadline_s=12) == outcome
    assert explain_call(call(1, "trickle", "completed", 0, 1), [], deadline_s=12) is None


def test_a_row_that_leaves_a_terminal_state_is_doubled() -> None:
    rec = record()
    rec.statuses = ["queued", "running", "succeeded", "running", "succeeded"]
    assert audit(rec)["doubled"] == 1
    rec.statuses = ["queued", "running", "retrying", "running", "succeeded"]
    assert audit(rec)["doubled"] == 0
