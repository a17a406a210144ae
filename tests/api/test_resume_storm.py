"""Readers that drop their connection at random points, again and again, lose nothing."""

from __future__ import annotations

import json
import random
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.conftest import KEY_A, KEY_B
from tests.support import SseEvent, read_events, text_after_last_reset

pytestmark = pytest.mark.usefixtures("worker")


def slow_job(client: httpx.Client, simulator: Any, tokens: int = 500) -> str:
    httpx.put(
        f"{simulator.base_url}/_sim/config", json={"tokens_per_second": 80}
    ).raise_for_status()
    body = {"kind": "generate", "model": "m", "max_tokens": tokens,
            "messages": [{"role": "user", "content": "a long story"}]}  # fmt: skip
    return client.post("/v1/jobs", json=body).json()["id"]


def check_story(events: list[SseEvent]) -> None:
    ids = [e.id for e in events]
    assert ids == list(range(1, len(ids) + 1)), "a gap or a duplicate"
    assert events[-1].event == "done" and events[-2].event == "result"
    assert text_after_last_reset(events) == events[-2].data["text"]


def test_sse_reader_dropping_at_random_hundreds_of_times(
    client: httpx.Client, simulator: Any
) -> None:
    job_id = slow_job(client, simulator)
    rng = random.Random(42)
    got: list[SseEvent] = []
    connections = 0
    while not got or got[-1].event != "done":
        cursor = got[-1].id if got else 0
        # Resume by header half the time (what EventSource does), by query otherwise.
        how = {"last_event_id": cursor} if rng.random() < 0.5 else {"after": cursor}
        got.extend(read_events(client, job_id, stop_after=rng.randint(1, 2), **how))
        connections += 1
    check_story(got)
    assert connections >= 100
    assert len(got[-2].data["text"].split()) == 500


def ws_url(api_url: str, job_id: str, after: int) -> str:
    return api_url.replace("http://", "ws://") + f"/v1/jobs/{job_id}/ws?after={after}"


def test_websocket_reader_dropping_at_random(
    api_url: str, client: httpx.Client, simulator: Any
) -> None:
    job_id = slow_job(client, simulator, tokens=300)
    rng = random.Random(7)
    got: list[SseEvent] = []
    connections = 0
    auth = {"Authorization": f"Bearer {KEY_A}"}
    while not got or got[-1].event != "done":
        cursor = got[-1].id if got else 0
        with connect(ws_url(api_url, job_id, cursor), additional_headers=auth) as ws:
            for _ in range(rng.randint(1, 3)):
                try:
                    message = json.loads(ws.recv(timeout=30))
                except Exception:  # closed by the server after `done`
                    break
                got.append(SseEvent(message["id"], message["event"], message["data"]))
                if message["event"] == "done":
                    break
        connections += 1
    check_story(got)
    assert connections >= 30


def test_websocket_auth_at_the_handshake(api_url: str, client: httpx.Client) -> None:
    body = {"kind": "generate", "model": "m", "max_tokens": 3,
            "messages": [{"role": "user", "content": "x"}]}  # fmt: skip
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    for headers, code in (({}, 401), ({"Authorization": f"Bearer {KEY_B}"}, 404)):
        with pytest.raises(Exception) as refused:
            connect(ws_url(api_url, job_id, 0), additional_headers=headers).close()
        assert str(code) in str(refused.value)
    with connect(
        ws_url(api_url, job_id, 0), additional_headers={"Authorization": f"Bearer {KEY_A}"}
    ) as ws:
        messages = []
        while True:
            try:
                messages.append(json.loads(ws.recv(timeout=30)))
            except Exception:
                break
    assert messages[-1]["event"] == "done"
    assert [m["id"] for m in messages] == list(range(1, len(messages) + 1))
