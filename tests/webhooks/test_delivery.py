"""Webhooks through the whole system, on a private stack (tests/stack.py): real `aijobs
worker` processes — two delivering side by side, one SIGKILLed between a job's end and its
webhook, one SIGKILLed in the middle of the POST — the API over HTTP, and a receiver on
loopback that verifies every request with the `standardwebhooks` package and keeps one
event per `webhook-id`, as a receiver should."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from aijobs.devtools.simulator import RunningSimulator
from aijobs.webhooks.outbox import LOST_ATTEMPT, Outbox
from tests.stack import Stack, running_stack
from tests.support import wait_for
from tests.webhooks.receiver import Plan, Receiver, running_receiver


@pytest.fixture
def stack(tmp_path: Path, simulator: RunningSimulator, secret: str) -> Iterator[Stack]:
    """A private stack whose workers and API have webhooks on, with fast retries, a short
    timeout and a quick loop; the receiver's host (loopback) is allow-listed."""
    env = {
        "AIJOBS_WEBHOOK_SECRET": secret,
        "AIJOBS_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "AIJOBS_WEBHOOK_RETRY_BASE_S": "0.05",
        "AIJOBS_WEBHOOK_RETRY_CAP_S": "0.2",
        "AIJOBS_WEBHOOK_TIMEOUT_S": "1",
        "AIJOBS_WEBHOOK_POLL_INTERVAL_S": "0.1",
        "AIJOBS_WEBHOOK_MAX_ATTEMPTS": "6",
    }
    with running_stack(tmp_path, simulator, **env) as private:
        private.settings = private.settings.model_copy(
            update={"webhook_secret": SecretStr(secret), "webhook_allowed_hosts": ["127.0.0.1"]}
        )
        private.start_api()
        yield private


def generate(hook: str | None, model: str = "m") -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "generate", "model": model, "max_tokens": 20,
                            "messages": [{"role": "user", "content": "tell me"}]}  # fmt: skip
    return body | ({"webhook_url": hook} if hook else {})


def extract(hook: str) -> dict[str, Any]:
    schema = {"type": "object", "properties": {"name": {"type": "string"}},
              "required": ["name"], "additionalProperties": False}  # fmt: skip
    return {"kind": "extract", "model": "m", "text": "Ada Lovelace wrote it.", "schema": schema,
            "webhook_url": hook}  # fmt: skip


def embed(hook: str) -> dict[str, Any]:
    return {"kind": "embed", "model": "e", "input": ["one", "two", "three"], "dimensions": 8,
            "webhook_url": hook}  # fmt: skip


def submit(client: httpx.Client, body: dict[str, Any]) -> str:
    answer = client.post("/v1/jobs", json=body)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def webhook_of(client: httpx.Client, job_id: str) -> dict[str, Any]:
    return client.get(f"/v1/jobs/{job_id}", params={"vectors": "false"}).json()["webhook"]


def wait_recorded(client: httpx.Client, job_ids: list[str], timeout_s: float = 60) -> None:
    """Until each job's record says its webhook was delivered."""
    wait_for(
        lambda: all(webhook_of(client, j)["state"] == "delivered" for j in job_ids),
        timeout_s=timeout_s, interval_s=0.1, what="webhooks recorded as delivered",
    )  # fmt: skip


def the_one_event(receiver: Receiver, job_id: str) -> str:
    """The job's webhook id: exactly one, however many times it arrived."""
    ids = receiver.by_job().get(job_id, [])
    assert len(ids) == 1, (job_id, ids)
    return ids[0]


def test_every_terminal_job_is_posted_once_signed_and_without_vectors(
    stack: Stack, simulator: RunningSimulator, secret: str
) -> None:
    with running_receiver(secret, Plan(fail_first=2)) as receiver, stack.client() as client:
        hook = receiver.url
        # Cancelled while it waits (no worker yet): the API ends it, in its own transaction.
        cancelled = submit(client, generate(hook))
        assert client.post(f"/v1/jobs/{cancelled}/cancel").status_code == 202
        httpx.post(
            f"{simulator.base_url}/_sim/faults",
            json={"faults": [{"kind": "bad_request", "model": "m-refused"}]},
        ).raise_for_status()
        jobs = {
            cancelled: "cancelled",
            submit(client, generate(hook)): "succeeded",
            # Its priority and run_at are in its body as in its record (not the defaults).
            submit(client, {**generate(hook), "priority": 9, "delay_s": 0.5}): "succeeded",
            submit(client, extract(hook)): "succeeded",
            submit(client, embed(hook)): "succeeded",
            submit(client, generate(hook, model="m-refused")): "failed",
        }
        plain = submit(client, generate(None))
        # Two worker processes: both deliver, neither ever sends what the other holds.
        stack.start_worker("w1")
        stack.start_worker("w2")
        for job_id, status in jobs.items():
            assert stack.finished(job_id).status == status
        receiver.wait_delivered(list(jobs))
        wait_recorded(client, list(jobs))
        stack.finished(plain)

        assert receiver.unverified() == []  # every request carried a valid signature
        counts = receiver.counts()
        kept = receiver.events()
        for job_id, status in jobs.items():
            msg_id = the_one_event(receiver, job_id)
            assert counts[msg_id] == 3  # 500, 500, then 200: the same id each time
            [row] = Outbox(stack.repo.db).for_job(job_id)
            assert row.id == msg_id and row.event == f"job.{status}"
            payload = kept[msg_id]
            record = client.get(f"/v1/jobs/{job_id}", params={"vectors": "false"}).json()
            webhook = record.pop("webhook")
            assert payload == record  # the job as the API shows it, without the view
            assert webhook["url"] == hook and webhook["delivered_at"]
            assert [d["status"] for d in webhook["deliveries"]] == [500, 500, 200]
            assert [d["error"] for d in webhook["deliveries"]] == ["HTTP 500", "HTTP 500", None]
        assert Outbox(stack.repo.db).for_job(plain) == []  # no URL, no webhook

        [embedded] = [j for j, body in kept.items() if body["kind"] == "embed"]
        assert kept[embedded]["result"] == {"count": 3, "dimensions": 8}
        assert not any(b"embeddings" in arrival.body for arrival in receiver.arrivals)
        full = client.get(f"/v1/jobs/{kept[embedded]['id']}").json()
        assert len(full["result"]["embeddings"]) == 3  # the vectors exist; the webhook omits them


def test_a_worker_killed_between_the_jobs_end_and_its_webhook_loses_nothing(
    stack: Stack, secret: str
) -> None:
    with running_receiver(secret, Plan(fail_first=1)) as receiver, stack.client() as client:
        # This worker runs the job but would look for due webhooks only an hour later.
        ends_it = stack.start_worker("ends-it", AIJOBS_WEBHOOK_POLL_INTERVAL_S="3600")
        job_id = submit(client, generate(receiver.url))
        assert stack.finished(job_id).status == "succeeded"
        [event] = Outbox(stack.repo.db).for_job(job_id)
        assert (event.state, event.attempts) == ("pending", 0)
        stack.signal_worker(ends_it, signal.SIGKILL)
        assert receiver.arrivals == []

        stack.start_worker("delivers-it")
        receiver.wait_delivered([job_id])
        wait_recorded(client, [job_id])
        msg_id = the_one_event(receiver, job_id)
        assert msg_id == event.id
        assert receiver.counts()[msg_id] == 2
        assert receiver.unverified() == []
        assert [d["status"] for d in webhook_of(client, job_id)["deliveries"]] == [500, 200]


def test_a_worker_killed_during_the_post_leaves_it_to_another_with_the_same_id(
    stack: Stack, secret: str
) -> None:
    plan = Plan(hold_first=True)
    with running_receiver(secret, plan) as receiver, stack.client() as client:
        posts_it = stack.start_worker("posts-it")
        job_id = submit(client, generate(receiver.url))
        assert receiver.held.wait(60), "the first attempt never arrived"
        stack.signal_worker(posts_it, signal.SIGKILL)  # mid-POST: no outcome recorded
        plan.release.set()

        stack.start_worker("retries-it")  # takes the event once the dead claim runs out
        wait_recorded(client, [job_id])
        msg_id = the_one_event(receiver, job_id)
        assert receiver.counts()[msg_id] == 2
        assert receiver.unverified() == []
        deliveries = webhook_of(client, job_id)["deliveries"]
        assert [(d["status"], d["error"]) for d in deliveries] == [
            (None, LOST_ATTEMPT), (200, None),
        ]  # fmt: skip
