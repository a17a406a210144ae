"""The client's scheduling, batch, retry, delete and list filters, sync and async, against
the real API and worker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from aijobs.client import ApiError, AsyncClient, BatchAnswer, Client, JobPublic
from tests.conftest import KEY_A

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def sdk(api_url: str) -> Iterator[Client]:
    with Client(api_url, KEY_A) as client:
        yield client


def test_schedule_and_priority_reach_the_job(sdk: Client) -> None:
    tag = uuid.uuid4().hex
    run_at = datetime.now(UTC) + timedelta(hours=2)
    at = sdk.generate("m", "x", run_at=run_at, priority=9, metadata={"tag": tag})
    assert isinstance(at, JobPublic) and at.run_at == run_at and at.priority == 9
    later = sdk.embed("e", ["a"], delay_s=3600, metadata={"tag": tag})
    assert later.run_at is not None and later.priority == 5
    third = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)
    text = sdk.extract("m", "t", {"type": "object", "properties": {"a": {"type": "string"}}},
                       run_at=third.strftime("%Y-%m-%dT%H:%M:%SZ"),
                       metadata={"tag": tag})  # fmt: skip
    assert text.run_at == third
    with pytest.raises(ApiError) as naive:
        sdk.generate("m", "x", run_at=datetime(2031, 1, 1))
    assert naive.value.status == 422 and naive.value.detail.startswith("run_at:")
    # The filters: soonest first, this test's jobs only.
    page = sdk.jobs(metadata={"tag": tag}, order="run_at")
    assert [j.id for j in page.data] == [later.id, at.id, text.id]  # +1 h, +2 h, +3 h
    assert [j.id for j in sdk.iter_jobs(metadata={"tag": tag}, page_size=1)] == [
        text.id,
        later.id,
        at.id,
    ]
    window = sdk.jobs(metadata={"tag": tag}, created_after=later.created_at,
                      created_before=text.created_at)  # fmt: skip
    assert [j.id for j in window.data] == [later.id]
    for job in (at, later, text):
        sdk.delete(job.id)
    assert sdk.jobs(metadata={"tag": tag}).data == []


def test_submit_batch_retry_and_delete(sdk: Client) -> None:
    tag = uuid.uuid4().hex
    bodies: list[Any] = [
        {"kind": "generate", "model": "m", "max_tokens": 2, "metadata": {"tag": tag},
         "messages": [{"role": "user", "content": "one"}]},
        {"kind": "generate", "model": "m", "messages": []},
        {"kind": "generate", "model": "m", "max_tokens": 2, "metadata": {"tag": tag},
         "messages": [{"role": "user", "content": "two"}], "idempotency_key": tag},
    ]  # fmt: skip
    answer = sdk.submit_batch(bodies)
    assert isinstance(answer, BatchAnswer)
    assert [r.status for r in answer.results] == [202, 422, 202]
    assert answer.results[1].detail and answer.results[1].detail.startswith("messages:")
    first = answer.results[0].job
    assert first is not None
    done = sdk.wait(first.id, timeout_s=60)
    assert done.status == "succeeded"
    with pytest.raises(ApiError) as refused:
        sdk.retry(first.id)
    assert refused.value.status == 409
    cancelled = sdk.generate("m", "x", delay_s=600)
    sdk.cancel(cancelled.id)
    again = sdk.retry(cancelled.id)
    assert again.metadata["replay_of"] == cancelled.id
    assert sdk.wait(again.id, timeout_s=60).status == "succeeded"
    sdk.delete(first.id)
    sdk.delete(first.id)  # a retry of a delete whose answer was lost: the same 204
    with pytest.raises(ApiError) as gone:
        sdk.get(first.id)
    assert gone.value.status == 404


def test_async_client_has_the_same_methods(api_url: str) -> None:
    async def main() -> None:
        async with AsyncClient(api_url, KEY_A) as sdk:
            tag = uuid.uuid4().hex
            job = await sdk.generate("m", "x", delay_s=600, priority=2, metadata={"tag": tag})
            assert job.priority == 2 and job.run_at is not None
            batch = await sdk.submit_batch([
                {"kind": "embed", "model": "e", "input": ["a"], "metadata": {"tag": tag},
                 "delay_s": 600},
            ])  # fmt: skip
            assert [r.status for r in batch.results] == [202]
            listed = await sdk.jobs(metadata={"tag": tag}, order="run_at")
            assert {j.id for j in listed.data} == {job.id, batch.results[0].job.id}  # type: ignore[union-attr]
            seen = [j.id async for j in sdk.iter_jobs(metadata={"tag": tag}, page_size=1)]
            assert len(seen) == 2
            await sdk.cancel(job.id)
            again = await sdk.retry(job.id)
            assert again.metadata["replay_of"] == job.id
            for job_id in (job.id, again.id, *seen):
                await sdk.delete(job_id)
            assert (await sdk.jobs(metadata={"tag": tag})).data == []

    asyncio.run(main())


def test_a_retried_batch_request_makes_no_job_twice(api_url: str) -> None:
    # The first answer is lost (a proxy drops it): the client sends the batch again, and
    # the keys it made once for the call make the API return the same jobs.
    sent: list[bytes] = []

    class LoseFirstAnswer(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = super().handle_request(request)
            if request.url.path.endswith("/batch"):
                sent.append(request.content)
                if len(sent) == 1:
                    response.read()
                    raise httpx.ReadError("answer lost", request=request)
            return response

    tag = uuid.uuid4().hex
    with Client(api_url, KEY_A, transport=LoseFirstAnswer()) as sdk:
        answer = sdk.submit_batch([
            {"kind": "generate", "model": "m", "messages": [{"role": "user", "content": "x"}],
             "delay_s": 600, "metadata": {"tag": tag}},
        ])  # fmt: skip
        assert len(sent) == 2 and sent[0] == sent[1]
        assert answer.results[0].replayed
        assert len(sdk.jobs(metadata={"tag": tag}).data) == 1
        sdk.delete(answer.results[0].job.id)  # type: ignore[union-attr]
