"""The reader's side of the protocol, without Redis: holes, resync, outcomes."""

from __future__ import annotations

from aijobs.events.follow import StoredOutcome, _Reader
from aijobs.events.protocol import Event


def test_stored_outcome_events_end_at_the_recorded_id() -> None:
    outcome = StoredOutcome("succeeded", {"text": "hi"}, None, last_event_id=40)
    assert [(e.id, e.event) for e in outcome.events(after=0)] == [(39, "result"), (40, "done")]
    assert [e.id for e in outcome.events(after=39)] == [40]
    assert outcome.events(after=40) == []
    unknown = StoredOutcome("failed", None, {"code": "x"}, last_event_id=None)
    assert [(e.id, e.event) for e in unknown.events(after=7)] == [(8, "error"), (9, "done")]


def _reader(after: int = 0) -> _Reader:
    return _Reader(None, "job", after)  # type: ignore[arg-type]


def _ev(i: int, kind: str, data: str = "{}") -> Event:
    return Event(i, kind, data, 1)


def test_a_reader_past_a_hole_waits_for_the_next_reset() -> None:
    reader = _reader(after=3)
    sent = reader.take([_ev(7, "delta", '{"text":"x"}'), _ev(8, "reset", '{"attempt":2}'),
                        _ev(9, "delta", '{"text":"y"}')])  # fmt: skip
    assert [e.id for e in sent] == [8, 9]


def test_a_result_reached_through_a_hole_comes_after_a_reset_with_its_text() -> None:
    reader = _reader(after=3)
    sent = reader.take([_ev(6, "delta", '{"text":"lost"}'),
                        _ev(7, "result", '{"text":"all of it","finish_reason":"stop"}'),
                        _ev(8, "done", '{"status":"succeeded"}')])  # fmt: skip
    assert [(e.id, e.event) for e in sent] == [(6, "reset"), (7, "result"), (8, "done")]
    assert '"text":"all of it"' in sent[0].data
    assert reader.finished


def test_consecutive_events_pass_untouched_and_repeats_are_dropped() -> None:
    reader = _reader(after=1)
    sent = reader.take([_ev(1, "status"), _ev(2, "delta"), _ev(3, "delta")])
    assert [e.id for e in sent] == [2, 3]
