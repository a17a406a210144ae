"""Focused repro of a fault the chaos run met: a worker holding running jobs must survive
its Redis master being down for a second (killed, then restarted from its AOF at the same
address: no failover), finish its jobs, and go on taking new ones.

Seen on ``sentinel://`` (this test) and the same with a plain ``redis://`` URL: the
worker's Celery consumer notices the lost connection, restores its unacked messages, and
dies in kombu (``Unrecoverable error: AttributeError("'NoneType' object has no attribute
'hostname'")`` from ``QoS.restore_unacked`` -> ``Channel._connparams``); the process
finishes the jobs it runs, takes no new one, and exits with status 0 (a restart policy
of "on-failure" would not even bring it back).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from aijobs.devtools.harness import wait_for
from tests.chaos.cluster import Cluster
from tests.chaos.workload import CHAT_MODEL


@pytest.mark.timeout(240)
def test_a_worker_survives_its_redis_master_down_for_a_second_mid_job(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, seed=1, chaos=False)
    try:
        cluster.start(workers=1)
        (member,) = cluster.running_workers()
        with cluster.client() as client:
            job_id = _submit(client, "a long answer", 150)
            wait_for(lambda: getattr(cluster.repo.get(job_id), "status", "") == "running",
                     timeout_s=30, what="the job to run")  # fmt: skip
            # The worker holds the job's unacked message while its broker goes away.
            cluster.redis.restart(empty=False, down_s=1.0)
            cluster.redis.wait_master_answers()
            job = wait_for(lambda: _terminal(cluster, job_id), timeout_s=60, what="the job")
            assert job.status == "succeeded", job.error
            # And it still takes work (it does not: once its running jobs are done, it exits).
            after = _submit(client, "after the outage", 10)
            job = wait_for(lambda: _terminal(cluster, after), timeout_s=60,
                           what="a job after the outage", watch=[member.worker])  # fmt: skip
            assert job.status == "succeeded", job.error
    finally:
        cluster.close()


def _submit(client: httpx.Client, prompt: str, max_tokens: int) -> str:
    body = {"kind": "generate", "model": CHAT_MODEL, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": prompt}]}  # fmt: skip
    answer = client.post("/v1/jobs", json=body)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def _terminal(cluster: Cluster, job_id: str) -> Any:
    row = cluster.repo.get(job_id)
    return row if row is not None and row.status in ("succeeded", "failed", "cancelled") else None
