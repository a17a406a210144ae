"""A reader resuming at or after a finished job's last event is told at once: SSE answers
204 (so a browser's EventSource stops reconnecting) and the WebSocket closes normally."""

from __future__ import annotations

import httpx
import pytest
from websockets.exceptions import ConnectionClosedOK
from websockets.sync.client import connect

from tests.conftest import KEY_A
from tests.support import read_events

pytestmark = pytest.mark.usefixtures("worker")


def test_resuming_at_or_after_the_last_event_of_a_finished_job(
    client: httpx.Client, api_url: str
) -> None:
    body = {"kind": "generate", "model": "m", "max_tokens": 5,
            "messages": [{"role": "user", "content": "end"}]}  # fmt: skip
    job = client.post("/v1/jobs", json=body).json()
    events = read_events(client, job["id"])
    last = events[-1].id
    assert events[-1].event == "done"
    for headers, params in (({"Last-Event-ID": str(last)}, {}), ({}, {"after": last + 40})):
        answer = client.get(f"/v1/jobs/{job['id']}/events", headers=headers, params=params)
        assert answer.status_code == 204, answer.text
        assert answer.content == b""
    tail = read_events(client, job["id"], after=last - 1)
    assert [e.event for e in tail] == ["done"]
    url = api_url.replace("http", "ws", 1) + f"/v1/jobs/{job['id']}/ws?after={last}"
    with connect(url, additional_headers={"Authorization": f"Bearer {KEY_A}"}) as ws:
        with pytest.raises(ConnectionClosedOK) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
        assert closed.value.rcvd.reason == "succeeded"
