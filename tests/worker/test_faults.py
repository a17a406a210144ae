"""One test per way production broke a promise: real worker processes, real signals, a real
Redis that is killed, emptied or cut off, each on a private stack (tests/stack.py)."""

from __future__ import annotations

import hashlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aijobs.devtools.simulator import RunningSimulator
from aijobs.ratelimit import RateLimiter
from aijobs.settings import RateLimit
from tests.conftest import TENANT_A
from tests.faultproxy import FaultProxy
from tests.stack import Stack, running_stack
from tests.support import FollowResult, follow, text_of, wait_for


def pace(simulator: RunningSimulator, tokens_per_second: float) -> None:
    httpx.put(
        f"{simulator.base_url}/_sim/config", json={"tokens_per_second": tokens_per_second}
    ).raise_for_status()


def fault(simulator: RunningSimulator, *specs: dict[str, Any]) -> None:
    httpx.post(f"{simulator.base_url}/_sim/faults", json={"faults": list(specs)}).raise_for_status()


def deltas(stack: Stack, job_id: str) -> int:
    return sum(1 for _, event, _ in stack.events(job_id) if event == "delta")


def assert_reader_consistent(seen: FollowResult, job: Any) -> None:
    """Every event once, in order, ending in done, and the text the reader holds is the
    job's text."""
    assert seen.done, seen.events[-3:]
    ids = seen.ids
    assert ids == sorted(ids) and len(ids) == len(set(ids)), ids
    if job.result and "text" in job.result:
        assert text_of(seen.events) == job.result["text"]


@pytest.fixture
def stack(tmp_path: Path, simulator: RunningSimulator) -> Iterator[Stack]:
    with running_stack(tmp_path, simulator) as private:
        private.start_api()
        yield private


def test_a_stall_longer_than_the_lease_does_not_walk_a_healthy_job_to_exhaustion(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    with running_stack(tmp_path, simulator, AIJOBS_MAX_ATTEMPTS="3") as stack:
        stack.start_api()
        pace(simulator, 20)
        worker = stack.start_worker("only")  # the rescue happens in the stalled process
        with stack.client() as client:
            job_id = stack.submit(client, "stall me", max_tokens=200)  # longer than a rescue
            wait_for(lambda: deltas(stack, job_id) >= 3, timeout_s=30)
            rds = stack.redis()
            stack.signal_worker(worker, signal.SIGSTOP)
            wait_for(lambda: not rds.exists(f"aijobs:{{{job_id}}}:lease"), timeout_s=20)
            stack.signal_worker(worker, signal.SIGCONT)
            job = stack.finished(job_id, timeout_s=90)
            assert job.status == "succeeded", job.error
            assert_reader_consistent(follow(client, job_id), job)


def test_a_duplicate_during_the_last_allowed_attempt_leaves_the_live_job_alone(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    from aijobs.worker.celery_app import create_celery_app

    with running_stack(tmp_path, simulator, AIJOBS_MAX_ATTEMPTS="1") as stack:
        stack.start_api()
        pace(simulator, 40)
        stack.start_worker("only")
        with stack.client() as client:
            job_id = stack.submit(client, "last attempt", max_tokens=60)
            wait_for(lambda: deltas(stack, job_id) >= 2, timeout_s=30)
            app = create_celery_app(stack.settings)
            app.send_task("aijobs.generate", args=[job_id], kwargs={"kind": "generate"},
                          queue="generate", exchange="", routing_key="generate")  # fmt: skip
            app.close()
            job = stack.finished(job_id)
            assert job.status == "succeeded", job.error
            assert job.attempts == 1


def test_redis_restarted_empty_mid_stream_gives_readers_a_reset_never_a_gap(
    stack: Stack, simulator: RunningSimulator
) -> None:
    pace(simulator, 25)
    stack.start_worker("one")
    with stack.client() as client:
        job_id = stack.submit(client, "lose everything", max_tokens=120)
        readers: list[FollowResult] = []

        def read() -> None:
            with stack.client() as own:
                readers.append(follow(own, job_id, timeout_s=120))

        thread = threading.Thread(target=read)
        thread.start()
        wait_for(lambda: deltas(stack, job_id) >= 15, timeout_s=30)
        stack.kill_redis()
        stack.start_redis(empty=True)
        job = stack.finished(job_id, timeout_s=90)
        thread.join(120)
        assert job.status == "succeeded", job.error
        assert_reader_consistent(readers[0], job)
        # A reader arriving now, from the start, gets the whole story without a gap.
        assert_reader_consistent(follow(client, job_id), job)


def test_a_job_whose_message_never_reached_redis_runs_within_seconds(stack: Stack) -> None:
    # As if the API died between its INSERT and its send.
    payload = {"kind": "generate", "model": "m", "max_tokens": 5, "temperature": None,
               "messages": [{"role": "user", "content": "orphan"}]}  # fmt: skip
    job = stack.repo.create(tenant=TENANT_A, kind="generate", model="m", payload=payload, meta={})
    stack.start_worker("one")
    assert stack.finished(job.id, timeout_s=30).status == "succeeded"


def test_queued_jobs_run_after_redis_came_back_empty(stack: Stack) -> None:
    with stack.client() as client:
        ids = [stack.submit(client, f"queued {i}", max_tokens=5) for i in range(5)]
    stack.kill_redis()
    stack.start_redis(empty=True)
    stack.start_worker("late")
    for job_id in ids:
        assert stack.finished(job_id, timeout_s=40).status == "succeeded"


def test_a_retrying_job_whose_worker_died_runs_when_its_wait_is_over(
    stack: Stack, simulator: RunningSimulator
) -> None:
    fault(simulator, {"kind": "rate_limit", "model": "waits", "retry_after_s": 3})
    first = stack.start_worker("first")
    with stack.client() as client:
        job_id = stack.submit(client, "wait for me", max_tokens=5, model="waits")
        wait_for(lambda: getattr(stack.repo.get(job_id), "status", "") == "retrying")
        stack.signal_worker(first, signal.SIGKILL)
        stack.start_worker("second")
        job = stack.finished(job_id, timeout_s=30)
        assert job.status == "succeeded"


def test_a_provider_that_trickles_forever_is_cut_at_the_time_limit(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    env = {"AIJOBS_TASK_TIME_LIMIT_S": "10", "AIJOBS_PROVIDER_TIMEOUT_S": "5",
           "AIJOBS_MAX_ATTEMPTS": "1"}  # fmt: skip
    with running_stack(tmp_path, simulator, **env) as stack:
        stack.start_api()
        pace(simulator, 0.7)  # a chunk every ~1.4 s: the read timeout never fires
        stack.start_worker("one")
        with stack.client() as client:
            job_id = stack.submit(client, "trickle", max_tokens=200)
            job = stack.finished(job_id, timeout_s=40)
        assert job.status == "failed"
        assert job.error["code"] == "timeout"


def test_a_half_open_redis_connection_does_not_freeze_the_worker(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    with running_stack(tmp_path, simulator) as stack:
        stack.start_api()
        assert stack.redis_server is not None
        proxy = FaultProxy(stack.redis_port)
        try:
            pace(simulator, 25)
            stack.start_worker("cut-off", REDIS_URL=proxy.url)
            with stack.client() as client:
                job_id = stack.submit(client, "half open", max_tokens=100)
                wait_for(lambda: deltas(stack, job_id) >= 5, timeout_s=30)
                proxy.blackhole()  # every open socket of the worker now goes nowhere
                job = stack.finished(job_id, timeout_s=90)
                assert job.status == "succeeded", job.error
                assert_reader_consistent(follow(client, job_id), job)
        finally:
            proxy.close()


def test_an_embedding_waiting_for_budget_frees_its_worker_slot(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    limits = '{"emb-limited": {"tpm": 600, "window_s": 60}}'
    env = {"AIJOBS_RATE_LIMITS": limits, "AIJOBS_EMBED_BATCH_SIZE": "1"}
    with running_stack(tmp_path, simulator, **env) as stack:
        stack.start_api()
        stack.start_worker("one-slot", "--concurrency", "1")
        with stack.client() as client:
            texts = ["x" * 2000, "y" * 2000, "z" * 2000]  # ~500 tokens each: one per minute
            embed = client.post("/v1/jobs", json={"kind": "embed", "model": "emb-limited",
                                                  "input": texts}).json()  # fmt: skip
            wait_for(lambda: deltas_or_progress(stack, embed["id"]), timeout_s=30)
            chat = stack.submit(client, "meanwhile", max_tokens=5)
            assert stack.finished(chat, timeout_s=15).status == "succeeded"
            assert stack.repo.get(embed["id"]).status in ("queued", "retrying")


def deltas_or_progress(stack: Stack, job_id: str) -> bool:
    return any(event == "progress" for _, event, _ in stack.events(job_id))


def test_a_rescued_job_that_must_wait_for_budget_says_so(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    limits = '{"one-per-minute": {"rpm": 1, "window_s": 60}}'
    with running_stack(tmp_path, simulator, AIJOBS_RATE_LIMITS=limits) as stack:
        stack.start_api()
        payload = {"kind": "generate", "model": "one-per-minute", "max_tokens": 5,
                   "temperature": None, "messages": [{"role": "user", "content": "x"}]}  # fmt: skip
        job = stack.repo.create(
            tenant=TENANT_A, kind="generate", model="one-per-minute", payload=payload, meta={}
        )
        # A worker claimed it, spent the minute's budget, and died.
        stack.repo.claim(job.id, seen_attempts=0, id_block=1000)
        limiter = RateLimiter(stack.redis(), {"one-per-minute": RateLimit(requests=1, window_s=60)},
                              provider="openai")  # fmt: skip
        assert limiter.acquire("one-per-minute", 0) == 0
        stack.start_worker("rescuer")
        wait_for(lambda: stack.repo.get(job.id).status == "retrying", timeout_s=20)


def test_a_transient_redis_error_after_the_provider_answered_is_not_a_failure(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    limits = '{"settled": {"tpm": 100000, "window_s": 60}}'
    with running_stack(tmp_path, simulator, AIJOBS_RATE_LIMITS=limits) as stack:
        stack.start_api()
        proxy = FaultProxy(stack.redis_port)
        try:
            from aijobs import ratelimit

            # The one Redis call that settles the token bucket after the provider answered.
            settle_sha = hashlib.sha1(ratelimit._ADJUST.encode()).hexdigest().encode()
            proxy.drop_reply_to(settle_sha)
            stack.start_worker("one", REDIS_URL=proxy.url)
            with stack.client() as client:
                job_id = stack.submit(client, "settle", max_tokens=10, model="settled")
                job = stack.finished(job_id, timeout_s=60)
            assert proxy.dropped_replies >= 1
            assert job.status == "succeeded", job.error
        finally:
            proxy.close()


def test_a_cancel_recorded_only_in_sql_still_stops_the_job(
    stack: Stack, simulator: RunningSimulator
) -> None:
    pace(simulator, 20)
    stack.start_worker("one")
    with stack.client() as client:
        job_id = stack.submit(client, "cancel via sql", max_tokens=200)
        wait_for(lambda: deltas(stack, job_id) >= 2, timeout_s=30)
        # The API's Redis flag was lost; the row's flag is the truth.
        from sqlalchemy import update

        from aijobs.store.models import Job

        with stack.repo.db.session() as session:
            session.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
        job = stack.finished(job_id, timeout_s=30)
        assert job.status == "cancelled"
