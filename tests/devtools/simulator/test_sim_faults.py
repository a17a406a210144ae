"""Each scripted fault kind, as the real openai SDK observes it."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import httpx2
import openai
import pydantic
import pytest

MODEL = "gpt-4o-mini"
USER = [{"role": "user", "content": "Tell me about queues."}]
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "size": {"type": "integer"}},
    "required": ["name", "size"],
    "additionalProperties": False,
}
JSON_SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "thing", "schema": SCHEMA, "strict": True},
}


class Thing(pydantic.BaseModel):
    name: str
    size: int


def test_rate_limit_fault_all_headers(client: openai.OpenAI, add_faults, stats) -> None:
    add_faults({"kind": "rate_limit", "retry_after_s": 2.5})
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=MODEL, messages=USER)
    error = caught.value
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    assert error.type == "requests"
    assert error.message.startswith("Error code: 429")
    assert isinstance(error.body, dict) and error.body["message"].startswith("Rate limit reached")
    headers = error.response.headers
    assert headers["retry-after"] == "3"
    assert headers["retry-after-ms"] == "2500"
    assert headers["x-ratelimit-reset-requests"] == "2.5s"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert int(headers["x-ratelimit-limit-requests"]) > 0
    # consumed once only
    client.chat.completions.create(model=MODEL, messages=USER)
    assert stats()["faults_served"] == {"rate_limit": 1}


@pytest.mark.parametrize(
    ("mode", "present"),
    [
        ("retry_after_only", {"retry-after"}),
        ("retry_after_ms_only", {"retry-after-ms"}),
        (
            "reset_only",
            {
                "x-ratelimit-reset-requests",
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
            },
        ),
        ("none", set()),
    ],
)
def test_rate_limit_header_modes(client: openai.OpenAI, add_faults, mode, present) -> None:
    add_faults({"kind": "rate_limit", "retry_after_s": 360, "headers": mode})
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=MODEL, messages=USER)
    names = {"retry-after", "retry-after-ms"} | {
        h for h in caught.value.response.headers if h.startswith("x-ratelimit")
    }
    assert {h for h in names if h in caught.value.response.headers} == present
    if "x-ratelimit-reset-requests" in present:
        assert caught.value.response.headers["x-ratelimit-reset-requests"] == "6m0s"


def test_sdk_retries_after_retry_after_ms(sim, admin: httpx.Client, add_faults) -> None:
    add_faults({"kind": "rate_limit", "retry_after_s": 0.05, "headers": "retry_after_ms_only"})
    with openai.OpenAI(base_url=sim.api_base, api_key="sim", max_retries=1) as retrying:
        answer = retrying.chat.completions.create(model=MODEL, messages=USER)
    assert answer.choices[0].message.content
    assert admin.get("/_sim/stats").json()["requests"]["chat"] == 2


def test_insufficient_quota(client: openai.OpenAI, add_faults) -> None:
    add_faults({"kind": "insufficient_quota"})
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=MODEL, messages=USER)
    assert caught.value.code == "insufficient_quota"
    assert caught.value.type == "insufficient_quota"
    assert caught.value.body == {
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "type": "insufficient_quota",
        "param": None,
        "code": "insufficient_quota",
    }
    assert "retry-after" not in caught.value.response.headers
    assert "retry-after-ms" not in caught.value.response.headers


def test_bad_request_and_server_errors(client: openai.OpenAI, add_faults) -> None:
    add_faults(
        {"kind": "bad_request", "code": "context_length_exceeded", "param": "messages"},
        {"kind": "server_error"},
        {"kind": "server_error", "status": 503},
    )
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=USER)
    assert bad.value.code == "context_length_exceeded"
    assert bad.value.param == "messages"
    assert bad.value.type == "invalid_request_error"

    with pytest.raises(openai.InternalServerError) as server:
        client.chat.completions.create(model=MODEL, messages=USER)
    assert server.value.status_code == 500
    assert server.value.type == "server_error"
    assert server.value.message == (
        "Error code: 500 - The server had an error while processing your request."
    )

    with pytest.raises(openai.InternalServerError) as unavailable:
        client.chat.completions.create(model=MODEL, messages=USER)
    assert unavailable.value.status_code == 503


def test_cut_stream_typed_sdk(client: openai.OpenAI, add_faults, stats) -> None:
    add_faults({"kind": "cut", "after_chunks": 3})
    stream = client.chat.completions.create(model=MODEL, messages=USER, stream=True)
    received = []
    with pytest.raises(openai.APIConnectionError) as caught:
        for chunk in stream:
            received.append(chunk)
    assert isinstance(caught.value.__cause__, httpx2.RemoteProtocolError)
    assert len(received) == 1 + 3  # role chunk + 3 content chunks, no finish chunk
    assert all(c.choices[0].finish_reason is None for c in received)
    snapshot = stats()
    assert snapshot["faults_served"] == {"cut": 1}
    assert snapshot["streams_closed_early"] == 0


def test_cut_stream_raw_lines(client: openai.OpenAI, add_faults) -> None:
    add_faults({"kind": "cut", "after_chunks": 2})
    lines: list[str] = []
    with (
        client.chat.completions.with_streaming_response.create(
            model=MODEL, messages=USER, stream=True
        ) as response,
        pytest.raises(httpx2.RemoteProtocolError),
    ):
        lines.extend(line for line in response.iter_lines() if line)
    assert len(lines) == 3
    assert "data: [DONE]" not in lines


def test_cut_non_streamed(client: openai.OpenAI, add_faults) -> None:
    add_faults({"kind": "cut"})
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model=MODEL, messages=USER)
    assert client.chat.completions.create(model=MODEL, messages=USER).choices


def test_hang_times_out_and_frees_server(
    client: openai.OpenAI, add_faults, stats, wait_until
) -> None:
    add_faults({"kind": "hang", "seconds": 30})
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model=MODEL, messages=USER, timeout=0.3)
    wait_until(lambda: stats()["in_flight"] == 0, what="hung request to notice the disconnect")


def test_short_hang_then_normal_answer(client: openai.OpenAI, add_faults) -> None:
    add_faults({"kind": "hang", "seconds": 0.2, "endpoint": "chat"})
    answer = client.chat.completions.with_raw_response.create(model=MODEL, messages=USER)
    assert answer.elapsed.total_seconds() >= 0.2
    assert answer.parse().choices[0].finish_reason == "stop"


def test_refusal_non_streamed_and_streamed(client: openai.OpenAI, add_faults) -> None:
    add_faults({"kind": "refusal", "times": 3})
    message = client.chat.completions.create(model=MODEL, messages=USER).choices[0].message
    assert message.content is None
    assert message.refusal and message.refusal.startswith("I'm sorry")

    chunks = list(client.chat.completions.create(model=MODEL, messages=USER, stream=True))
    refusal = "".join(c.choices[0].delta.refusal or "" for c in chunks)
    assert refusal == message.refusal
    assert all(not c.choices[0].delta.content for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"

    parsed = client.chat.completions.parse(model=MODEL, messages=USER, response_format=Thing)
    assert parsed.choices[0].message.parsed is None
    assert parsed.choices[0].message.refusal == message.refusal


def test_invalid_json_only_hits_json_requests(client: openai.OpenAI, add_faults) -> None:
    add_faults({"kind": "invalid_json"})
    plain = client.chat.completions.create(model=MODEL, messages=USER)
    assert plain.choices[0].message.content  # not consumed by a plain-text request
    answer = client.chat.completions.create(
        model=MODEL, messages=USER, response_format=JSON_SCHEMA_FORMAT
    )
    with pytest.raises(json.JSONDecodeError):
        json.loads(answer.choices[0].message.content or "")


def test_invalid_json_with_parse_raises_validation_error(client: openai.OpenAI, add_faults) -> None:
    add_faults({"kind": "invalid_json"})
    with pytest.raises(pydantic.ValidationError):
        client.chat.completions.parse(model=MODEL, messages=USER, response_format=Thing)


def test_schema_violation(client: openai.OpenAI, add_faults) -> None:
    add_faults({"kind": "schema_violation"})
    answer = client.chat.completions.create(
        model=MODEL, messages=USER, response_format=JSON_SCHEMA_FORMAT
    )
    value = json.loads(answer.choices[0].message.content or "")
    assert isinstance(value, dict)
    assert not set(SCHEMA["required"]) <= set(value)


def test_length_and_content_filter(client: openai.OpenAI, add_faults) -> None:
    add_faults({"kind": "length"}, {"kind": "content_filter"}, {"kind": "length"})
    length = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=5)
    assert length.choices[0].finish_reason == "length"
    assert length.usage is not None and length.usage.completion_tokens == 5
    chunks = list(client.chat.completions.create(model=MODEL, messages=USER, stream=True))
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    with pytest.raises(openai.LengthFinishReasonError):
        client.chat.completions.parse(model=MODEL, messages=USER, response_format=Thing)


def test_filters_times_and_fifo(client: openai.OpenAI, add_faults, admin: httpx.Client) -> None:
    add_faults(
        {"kind": "server_error", "model": "other-model"},
        {"kind": "bad_request", "endpoint": "embeddings"},
        {"kind": "rate_limit", "times": 2},
    )
    assert len(admin.get("/_sim/faults").json()["faults"]) == 3
    # chat for MODEL skips the first two specs and hits the rate limit, twice
    for _ in range(2):
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model=MODEL, messages=USER)
    client.chat.completions.create(model=MODEL, messages=USER)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="other-model", messages=USER)
    assert admin.get("/_sim/faults").json() == {"faults": []}


def test_fault_admin_validation_and_clear(admin: httpx.Client, client: openai.OpenAI) -> None:
    bad = admin.post("/_sim/faults", json={"faults": [{"kind": "explode"}]})
    assert bad.status_code == 400
    assert "kind" in bad.json()["error"]["message"]
    assert admin.post("/_sim/faults", json={"faults": [{"kind": "cut", "x": 1}]}).is_error
    assert admin.post("/_sim/faults", json=[{"kind": "cut"}]).is_error
    added = admin.post("/_sim/faults", json={"faults": [{"kind": "cut"}, {"kind": "hang"}]})
    assert added.json() == {"added": 2, "pending": 2}
    assert admin.delete("/_sim/faults").json() == {"cleared": 2}
    assert client.chat.completions.create(model=MODEL, messages=USER).choices


def test_scripted_trickle_stream(client: openai.OpenAI, add_faults, sim_requests) -> None:
    add_faults({"kind": "trickle", "interval_s": 0.1})
    started = time.perf_counter()
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=USER, max_tokens=4, stream=True, timeout=0.3
        )
    )
    elapsed = time.perf_counter() - started
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len([c for c in chunks if c.choices[0].delta.content]) == 4
    assert elapsed >= 4 * 0.1 * 0.9
    (record,) = sim_requests()
    assert (record["outcome"], record["source"], record["end"]) == ("trickle", "fault", "completed")
    assert record["detail"] == {"interval_s": 0.1}


def test_scripted_stall_stream_until_client_closes(
    add_faults, read_stalled_stream, sim_requests, stats, wait_until
) -> None:
    add_faults({"kind": "stall", "after_chunks": 2, "interval_s": 0.05})
    lines = read_stalled_stream(3)
    assert [line.startswith("data: {") for line in lines] == [True] * 3 + [False] * 3

    def closed() -> list[dict[str, Any]]:
        records = sim_requests()
        return records if records[0]["end"] == "client_closed" else []

    (record,) = wait_until(closed, what="the stall to see the client go")
    assert (record["outcome"], record["chunks"]) == ("stall", 2)
    assert record["detail"] == {"after_chunks": 2, "interval_s": 0.05}
    assert stats()["faults_served"] == {"stall": 1}
    wait_until(lambda: stats()["in_flight"] == 0, what="the stall to leave")


def test_scripted_stall_and_trickle_validation(admin: httpx.Client) -> None:
    for spec in ({"kind": "stall", "interval_s": 0}, {"kind": "trickle", "interval_s": "x"}):
        response = admin.post("/_sim/faults", json={"faults": [spec]})
        assert response.status_code == 400
        assert "interval_s" in response.json()["error"]["message"]
