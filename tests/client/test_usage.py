"""The client's ``usage()``, blocking and asyncio, and the new usage fields of a job."""

from __future__ import annotations

import asyncio

import pytest

from aijobs import AsyncClient, Client
from tests.conftest import KEY_B

pytestmark = pytest.mark.usefixtures("worker")


def test_usage_reads_the_report_and_the_jobs_cost(api_url: str) -> None:
    with Client(api_url, api_key=KEY_B) as client:
        job = client.generate("gpt-4o-mini", "what does it cost", max_tokens=6)
        done = client.wait(job.id, timeout_s=60)
        assert done.usage is not None and done.usage.completion_tokens == 6
        assert done.usage.cost_usd is not None and done.usage.cost_usd > 0
        assert [a.attempt for a in done.usage.attempts] == [1]
        report = client.usage(group_by="model")
    assert report.totals.jobs >= 1 and report.totals.completion_tokens >= 6
    assert "gpt-4o-mini" in {row.model for row in report.data}
    assert report.from_ < report.to

    async def read() -> int:
        async with AsyncClient(api_url, api_key=KEY_B) as aclient:
            answer = await aclient.usage(start=report.from_, group_by="day")
            return len(answer.data)

    assert asyncio.run(read()) == 1
