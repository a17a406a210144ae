"""The Python client: one iterator whether the job runs or finished long ago, through drops
and an API restart."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from aijobs.client import AijobsError, AsyncClient, Client
from aijobs.devtools.redis_server import free_port
from aijobs.settings import Settings
from tests.conftest import KEY_A
from tests.support import ApiProcess, clean_env, text_after_last_reset

pytestmark = pytest.mark.usefixtures("worker")


def test_sync_client_submits_follows_and_waits(api_url: str) -> None:
    with Client(api_url, KEY_A) as client:
        job = client.generate("m", "[[echo]] one two three four", max_tokens=10)
        events = list(client.events(job["id"]))
        assert events[-1].event == "done"
        assert "".join(client.text(job["id"])) == "one two three four"
        finished = client.wait(job["id"])
        assert finished["status"] == "succeeded"
        assert finished["result"]["text"] == text_after_last_reset(events)
        assert list(client.events(job["id"], after=events[-2].id)) == events[-1:]
        with pytest.raises(AijobsError) as missing:
            client.get("0" * 32)
        assert missing.value.status == 404
        assert client.cancel(job["id"])["detail"].startswith("the job already finished")


def test_async_client_follows_to_the_end(api_url: str) -> None:
    async def run() -> tuple[list[Any], dict[str, Any]]:
        async with AsyncClient(api_url, KEY_A) as client:
            job = await client.generate("m", "hello", max_tokens=12)
            events = [e async for e in client.events(job["id"])]
            return events, await client.wait(job["id"])

    events, job = asyncio.run(run())
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert job["result"]["text"] == text_after_last_reset(events)


@pytest.fixture
def api_process(settings: Settings) -> Iterator[ApiProcess]:
    """The API as its own process, which the test can kill and start again."""
    api = ApiProcess(
        free_port(),
        clean_env(
            REDIS_URL=settings.require_redis_url(),
            DATABASE_URL=settings.database_url,
            AIJOBS_API_KEYS=settings.api_keys.get_secret_value(),
            AIJOBS_SSE_KEEPALIVE_S="1",
        ),
    )
    api.start()
    yield api
    api.stop()


def test_iterator_survives_the_api_restarting_mid_stream(
    api_process: ApiProcess, simulator: Any
) -> None:
    url = api_process.url
    httpx.put(
        f"{simulator.base_url}/_sim/config", json={"tokens_per_second": 40}
    ).raise_for_status()
    with Client(url, KEY_A, max_backoff_s=0.5) as client:
        job = client.generate("m", "a story", max_tokens=160)  # ~4 s of text
        events = []
        restarted = False
        for event in client.events(job["id"]):
            events.append(event)
            if len(events) == 5 and not restarted:
                api_process.kill()  # the API dies mid-stream...
                api_process.start()  # ...and comes back
                restarted = True
        finished = client.get(job["id"])
    assert restarted
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert finished["status"] == "succeeded"
    assert text_after_last_reset(events) == finished["result"]["text"]
