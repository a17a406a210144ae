"""RPM limiting, ``max_in_window``, early-closed streams, stats and run-time config."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest

MODEL = "gpt-4o-mini"
USER = [{"role": "user", "content": "Tell me about queues."}]


def test_rpm_limit_and_max_in_window(client: openai.OpenAI, admin: httpx.Client, wait_until):
    admin.put("/_sim/config", json={"rpm_limit": 3, "rpm_window_s": 0.5}).raise_for_status()
    for _ in range(3):
        client.chat.completions.create(model=MODEL, messages=USER, max_tokens=1)
    with pytest.raises(openai.RateLimitError) as caught:
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert caught.value.code == "rate_limit_exceeded"
    headers = caught.value.response.headers
    assert 0 < float(headers["retry-after-ms"]) <= 500
    assert headers["retry-after"] == "1"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-limit-requests"] == "3"

    # A slot frees once the oldest admitted request leaves the window.
    def admitted() -> bool:
        try:
            client.chat.completions.create(model=MODEL, messages=USER, max_tokens=1)
        except openai.RateLimitError:
            return False
        return True

    wait_until(admitted, timeout=3, what="a free rpm slot")
    stats = admin.get("/_sim/stats").json()
    assert stats["max_in_window"] == 3
    assert stats["rate_limited"] >= 1
    assert stats["requests"]["embeddings"] == 1


def test_max_in_window_without_limit(client: openai.OpenAI, admin: httpx.Client) -> None:
    for _ in range(4):
        client.chat.completions.create(model=MODEL, messages=USER, max_tokens=1)
    assert admin.get("/_sim/stats").json()["max_in_window"] == 4


def test_client_closed_stream_is_counted(
    client: openai.OpenAI, admin: httpx.Client, wait_until
) -> None:
    admin.put("/_sim/config", json={"tokens_per_second": 20}).raise_for_status()
    stream = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=200, stream=True)
    for i, _chunk in enumerate(stream):
        if i == 2:
            break
    stream.close()

    def closed_early() -> bool:
        stats = admin.get("/_sim/stats").json()
        return stats["streams_closed_early"] == 1 and stats["in_flight"] == 0

    wait_until(closed_early, what="the server to notice the closed stream")
    stats = admin.get("/_sim/stats").json()
    assert stats["streams_started"] == 1
    assert stats["streams_completed"] == 0


def test_stream_pacing_and_latency(client: openai.OpenAI, admin: httpx.Client) -> None:
    admin.put("/_sim/config", json={"tokens_per_second": 50, "latency_ms": 150}).raise_for_status()
    started = time.perf_counter()
    stream = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=10, stream=True)
    first_at = None
    for chunk in stream:
        if first_at is None:
            first_at = time.perf_counter() - started
        assert chunk.id
    total = time.perf_counter() - started
    assert first_at is not None and first_at >= 0.15
    assert total >= 0.15 + 10 / 50 * 0.9


def test_stats_shape(client: openai.OpenAI, admin: httpx.Client, sim) -> None:
    before = time.time()
    client.chat.completions.create(model=MODEL, messages=USER, max_tokens=1)
    client.embeddings.create(model="text-embedding-3-small", input="x")
    client.models.list()
    httpx.post(
        sim.api_base + "/chat/completions",
        json={"model": "other", "messages": USER, "max_tokens": 1},
    ).raise_for_status()
    stats = admin.get("/_sim/stats").json()
    assert stats["requests"] == {"chat": 2, "embeddings": 1, "models": 1}
    assert stats["requests_by_model"] == {MODEL: 1, "text-embedding-3-small": 1, "other": 1}
    assert len(stats["request_times"]["chat"]) == 2
    assert all(before <= t <= time.time() for t in stats["request_times"]["chat"])
    assert stats["auth"] == {"bearer": 3, "missing": 1}
    assert stats["faults_served"] == {}
    assert stats["faults_pending"] == 0
    assert stats["config"]["tokens_per_second"] == 400.0
    assert admin.post("/_sim/reset").json() == {"ok": True}
    assert admin.get("/_sim/stats").json()["requests"] == {}


def test_config_endpoint(admin: httpx.Client) -> None:
    updated = admin.put("/_sim/config", json={"max_tokens_default": 7, "latency_ms": 5})
    assert updated.status_code == 200
    assert updated.json()["config"]["max_tokens_default"] == 7
    assert admin.get("/_sim/config").json()["config"]["latency_ms"] == 5.0
    assert admin.put("/_sim/config", json={"rpm_limit": -1}).status_code == 400
    assert admin.put("/_sim/config", json={"bogus": 1}).status_code == 400
    assert admin.put("/_sim/config", json={"tokens_per_second": "fast"}).status_code == 400


def test_hundreds_of_concurrent_streams(sim, admin: httpx.Client) -> None:
    """200 paced streams at once, read by a minimal raw-socket client, all complete."""
    admin.put("/_sim/config", json={"tokens_per_second": 50}).raise_for_status()
    host, port = "127.0.0.1", sim.port

    async def one(i: int) -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        body = json.dumps(
            {"model": MODEL, "messages": [{"role": "user", "content": f"p{i}"}], "stream": True,
             "max_tokens": 20}
        ).encode()  # fmt: skip
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json"
            b"\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        data = await reader.read()
        writer.close()
        await writer.wait_closed()
        return data

    async def run() -> list[bytes]:
        return await asyncio.gather(*(one(i) for i in range(200)))

    started = time.perf_counter()
    answers = asyncio.run(run())
    elapsed = time.perf_counter() - started
    assert all(a.count(b"data: ") == 1 + 20 + 1 + 1 for a in answers)
    assert all(b"data: [DONE]" in a for a in answers)
    assert elapsed < 10
    stats = admin.get("/_sim/stats").json()
    assert stats["streams_completed"] == 200
    assert stats["max_in_flight"] > 100
