"""The request log: keys that group a job's calls, outcomes, ends and timestamps."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import httpx
import openai

from aijobs.devtools.simulator import (
    request_key_for_inputs,
    request_key_for_messages,
    request_key_for_text,
)

MODEL = "gpt-4o-mini"
EMBED_MODEL = "text-embedding-3-small"
SYSTEM = {"role": "system", "content": "Extract the fields as JSON."}
DOCUMENT = {"role": "user", "content": "Invoice 42 from ACME, due 2025-01-31."}


def test_repair_rounds_of_one_job_share_a_key(client: openai.OpenAI, sim_requests) -> None:
    first_round = [SYSTEM, DOCUMENT]
    first = client.chat.completions.create(model=MODEL, messages=first_round)
    repair_round = [
        *first_round,
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "That was not valid JSON. Answer again with only JSON."},
    ]
    client.chat.completions.create(model=MODEL, messages=repair_round, stream=True).close()
    client.chat.completions.create(
        model=MODEL, messages=[SYSTEM, {"role": "user", "content": "Another document."}]
    )
    key = request_key_for_messages(first_round)
    assert (
        key == request_key_for_messages(repair_round) == request_key_for_text(DOCUMENT["content"])
    )
    assert len(key) == 12 and int(key, 16) >= 0
    records = sim_requests()
    assert [r["key"] for r in records[:2]] == [key, key]
    assert records[2]["key"] != key
    assert [r["seq"] for r in sim_requests(key)] == [1, 2]
    assert [r["stream"] for r in sim_requests(key)] == [False, True]


def test_content_parts_give_the_same_key(client: openai.OpenAI, sim_requests) -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": DOCUMENT["content"]}]}]
    client.chat.completions.create(model=MODEL, messages=parts)
    assert sim_requests()[0]["key"] == request_key_for_messages([DOCUMENT])


def test_embeddings_key_is_the_first_input(client: openai.OpenAI, sim_requests) -> None:
    client.embeddings.create(model=EMBED_MODEL, input=["first text", "second"], dimensions=4)
    client.embeddings.create(model=EMBED_MODEL, input="first text", dimensions=4)
    client.embeddings.create(model=EMBED_MODEL, input=[[1, 2, 3], [4]], dimensions=4)
    keys = [r["key"] for r in sim_requests()]
    assert keys[0] == keys[1] == request_key_for_inputs(["first text", "second"])
    assert keys[0] == request_key_for_inputs("first text") == request_key_for_text("first text")
    assert keys[2] == request_key_for_inputs([[1, 2, 3], [4]]) == request_key_for_inputs([1, 2, 3])
    assert keys[2] != keys[0]
    assert [r["endpoint"] for r in sim_requests()] == ["embeddings"] * 3


def _summary(record: dict[str, Any]) -> tuple[Any, ...]:
    return (record["outcome"], record["source"], record["status"], record["end"])


def test_outcomes_statuses_and_ends(
    client: openai.OpenAI, admin: httpx.Client, add_faults, sim_requests, wait_until
) -> None:
    before = time.time()
    user = [{"role": "user", "content": "Tell me about queues."}]
    add_faults(
        {"kind": "server_error", "status": 503},
        {"kind": "cut", "after_chunks": 2},
        {"kind": "cut", "endpoint": "embeddings"},
        {"kind": "hang", "seconds": 30},
    )
    for call in (
        lambda: client.chat.completions.create(model=MODEL, messages=user),
        lambda: list(client.chat.completions.create(model=MODEL, messages=user, stream=True)),
        lambda: client.embeddings.create(model=EMBED_MODEL, input="x"),
        lambda: client.chat.completions.create(model=MODEL, messages=user, timeout=0.3),
    ):
        with contextlib.suppress(openai.APIError):
            call()
    list(client.chat.completions.create(model=MODEL, messages=user, stream=True, max_tokens=3))
    assert admin.post("/v1/chat/completions", content=b"{nope").status_code == 400
    assert admin.post("/v1/chat/completions", json={"messages": user}).status_code == 400

    def hang_noticed() -> list[dict[str, Any]]:
        records = sim_requests()
        return records if records[3]["end"] != "open" else []

    records = wait_until(hang_noticed, what="the hung request to see the client go")
    assert [_summary(r) for r in records] == [
        ("server_error", "fault", 503, "error"),
        ("cut", "fault", 200, "dropped"),
        ("cut", "fault", 200, "dropped"),
        ("hang", "fault", None, "client_closed"),
        ("ok", None, 200, "completed"),
        ("invalid_request", None, 400, "error"),
        ("invalid_request", None, 400, "error"),
    ]
    assert [r["detail"] for r in records[:4]] == [
        {"status": 503},
        {"after_chunks": 2},
        {},
        {"seconds": 30},
    ]
    assert [r["chunks"] for r in records[:5]] == [None, 2, None, None, 3]
    assert records[5]["key"] is None and records[5]["model"] is None
    assert records[6]["model"] is None and records[6]["key"] is not None
    for record in records:
        assert before <= record["started"] <= record["ended"] <= time.time()


def test_rpm_limit_and_client_closed_stream(
    client: openai.OpenAI, admin: httpx.Client, sim_requests, wait_until
) -> None:
    admin.put("/_sim/config", json={"rpm_limit": 1, "tokens_per_second": 20}).raise_for_status()
    user = [{"role": "user", "content": "Tell me about queues."}]
    stream = client.chat.completions.create(model=MODEL, messages=user, max_tokens=200, stream=True)
    next(iter(stream))
    with contextlib.suppress(openai.RateLimitError):
        client.chat.completions.create(model=MODEL, messages=user)
    stream.close()

    def closed() -> list[dict[str, Any]]:
        records = sim_requests()
        return records if records[0]["end"] == "client_closed" else []

    records = wait_until(closed, what="the stream to see the client go")
    assert [_summary(r) for r in records] == [
        ("ok", None, 200, "client_closed"),
        ("rate_limit", "rpm_limit", 429, "error"),
    ]
    assert 0 < records[1]["detail"]["retry_after_s"] <= 60


def test_since_filter_reset_and_totals(client: openai.OpenAI, admin: httpx.Client) -> None:
    user = [{"role": "user", "content": "Tell me about queues."}]
    for _ in range(3):
        client.chat.completions.create(model=MODEL, messages=user, max_tokens=1)
    body = admin.get("/_sim/requests", params={"since": 1}).json()
    assert [r["seq"] for r in body["requests"]] == [2, 3]
    assert (body["total"], body["kept"]) == (3, 3)
    assert admin.get("/_sim/requests", params={"key": "nope"}).json()["requests"] == []
    assert admin.get("/_sim/requests", params={"since": "x"}).status_code == 400
    admin.post("/_sim/reset").raise_for_status()
    assert admin.get("/_sim/requests").json() == {"requests": [], "total": 0, "kept": 0}
