"""Many readers of running jobs share one pub/sub connection and all see the same story."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis

from tests.support import read_events, text_after_last_reset, wait_for

pytestmark = pytest.mark.usefixtures("worker")


def test_concurrent_readers_share_one_subscription_and_agree(
    client: httpx.Client, simulator: Any, rds: redis.Redis
) -> None:
    httpx.put(
        f"{simulator.base_url}/_sim/config", json={"tokens_per_second": 50}
    ).raise_for_status()
    body = {"kind": "generate", "model": "m", "max_tokens": 60,
            "messages": [{"role": "user", "content": "x"}]}  # fmt: skip
    jobs = [client.post("/v1/jobs", json=body).json()["id"] for _ in range(3)]
    readers = [jobs[i % 3] for i in range(30)]
    pubsub_clients: list[int] = []

    def watch() -> None:
        api_subscribers = [c for c in rds.client_list(_type="pubsub") if c["name"] == "aijobs-api"]
        pubsub_clients.append(len(api_subscribers))
        assert all(rds.pubsub_numsub(f"aijobs:{{{j}}}:live")[0][1] == 1 for j in jobs)

    with ThreadPoolExecutor(max_workers=31) as pool:
        futures = [pool.submit(read_events, client, job_id) for job_id in readers]
        wait_for(lambda: all(rds.pubsub_numsub(f"aijobs:{{{j}}}:live")[0][1] for j in jobs))
        watch()
        results = [f.result() for f in futures]

    assert pubsub_clients == [1]  # one API process, one pub/sub connection
    for job_id, events in zip(readers, results, strict=True):
        assert events == results[readers.index(job_id)]  # every reader of a job saw the same
        assert [e.id for e in events] == list(range(1, len(events) + 1))
        assert text_after_last_reset(events) == events[-2].data["text"]
    wait_for(lambda: all(rds.pubsub_numsub(f"aijobs:{{{j}}}:live")[0][1] == 0 for j in jobs))


def test_reader_that_leaves_early_unsubscribes(
    client: httpx.Client, simulator: Any, rds: redis.Redis
) -> None:
    httpx.put(
        f"{simulator.base_url}/_sim/config", json={"tokens_per_second": 20}
    ).raise_for_status()
    body = {"kind": "generate", "model": "m", "max_tokens": 60,
            "messages": [{"role": "user", "content": "x"}]}  # fmt: skip
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    channel = f"aijobs:{{{job_id}}}:live"
    first = read_events(client, job_id, stop_after=2)
    assert [e.id for e in first] == [1, 2]
    wait_for(lambda: rds.pubsub_numsub(channel)[0][1] == 0, timeout_s=10)
    rest = read_events(client, job_id, after=2)
    assert rest[0].id == 3 and rest[-1].event == "done"
