"""Generation parameters: each one reaches the provider through the real ``openai`` SDK
(the simulator's request log shows what it received), content parts pass through, and a
value out of bounds is a 422 that names the field."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from aijobs.devtools.simulator import RunningSimulator
from aijobs.devtools.simulator.request_keys import request_key_for_text
from tests.support import wait_for

pytestmark = pytest.mark.usefixtures("worker")


def finished(client: httpx.Client, job_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = client.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    return wait_for(done, timeout_s=60)


def received(simulator: RunningSimulator, prompt: str) -> list[dict[str, Any]]:
    key = request_key_for_text(prompt)
    log = httpx.get(f"{simulator.base_url}/_sim/requests", params={"key": key}).json()
    return [r["params"] for r in log["requests"]]


def generate(**fields: Any) -> dict[str, Any]:
    return {"kind": "generate", "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "hi"}], **fields}  # fmt: skip


def test_every_parameter_reaches_the_provider(
    client: httpx.Client, simulator: RunningSimulator
) -> None:
    prompt = f"parameters {uuid.uuid4().hex}"
    image = {"url": "https://example.com/cat.png", "detail": "low"}
    body = generate(
        messages=[
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": prompt},
                                         {"type": "image_url", "image_url": image}]},
        ],
        max_completion_tokens=12, stop=["\n\n", "END"], seed=42, top_p=0.5,
        response_format={"type": "json_object"}, reasoning_effort="low",
        provider_options={"top_k": 5, "repetition_penalty": 1.1, "chat_template_kwargs":
                          {"enable_thinking": False}},
    )  # fmt: skip
    answer = client.post("/v1/jobs", json=body)
    assert answer.status_code == 202, answer.text
    job = finished(client, answer.json()["id"])
    assert job["status"] == "succeeded", job
    assert isinstance(json.loads(job["result"]["text"]), dict)  # json_object

    (params,) = received(simulator, prompt)
    assert params["max_completion_tokens"] == 12 and "max_tokens" not in params
    assert params["stop"] == ["\n\n", "END"] and params["seed"] == 42
    assert params["top_p"] == 0.5 and params["reasoning_effort"] == "low"
    assert params["response_format"] == {"type": "json_object"}
    # Provider options are top-level fields of the body (the SDK's extra_body).
    assert params["top_k"] == 5 and params["repetition_penalty"] == 1.1
    assert params["chat_template_kwargs"] == {"enable_thinking": False}
    assert "messages" not in params  # the log never keeps a prompt


def test_a_single_stop_string_and_max_tokens_alone(
    client: httpx.Client, simulator: RunningSimulator
) -> None:
    prompt = f"one stop {uuid.uuid4().hex}"
    body = generate(messages=[{"role": "user", "content": prompt}], stop="END", max_tokens=3)
    job = finished(client, client.post("/v1/jobs", json=body).json()["id"])
    assert job["status"] == "succeeded" and job["usage"]["completion_tokens"] == 3
    (params,) = received(simulator, prompt)
    assert params["stop"] == "END" and params["max_tokens"] == 3
    for absent in ("seed", "top_p", "reasoning_effort", "response_format", "stop_sequences"):
        assert absent not in params


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"top_p": 1.5}, "top_p"),
        ({"top_p": -0.1}, "top_p"),
        ({"seed": 2**64}, "seed"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": ""}, "stop"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"max_completion_tokens": 10**9}, "max_completion_tokens"),
        ({"max_completion_tokens": 5, "max_tokens": 5}, "max_completion_tokens"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"response_format": {"type": "json_schema"}}, "response_format"),
        ({"provider_options": {"model": "other"}}, "provider_options.model"),
        ({"provider_options": {"stream": False}}, "provider_options.stream"),
        ({"provider_options": "top_k=5"}, "provider_options"),
        ({"messages": [{"role": "user", "content": [{"type": "audio", "data": "x"}]}]},
         "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url",
                                                     "image_url": {"url": ""}}]}]},
         "messages[0].content"),
    ],
)  # fmt: skip
def test_out_of_bounds_is_a_422_naming_the_field(
    client: httpx.Client, fields: dict[str, Any], named: str
) -> None:
    answer = client.post("/v1/jobs", json=generate(**fields))
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(named), answer.json()
