"""Chaos mode: seeded random faults, each kind as the real openai SDK observes it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
import httpx2
import openai
import pytest

from aijobs.devtools.simulator import SimulatorConfig, request_key_for_messages, running_simulator

MODEL = "gpt-4o-mini"
EMBED_MODEL = "text-embedding-3-small"
USER = [{"role": "user", "content": "Tell me about queues."}]
MIXED = {"rate_limit": 0.25, "server_error": 0.25, "cut": 0.25, "retry_after_max_s": 0.2}

#: What the SDK raises for each outcome of a non-streamed call.
RAISED: dict[str, type[Exception] | None] = {
    "ok": None,
    "rate_limit": openai.RateLimitError,
    "server_error": openai.InternalServerError,
    "cut": openai.APIConnectionError,
}


def _call_many(client: openai.OpenAI, count: int) -> list[str]:
    """Non-streamed calls with distinct prompts; the name of what each one raised."""
    seen = []
    for i in range(count):
        try:
            client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": f"prompt {i}"}], max_tokens=3
            )
            seen.append("ok")
        except openai.APIError as exc:
            seen.append(type(exc).__name__)
    return seen


def test_same_seed_repeats_the_same_outcomes(
    client: openai.OpenAI, admin: httpx.Client, chaos, sim_requests
) -> None:
    chaos(seed=7, **MIXED)
    raised = _call_many(client, 24)
    first = [(r["outcome"], r["detail"]) for r in sim_requests()]
    outcomes = [outcome for outcome, _ in first]
    assert set(outcomes) == set(RAISED)  # seed 7 draws every kind within 24 requests
    assert raised == [
        "ok" if RAISED[o] is None else RAISED[o].__name__  # type: ignore[union-attr]
        for o in outcomes
    ]
    assert all(r["source"] == ("chaos" if r["outcome"] != "ok" else None) for r in sim_requests())

    admin.post("/_sim/reset").raise_for_status()  # restarts the sequence
    assert _call_many(client, 24) == raised
    assert [(r["outcome"], r["detail"]) for r in sim_requests()] == first

    chaos(seed=7, **MIXED)  # putting the section again restarts it too
    assert _call_many(client, 24) == raised

    chaos(seed=8, **MIXED)
    assert _call_many(client, 24) != raised


def test_by_key_outcomes_do_not_depend_on_interleaving(
    client: openai.OpenAI, admin: httpx.Client, chaos, sim_requests
) -> None:
    prompts = [f"job {i}" for i in range(4)]

    def run(order: list[str]) -> dict[str, list[str]]:
        admin.post("/_sim/reset").raise_for_status()
        for prompt in order:
            with contextlib.suppress(openai.APIError):
                client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=2
                )
        per_key: dict[str, list[str]] = {}
        for record in sim_requests():
            per_key.setdefault(record["key"], []).append(record["outcome"])
        return per_key

    chaos(seed=3, by_key=True, rate_limit=0.3, server_error=0.3)
    forward = run(prompts * 3)
    backward = run(list(reversed(prompts)) * 3)
    assert forward == backward
    assert set(forward) == {
        request_key_for_messages([{"role": "user", "content": p}]) for p in prompts
    }
    assert len({tuple(v) for v in forward.values()}) > 1  # keys do draw differently


def test_chaos_rate_limit_has_retry_headers(client: openai.OpenAI, chaos, sim_requests) -> None:
    chaos(rate_limit=1.0, retry_after_min_s=0.05, retry_after_max_s=0.3)
    for _ in range(5):
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model=MODEL, messages=USER)
        assert caught.value.code == "rate_limit_exceeded"
        headers = caught.value.response.headers
        assert 50 <= int(headers["retry-after-ms"]) <= 300
        assert headers["retry-after"] == "1"
        assert headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model=EMBED_MODEL, input="x")
    waits = [r["detail"]["retry_after_s"] for r in sim_requests()]
    assert len(waits) == 6 and all(0.05 <= w <= 0.3 for w in waits)


def test_sdk_retry_gets_through_a_chaos_rate_limit(sim, admin: httpx.Client, chaos, sim_requests):
    chaos(seed=4, rate_limit=0.5, retry_after_max_s=0.1)  # seed 4: a 429, then an answer
    with openai.OpenAI(base_url=sim.api_base, api_key="sim", max_retries=2) as retrying:
        answer = retrying.chat.completions.create(model=MODEL, messages=USER)
    assert answer.choices[0].message.content
    key = request_key_for_messages(USER)
    assert [(r["outcome"], r["status"]) for r in sim_requests(key)] == [
        ("rate_limit", 429),
        ("ok", 200),
    ]


def test_chaos_server_errors_are_mostly_500(client: openai.OpenAI, chaos) -> None:
    chaos(seed=0, server_error=1.0)
    statuses = []
    for _ in range(10):
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model=MODEL, messages=USER)
        assert caught.value.type == "server_error"
        statuses.append(caught.value.status_code)
    assert set(statuses) == {500, 502, 503}  # seed 0 draws all three
    assert statuses.count(500) >= 3


def test_chaos_cut_stream_raises_after_the_drawn_chunks(
    client: openai.OpenAI, chaos, sim_requests, stats
) -> None:
    chaos(seed=1, cut=1.0)
    for i in range(4):
        prompt = [{"role": "user", "content": f"cut {i}"}]
        stream = client.chat.completions.create(
            model=MODEL, messages=prompt, stream=True, max_tokens=10
        )
        received = []
        with pytest.raises(openai.APIConnectionError) as caught:
            for chunk in stream:
                received.append(chunk)
        assert isinstance(caught.value.__cause__, httpx2.RemoteProtocolError)
        assert all(c.choices[0].finish_reason is None for c in received)
        (record,) = sim_requests(request_key_for_messages(prompt))
        assert (record["outcome"], record["end"], record["status"]) == ("cut", "dropped", 200)
        assert len(received) == 1 + record["detail"]["after_chunks"] == 1 + record["chunks"]
        assert record["chunks"] <= 10
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model=MODEL, messages=USER)
    with pytest.raises(openai.APIConnectionError):
        client.embeddings.create(model=EMBED_MODEL, input="x")
    assert stats()["chaos_served"] == {"cut": 6}
    assert stats()["in_flight"] == 0


def test_chaos_trickle_stream_is_slow_but_completes(client: openai.OpenAI, chaos) -> None:
    whole = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=5)
    chaos(trickle=1.0, trickle_min_s=0.15, trickle_max_s=0.15)
    # The read timeout (0.4 s) is shorter than the whole stream, yet never fires.
    stream = client.chat.completions.create(
        model=MODEL, messages=USER, max_tokens=5, stream=True, timeout=0.4
    )
    started = time.perf_counter()
    arrivals: list[float] = []
    pieces: list[str] = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter())
            pieces.append(chunk.choices[0].delta.content)
        last = chunk
    elapsed = time.perf_counter() - started
    assert "".join(pieces) == whole.choices[0].message.content
    assert last.choices[0].finish_reason == "stop"
    assert elapsed >= 5 * 0.15 * 0.9 > 0.4
    # Token i is never sent before (i + 1) intervals (a late write may bunch the next ones).
    assert len(arrivals) == 5
    assert all(at - started >= (i + 1) * 0.15 * 0.9 for i, at in enumerate(arrivals))


def test_chaos_trickle_non_streamed_bodies(client: openai.OpenAI, chaos, sim_requests) -> None:
    whole = client.chat.completions.create(model=MODEL, messages=USER)
    vector = client.embeddings.create(model=EMBED_MODEL, input="x", dimensions=8)
    chaos(trickle=1.0, trickle_min_s=0.06, trickle_max_s=0.06)
    started = time.perf_counter()
    # Each body takes 8 x 0.06 s, longer than the read timeout, which never fires.
    slow = client.chat.completions.create(model=MODEL, messages=USER, timeout=0.4)
    slow_vector = client.embeddings.create(model=EMBED_MODEL, input="x", dimensions=8, timeout=0.4)
    elapsed = time.perf_counter() - started
    assert slow.choices[0].message.content == whole.choices[0].message.content
    assert slow_vector.data[0].embedding == vector.data[0].embedding
    assert elapsed >= 2 * 8 * 0.06 * 0.9  # 8 pieces each, 0.06 s apart
    trickled = sim_requests()[2:]
    assert [(r["outcome"], r["end"], r["detail"]) for r in trickled] == [
        ("trickle", "completed", {"interval_s": 0.06})
    ] * 2


def test_chaos_stall_ends_only_at_a_total_deadline(
    sim, client: openai.OpenAI, chaos, sim_requests, stats, wait_until
) -> None:
    chaos(seed=2, stall=1.0, stall_after_max_chunks=3, stall_keepalive_s=0.05)

    async def run() -> tuple[list[Any], float]:
        # A read timeout of 0.3 s: the keep-alives (every 0.05 s) keep it from ever firing.
        async with openai.AsyncOpenAI(
            base_url=sim.api_base, api_key="sim", max_retries=0, timeout=0.3
        ) as async_client:
            stream = await async_client.chat.completions.create(
                model=MODEL, messages=USER, stream=True, max_tokens=20
            )
            received: list[Any] = []
            started = time.perf_counter()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(1.0):  # the total deadline
                    async for chunk in stream:
                        received.append(chunk)
            elapsed = time.perf_counter() - started
            await stream.close()
            return received, elapsed

    received, elapsed = asyncio.run(run())
    assert elapsed >= 1.0
    assert all(c.choices[0].finish_reason is None for c in received)

    def closed() -> list[dict[str, Any]]:
        records = sim_requests()
        return records if records[0]["end"] == "client_closed" else []

    (record,) = wait_until(closed, what="the stalled stream to see the client go")
    assert record["outcome"] == "stall" and record["status"] == 200
    assert len(received) == 1 + record["detail"]["after_chunks"] == 1 + record["chunks"]
    assert record["detail"]["interval_s"] == 0.05
    assert record["ended"] - record["started"] >= 1.0
    wait_until(lambda: stats()["in_flight"] == 0, what="the stall to leave")


def test_chaos_stall_raw_stream_sends_keep_alives(chaos, read_stalled_stream) -> None:
    chaos(stall=1.0, stall_after_max_chunks=0, stall_keepalive_s=0.05)
    lines = read_stalled_stream(8)  # 0.4 s of stall, longer than the read timeout
    assert len(lines) == 1 + 8  # the role chunk, then comments only
    assert lines[0].startswith("data: {")


def test_chaos_stall_non_streamed(sim, chaos, sim_requests, stats, wait_until) -> None:
    chaos(stall=1.0, stall_keepalive_s=0.05)

    async def run() -> None:
        async with openai.AsyncOpenAI(
            base_url=sim.api_base, api_key="sim", max_retries=0, timeout=0.3
        ) as async_client:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.6):
                    await async_client.chat.completions.create(model=MODEL, messages=USER)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.6):
                    await async_client.embeddings.create(model=EMBED_MODEL, input="x")

    asyncio.run(run())

    def both_closed() -> bool:
        return [r["end"] for r in sim_requests()] == ["client_closed"] * 2

    wait_until(both_closed, what="both stalled answers to see the client go")
    assert [r["outcome"] for r in sim_requests()] == ["stall", "stall"]
    wait_until(lambda: stats()["in_flight"] == 0, what="the stalls to leave")


def test_scripted_faults_take_precedence(
    client: openai.OpenAI, chaos, add_faults, sim_requests
) -> None:
    chaos(server_error=1.0)
    add_faults({"kind": "length"})
    answer = client.chat.completions.create(model=MODEL, messages=USER)
    assert answer.choices[0].finish_reason == "length"
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=MODEL, messages=USER)
    assert [(r["outcome"], r["source"]) for r in sim_requests()] == [
        ("length", "fault"),
        ("server_error", "chaos"),
    ]


def test_chaos_config_endpoint(admin: httpx.Client, chaos) -> None:
    chaos(seed=5, cut=0.1)
    section = admin.get("/_sim/config").json()["config"]["chaos"]
    assert section["seed"] == 5 and section["cut"] == 0.1 and section["stall"] == 0.0
    # Other fields leave the section alone; a new section replaces the whole of it.
    admin.put("/_sim/config", json={"latency_ms": 1}).raise_for_status()
    assert admin.get("/_sim/config").json()["config"]["chaos"]["cut"] == 0.1
    chaos(stall=0.2)
    section = admin.get("/_sim/config").json()["config"]["chaos"]
    assert (section["seed"], section["cut"], section["stall"]) == (0, 0.0, 0.2)
    assert admin.put("/_sim/config", json={"chaos": None}).json()["config"]["chaos"]["stall"] == 0
    for bad in ({"cut": 1.5}, {"cut": 0.6, "stall": 0.6}, {"boom": 1}, {"seed": "x"}):
        response = admin.put("/_sim/config", json={"chaos": bad})
        assert response.status_code == 400, bad
        assert "chaos" in response.json()["error"]["message"]
    assert admin.put("/_sim/config", json={"chaos": [1]}).status_code == 400


def test_chaos_from_the_environment_at_start() -> None:
    env = {"AIJOBS_SIM_CHAOS": '{"seed": 11, "rate_limit": 1, "retry_after_max_s": 0.1}'}
    with running_simulator(SimulatorConfig.from_env(env)) as other:
        assert httpx.get(f"{other.base_url}/_sim/config").json()["config"]["chaos"]["seed"] == 11
        with (
            openai.OpenAI(base_url=other.api_base, api_key="sim", max_retries=0) as fresh,
            pytest.raises(openai.RateLimitError),
        ):
            fresh.chat.completions.create(model=MODEL, messages=USER)
