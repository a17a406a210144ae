"""``aijobs api --workers N``: several API processes on one port, as one API.

Any process serves any route, whichever took the connection: a job submitted through
one is read and streamed through another (each has its own hub on Redis), and /metrics
answers the sum of every process's counters, not the one process that took the scrape.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from aijobs.devtools.harness import Harness, child_env
from aijobs.devtools.simulator import RunningSimulator
from tests.conftest import KEY_A, TENANT_A
from tests.support import read_events, text_of

BODY = {"kind": "generate", "model": "m", "max_tokens": 30,
        "messages": [{"role": "user", "content": "several processes"}]}  # fmt: skip


def _submitted(api_url: str) -> float:
    text = httpx.get(f"{api_url}/metrics", timeout=10).text
    found = re.search(r'^aijobs_jobs_submitted_total\{kind="generate"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_two_api_processes_serve_as_one(tmp_path: Path, simulator: RunningSimulator) -> None:
    with Harness(tmp_path / "run") as harness:
        env = child_env(
            redis_url=harness.start_redis().url,
            database_url=harness.sqlite_url(),
            openai_base_url=simulator.api_base,
            openai_api_key="sk-test",
            aijobs={"api_keys": f"{TENANT_A}:{KEY_A}", "token_secret": "t" * 40},
        )
        api = harness.start_api(env, workers=2)
        harness.start_worker(env, queues="generate", concurrency=4)
        headers = {"Authorization": f"Bearer {KEY_A}"}
        ids = []
        # A new connection per submit: the kernel spreads them over both processes.
        for _ in range(12):
            with httpx.Client(base_url=api.url, headers=headers, timeout=30) as client:
                answer = client.post("/v1/jobs", json=BODY)
                assert answer.status_code == 202, answer.text
                ids.append(answer.json()["id"])
        for job_id in ids:
            with httpx.Client(base_url=api.url, headers=headers, timeout=30) as client:
                events = read_events(client, job_id)
                assert events[-1].data == {"status": "succeeded"}
                job = client.get(f"/v1/jobs/{job_id}").json()
                assert text_of(events) == job["result"]["text"]
        # Every scrape, whichever process answers it, counts every process's submits.
        assert {_submitted(api.url) for _ in range(6)} == {12.0}
