"""The client's ``usage()``, blocking and asyncio, and the new usage fields of a job."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from aijobs import AsyncClient, Client
from aijobs.devtools.simulator.request_keys import request_key_for_text
from aijobs.schemas import Message
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


def test_generate_sends_the_generation_parameters(api_url: str, simulator: Any) -> None:
    prompt = f"client parameters {uuid.uuid4().hex}"
    parts = [{"type": "text", "text": prompt},
             {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]  # fmt: skip
    with Client(api_url, api_key=KEY_B) as client:
        job = client.generate(
            "gpt-4o-mini", [Message(role="user", content=parts)],  # type: ignore[arg-type]
            max_completion_tokens=8, stop=["END"], seed=7, top_p=0.9, json_object=True,
            reasoning_effort="minimal", provider_options={"top_k": 3},
        )  # fmt: skip
        assert client.wait(job.id, timeout_s=60).status == "succeeded"
    key = request_key_for_text(prompt)
    log = httpx.get(f"{simulator.base_url}/_sim/requests", params={"key": key}).json()
    (params,) = [r["params"] for r in log["requests"]]
    assert params["max_completion_tokens"] == 8 and params["stop"] == ["END"]
    assert params["seed"] == 7 and params["top_p"] == 0.9 and params["top_k"] == 3
    assert params["response_format"] == {"type": "json_object"}
    assert params["reasoning_effort"] == "minimal"
