"""Every method of ``AsyncClient`` against the real API: the same answers as ``Client``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from aijobs.client import (
    ApiError,
    AsyncClient,
    CancelAnswer,
    EventToken,
    JobPage,
    JobPublic,
    TextReset,
    WaitTimeout,
)
from tests.conftest import KEY_A
from tests.support import text_of

pytestmark = pytest.mark.usefixtures("worker")


def run(api_url: str, body: Callable[[AsyncClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with AsyncClient(api_url, KEY_A) as client:
            return await body(client)

    return asyncio.run(main())


def test_generate_events_text_and_wait(api_url: str) -> None:
    async def body(sdk: AsyncClient) -> None:
        job = await sdk.generate("m", "[[echo]] one two three", system="be brief")
        assert isinstance(job, JobPublic) and job.status == "queued"
        events = [e async for e in sdk.events(job.id)]
        assert [e.id for e in events] == list(range(1, len(events) + 1))
        assert events[-1].event == "done"
        pieces = [p async for p in sdk.text(job.id)]
        assert not any(isinstance(p, TextReset) for p in pieces)
        assert "".join(p for p in pieces if isinstance(p, str)) == "one two three"
        finished = await sdk.wait(job.id, timeout_s=30)
        assert finished.result == {"text": text_of(events), "finish_reason": "stop"}
        assert [e async for e in sdk.events(job.id, after=events[-2].id)] == events[-1:]
        assert [e async for e in sdk.events(job.id, after=events[-1].id)] == []

    run(api_url, body)


def test_extract_embed_get_and_embeddings(api_url: str) -> None:
    async def body(sdk: AsyncClient) -> None:
        schema = {"type": "object", "properties": {"n": {"type": "integer"}},
                  "required": ["n"]}  # fmt: skip
        extracted = await sdk.extract("m", "seven", schema)
        embedded = await sdk.embed("e", ["a", "b"], dimensions=4)
        done = await asyncio.gather(sdk.wait(extracted.id), sdk.wait(embedded.id))
        assert isinstance(done[0].result["data"]["n"], int)  # type: ignore[index]
        assert "embeddings" not in done[1].result  # type: ignore[operator]
        with_vectors = await sdk.get(embedded.id)
        vectors = await sdk.embeddings(embedded.id)
        assert (vectors.count, vectors.dimensions) == (2, 4)
        for mine, theirs in zip(vectors, with_vectors.result["embeddings"], strict=True):  # type: ignore[index]
            assert mine == pytest.approx(theirs, abs=1e-6)
        status_only = await sdk.get(embedded.id, vectors=False)
        assert "embeddings" not in status_only.result  # type: ignore[operator]

    run(api_url, body)


def test_jobs_iter_jobs_cancel_token_and_errors(api_url: str) -> None:
    async def body(sdk: AsyncClient) -> None:
        marker = uuid.uuid4().hex
        ids = set()
        for _ in range(3):
            ids.add((await sdk.generate("m", "hi", max_tokens=2, metadata={"b": marker})).id)
        page = await sdk.jobs(limit=2)
        assert isinstance(page, JobPage) and page.next_cursor
        seen = {j.id async for j in sdk.iter_jobs(page_size=2) if j.metadata.get("b") == marker}
        assert seen == ids
        job_id = next(iter(ids))
        await sdk.wait(job_id)
        answer = await sdk.cancel(job_id)
        assert isinstance(answer, CancelAnswer) and answer.job.status == "succeeded"
        assert isinstance(await sdk.token(job_id), EventToken)
        with pytest.raises(ApiError) as missing:
            await sdk.get("0" * 32)
        assert missing.value.status == 404 and missing.value.code == "not_found"

    run(api_url, body)


def test_wait_times_out_clearly(api_url: str, simulator: Any) -> None:
    slow = {"tokens_per_second": 20}
    httpx.put(f"{simulator.base_url}/_sim/config", json=slow).raise_for_status()

    async def body(sdk: AsyncClient) -> None:
        job = await sdk.generate("m", "a long story", max_tokens=200)
        with pytest.raises(WaitTimeout):
            await sdk.wait(job.id, timeout_s=0.5)
        await sdk.cancel(job.id)
        assert (await sdk.wait(job.id, timeout_s=30)).status == "cancelled"

    run(api_url, body)
