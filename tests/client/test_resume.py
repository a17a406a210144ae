"""``events()`` is one iterator for a job through drops, cut streams and an API restart:
every event once, in order, ending at ``done``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from aijobs.client import AsyncClient, Client, JobEvent, RetryPolicy
from aijobs.devtools.redis_server import free_port
from aijobs.settings import Settings
from tests.client.httpproxy import Answer, CutAfter, Drop, HttpProxy
from tests.conftest import KEY_A
from tests.support import ApiProcess, clean_env, text_of

pytestmark = pytest.mark.usefixtures("worker")
FAST = RetryPolicy(base_s=0.02, cap_s=0.2)


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


def slow_text(simulator: Any, tokens_per_second: float = 40) -> None:
    config = {"tokens_per_second": tokens_per_second}
    httpx.put(f"{simulator.base_url}/_sim/config", json=config).raise_for_status()


def assert_whole(events: list[JobEvent], finished_text: str) -> None:
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[-1].event == "done"
    assert text_of(events) == finished_text


def test_iterator_survives_the_api_restarting_mid_stream(
    api_process: ApiProcess, simulator: Any
) -> None:
    slow_text(simulator)
    with Client(api_process.url, KEY_A, retry=FAST) as client:
        job = client.generate("m", "a story", max_tokens=160)  # ~4 s of text
        events = []
        restarted = False
        for event in client.events(job.id):
            events.append(event)
            if len(events) == 5 and not restarted:
                api_process.kill()  # the API dies mid-stream...
                api_process.start()  # ...and comes back
                restarted = True
        finished = client.get(job.id)
    assert restarted and finished.status == "succeeded"
    assert_whole(events, finished.result["text"])  # type: ignore[index]


def test_cut_streams_and_refusals_lose_and_repeat_nothing(api_url: str, simulator: Any) -> None:
    slow_text(simulator, 200)
    with HttpProxy.before(api_url) as proxy, Client(proxy.url, KEY_A, retry=FAST) as client:
        job = client.generate("m", "a story", max_tokens=120)
        events_path = f"/v1/jobs/{job.id}/events"
        # Cut mid-frame, refuse twice, cut again: each reconnect resumes after the last
        # whole event the client handed out.
        proxy.plan("GET", events_path, CutAfter(400), Drop(), Answer(503), CutAfter(900),
                   Answer(502), CutAfter(1500))  # fmt: skip
        events = list(client.events(job.id))
        finished = client.get(job.id)
        reads = proxy.requests("GET", events_path)
    assert_whole(events, finished.result["text"])  # type: ignore[index]
    assert len(reads) >= 7
    cursors = [int(r.headers.get("last-event-id", "0")) for r in reads]
    assert cursors == sorted(cursors) and cursors[-1] > 0


def test_async_iterator_resumes_the_same_way(api_url: str, simulator: Any) -> None:
    slow_text(simulator, 200)

    async def main() -> tuple[list[JobEvent], str]:
        with HttpProxy.before(api_url) as proxy:
            async with AsyncClient(proxy.url, KEY_A, retry=FAST) as client:
                job = await client.generate("m", "a story", max_tokens=80)
                path = f"/v1/jobs/{job.id}/events"
                proxy.plan("GET", path, CutAfter(300), Answer(504), Drop(), CutAfter(700))
                events = [e async for e in client.events(job.id)]
                return events, (await client.get(job.id)).result["text"]  # type: ignore[index]

    events, text = asyncio.run(main())
    assert_whole(events, text)


def test_a_dead_api_ends_events_with_api_unavailable(api_url: str) -> None:
    from aijobs.client import ApiUnavailable

    with Client(api_url, KEY_A) as client:
        job = client.generate("m", "hi", max_tokens=2)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    policy = RetryPolicy(base_s=0.01, cap_s=0.05, reconnect_for_s=0.5)
    with Client(dead, KEY_A, retry=policy) as client, pytest.raises(ApiUnavailable):
        list(client.events(job.id))
