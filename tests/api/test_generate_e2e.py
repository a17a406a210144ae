"""A generation job end to end: API -> Redis broker -> Celery worker -> simulator -> events."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support import read_events, text_after_last_reset, text_of, wait_for

pytestmark = pytest.mark.usefixtures("worker")


def submit(client: httpx.Client, prompt: str = "Tell me a story", **extra: Any) -> dict[str, Any]:
    body = {
        "kind": "generate",
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": prompt}],
        **extra,
    }
    answer = client.post("/v1/jobs", json=body)
    assert answer.status_code == 202, answer.text
    return answer.json()


def finished(client: httpx.Client, job_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = client.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    return wait_for(done, timeout_s=60)


def test_submit_answers_202_queued(client: httpx.Client) -> None:
    job = submit(client, metadata={"ticket": 7})
    assert job["status"] == "queued"
    assert job["kind"] == "generate"
    assert job["attempts"] == 0
    assert job["metadata"] == {"ticket": 7}


def test_events_in_order_and_deltas_make_the_result(client: httpx.Client) -> None:
    job = submit(client, max_tokens=40)
    events = read_events(client, job["id"])

    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[0].event == "status" and events[0].data == {"status": "running", "attempt": 1}
    assert [e.event for e in events[-2:]] == ["result", "done"]
    assert events[-1].data == {"status": "succeeded"}
    deltas = [e for e in events if e.event == "delta"]
    assert deltas and all(e.data["attempt"] == 1 for e in deltas)
    text = "".join(e.data["text"] for e in deltas)
    assert text == events[-2].data["text"]
    assert len(text.split()) == 40

    row = client.get(f"/v1/jobs/{job['id']}").json()
    assert row["status"] == "succeeded"
    assert row["result"] == events[-2].data
    assert row["result"]["finish_reason"] == "length" or row["result"]["finish_reason"] == "stop"
    assert row["usage"]["completion_tokens"] == 40
    assert row["attempts"] == 1
    assert row["started_at"] and row["finished_at"]


def test_echo_prompt_round_trips_exactly(client: httpx.Client) -> None:
    prompt = '[[echo]] naïve café — 東京 and "quotes" {braces} \\ backslash'
    job = submit(client, prompt=prompt)
    events = read_events(client, job["id"])
    expected = prompt.replace("[[echo]]", "").strip()
    assert text_after_last_reset(events) == events[-2].data["text"]
    assert " ".join(events[-2].data["text"].split()) == " ".join(expected.split())


def test_resume_after_any_event_id_gets_exactly_the_rest(client: httpx.Client) -> None:
    job = submit(client, max_tokens=30)
    full = read_events(client, job["id"])
    last = full[-1].id
    for cursor in range(0, last):
        by_query = read_events(client, job["id"], after=cursor)
        assert by_query == full[cursor:], f"after={cursor}"
    for cursor in (0, 1, last // 2, last - 1):
        by_header = read_events(client, job["id"], last_event_id=cursor)
        assert by_header == full[cursor:], f"Last-Event-ID={cursor}"
    # At the last event there is nothing more: 204 (tests/api/test_resume_at_end.py).
    assert client.get(f"/v1/jobs/{job['id']}/events", params={"after": last}).status_code == 204


def test_reader_dropping_mid_stream_resumes_with_no_gap(
    client: httpx.Client, simulator: Any
) -> None:
    httpx.put(
        f"{simulator.base_url}/_sim/config", json={"tokens_per_second": 60}
    ).raise_for_status()
    job = submit(client, max_tokens=90)
    got = []
    cursor = 0
    while not got or got[-1].event != "done":
        chunk = read_events(client, job["id"], after=cursor, stop_after=3)
        got.extend(chunk)
        cursor = got[-1].id
    assert [e.id for e in got] == list(range(1, len(got) + 1))
    assert text_after_last_reset(got) == got[-2].data["text"]
    # The reader really was live part of the time: the job ran for over a second.
    assert len([e for e in got if e.event == "delta"]) > 10


def test_reader_after_retention_gets_outcome_from_the_store(client: httpx.Client, rds: Any) -> None:
    job = submit(client, max_tokens=12)
    full = read_events(client, job["id"])
    # What retention does: the stream and its meta expire.
    for key in rds.keys(f"aijobs:{{{job['id']}}}:*"):
        rds.delete(key)
    replay = read_events(client, job["id"])
    # The text is gone with the stream: the reader gets it back in a reset at the id
    # before the result, then the result and done with the ids they had.
    assert [e.event for e in replay] == ["reset", "result", "done"]
    assert replay[0].id == full[-2].id - 1
    assert replay[0].data["text"] == full[-2].data["text"] == text_of(full)
    assert replay[1:] == full[-2:]
    assert text_of(replay) == replay[1].data["text"]
    assert read_events(client, job["id"], after=full[-2].id) == full[-1:]
    gone = client.get(f"/v1/jobs/{job['id']}/events", params={"after": full[-1].id})
    assert gone.status_code == 204


def test_trimmed_stream_never_gives_a_silent_gap(client: httpx.Client, rds: Any) -> None:
    job = submit(client, max_tokens=30)
    full = read_events(client, job["id"])
    key = f"aijobs:{{{job['id']}}}:events"
    assert len(full) > 4
    rds.xtrim(key, maxlen=3, approximate=False)  # keeps a delta, the result and done
    for cursor in (0, 1):
        replay = read_events(client, job["id"], after=cursor)
        # Past the hole, the text comes back in one reset, then the closing events.
        assert [e.event for e in replay] == ["reset", "result", "done"], cursor
        assert replay[1:] == full[-2:]
        assert text_of(replay) == full[-2].data["text"]


def test_job_row_and_stream_agree(client: httpx.Client, rds: Any) -> None:
    job = submit(client, max_tokens=20)
    row = finished(client, job["id"])
    entries = rds.xrange(f"aijobs:{{{job['id']}}}:events")
    kinds = [fields["e"] for _, fields in entries]
    assert kinds[0] == "status" and kinds[-2:] == ["result", "done"]
    import json

    assert json.loads(entries[-2][1]["d"]) == row["result"]
    assert json.loads(entries[-1][1]["d"]) == {"status": row["status"]}


def test_list_is_newest_first_and_paginates(client: httpx.Client) -> None:
    ids = [submit(client, prompt=f"p{i}", max_tokens=2)["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/jobs", params=params).json()
        seen.extend(j["id"] for j in page["data"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert [i for i in seen if i in ids] == list(reversed(ids))
    assert len(seen) == len(set(seen))
    for job_id in ids:
        finished(client, job_id)
    done = client.get("/v1/jobs", params={"status": "succeeded", "limit": 100}).json()["data"]
    assert set(ids) <= {j["id"] for j in done}
    assert client.get("/v1/jobs", params={"status": "bogus"}).status_code == 422
    bad = client.get("/v1/jobs", params={"cursor": "!!notacursor"})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("cursor")
