"""The client's I/O-free core: what it asks, how it reads answers, when it retries, how
text follows resets. Plain objects, no network."""

from __future__ import annotations

import base64
import struct
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from aijobs.client import (
    ApiUnavailable,
    Embeddings,
    JobEvent,
    RetryPolicy,
    TextReset,
    TextState,
    calls,
)
from aijobs.client.events import EventStream
from aijobs.client.retry import Retries, compute_backoff, parse_retry_after


def answer(status: int, body: bytes = b"", **headers: str) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers)


def test_retry_after_as_seconds_or_a_date() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": " 1.5 "}) == 1.5
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "soon"}) is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < parse_retry_after({"retry-after": later}) <= 30  # type: ignore[operator]


def test_backoff_is_full_jitter_under_the_cap() -> None:
    waits = [compute_backoff(n, base_s=0.5, cap_s=4.0) for n in range(1, 12) for _ in range(50)]
    assert all(0 <= w <= 4.0 for w in waits)
    assert max(compute_backoff(1, base_s=0.5, cap_s=4.0) for _ in range(200)) <= 0.5
    assert compute_backoff(10_000, base_s=1, cap_s=2) <= 2  # no overflow


def test_retries_decide_by_status_retry_after_and_attempts() -> None:
    retries = Retries(RetryPolicy(attempts=3, base_s=0.1, cap_s=0.1, max_retry_after_s=10))
    assert retries.after_response(answer(404)) is None
    assert 2.0 <= retries.after_response(answer(429, **{"Retry-After": "2"})) <= 2.2  # type: ignore[operator]
    assert retries.after_response(answer(503)) <= 0.1  # type: ignore[operator]
    assert retries.after_response(answer(503)) is None  # the third try was the last
    patient = Retries(RetryPolicy(max_retry_after_s=5))
    assert patient.after_response(answer(429, **{"Retry-After": "60"})) is None
    errors = Retries(RetryPolicy(attempts=2))
    assert errors.after_error(httpx.ConnectError("refused")) >= 0
    with pytest.raises(ApiUnavailable):
        errors.after_error(httpx.ConnectError("refused"))
    with pytest.raises(ApiUnavailable):  # a URL the client cannot speak is not retried
        Retries(RetryPolicy()).after_error(httpx.UnsupportedProtocol("ftp"))


def test_a_submit_carries_one_key_for_all_its_retries() -> None:
    call = calls.submit({"kind": "embed", "model": "e", "input": "x"}, None)
    key = call.request.headers["Idempotency-Key"]
    assert len(key) == 32 and call.request.headers == {"Idempotency-Key": key}
    other = calls.submit({"kind": "embed", "model": "e", "input": "x"}, None)
    assert other.request.headers["Idempotency-Key"] != key
    assert calls.submit({}, "mine").request.headers["Idempotency-Key"] == "mine"


def test_bodies_and_paths() -> None:
    body = calls.generate_body("m", "hi", system="sys", max_tokens=None, temperature=0.5,
                               metadata=None)  # fmt: skip
    assert body == {"kind": "generate", "model": "m", "temperature": 0.5,
                    "messages": [{"role": "system", "content": "sys"},
                                 {"role": "user", "content": "hi"}]}  # fmt: skip
    assert calls.get("a/b", vectors=False, vector_format="float").request.path == "/v1/jobs/a%2Fb"
    assert calls.get("j", vectors=False, vector_format="base64").request.params == {
        "vectors": "false"}  # fmt: skip
    assert calls.get("j", vectors=True, vector_format="base64").request.params == {
        "format": "base64"}  # fmt: skip
    page = calls.list_jobs(status="failed", kind=None, limit=5, cursor=None).request
    assert page.params == {"status": "failed", "limit": "5"}


def test_error_answers_become_api_errors() -> None:
    call = calls.get("j", vectors=True, vector_format="float")
    body = b'{"detail": "x: bad", "errors": [{"field": "x", "message": "bad"}]}'
    with pytest.raises(Exception) as raised:
        call.result(answer(422, body))
    error = raised.value
    assert (error.status, error.detail, error.code) == (422, "x: bad", "bad_request")  # type: ignore[attr-defined]
    assert error.errors == [{"field": "x", "message": "bad"}]  # type: ignore[attr-defined]
    with pytest.raises(Exception) as html:
        call.result(answer(502, b"<html>bad gateway</html>"))
    assert html.value.detail == "<html>bad gateway</html>"  # type: ignore[attr-defined]
    with pytest.raises(Exception) as junk:
        call.result(answer(200, b'{"not": "a job"}'))
    assert "not what the API sends" in str(junk.value)


def event(id_: int, name: str, **data: object) -> JobEvent:
    return JobEvent(id_, name, dict(data))


def test_text_state_follows_resets_and_restored_text() -> None:
    state = TextState()
    assert state.feed(event(1, "status", status="running")) is None
    assert state.feed(event(2, "delta", text="Hel")) == "Hel"
    state.feed(event(3, "delta", text="lo"))
    assert state.text == "Hello"
    reset = state.feed(event(4, "reset", attempt=2))
    assert reset == TextReset("", attempt=2) and state.text == ""
    state.feed(event(5, "delta", text="Hi"))
    restored = state.feed(event(9, "reset", attempt=2, text="Hi there"))
    assert restored == TextReset("Hi there", attempt=2) and state.text == "Hi there"
    state.feed(event(10, "delta", text="!"))
    assert state.text == "Hi there!"
    assert state.feed(event(11, "reset", attempt=2, round=1)) == TextReset("", 2, 1)


def sse(*frames: str) -> list[bytes]:
    return [line.encode() for frame in frames for line in [*frame.split("\n"), ""]]


def test_event_stream_skips_what_it_saw_and_ends_at_done() -> None:
    stream = EventStream("j", after=0, policy=RetryPolicy(), read_timeout_s=60, timeout_s=None)
    assert "Last-Event-ID" not in stream.request().headers
    assert stream.opened(answer(200)) is None
    lines = sse('id: 1\nevent: status\ndata: {"status": "running"}', ": keep-alive",
                'id: 2\nevent: delta\ndata: {"text": "a\u2028b"}')  # fmt: skip
    got = [e for e in map(stream.feed, lines) if e is not None]
    assert [e.id for e in got] == [1, 2] and got[1].data["text"] == "a\u2028b"
    assert stream.status == "running"
    assert stream.dropped() >= 0
    assert stream.request().headers["Last-Event-ID"] == "2"
    stream.opened(answer(200))
    again = sse('id: 2\nevent: delta\ndata: {"text": "x"}',
                'id: 3\nevent: done\ndata: {"status": "succeeded"}')  # fmt: skip
    got = [e for e in map(stream.feed, again) if e is not None]
    assert [e.id for e in got] == [3] and stream.finished and stream.status == "succeeded"


def test_event_stream_204_ends_and_refusals_raise() -> None:
    stream = EventStream("j", after=7, policy=RetryPolicy(), read_timeout_s=60, timeout_s=None)
    assert stream.opened(answer(204)) is None and stream.finished
    other = EventStream("j", after=0, policy=RetryPolicy(), read_timeout_s=60, timeout_s=None)
    assert other.opened(answer(503, **{"Retry-After": "2"})) == 2
    with pytest.raises(Exception) as refused:
        other.opened(answer(404, b'{"detail": "job not found"}'))
    assert refused.value.status == 404  # type: ignore[attr-defined]


def test_event_stream_deadline() -> None:
    from aijobs.client import WaitTimeout

    stream = EventStream("j", after=0, policy=RetryPolicy(), read_timeout_s=60, timeout_s=0.0)
    with pytest.raises(WaitTimeout) as late:
        stream.request()
    assert late.value.job_id == "j"
    near = EventStream("j", after=0, policy=RetryPolicy(), read_timeout_s=60, timeout_s=5)
    assert near.read_timeout_s() <= 5


def test_embeddings_from_base64_float32() -> None:
    vectors = [[1.0, -2.5, 0.25], [0.0, 3.0, 1e-3]]
    encoded = [base64.b64encode(struct.pack("<3f", *v)).decode() for v in vectors]
    e = Embeddings.from_base64(encoded, 3)
    assert (len(e), e.dimensions) == (2, 3)
    assert e[0] == [1.0, -2.5, 0.25] and e[-1] == pytest.approx(vectors[1])
    assert e.tolist() == [e[0], e[1]] and list(e) == e.tolist()
    with pytest.raises(IndexError):
        e[2]
    with pytest.raises(ValueError):
        Embeddings.from_base64(encoded, 4)
