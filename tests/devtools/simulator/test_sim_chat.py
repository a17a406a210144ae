"""Chat completions through the real openai SDK: plain, streamed, raw stream, structured."""

from __future__ import annotations

import asyncio
import json
from typing import Literal

import httpx
import openai
import pydantic
import pytest

MODEL = "gpt-4o-mini"
USER = [{"role": "user", "content": "Tell me about queues."}]


def test_non_streamed_completion_is_typed_and_deterministic(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=10)
    again = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=10)
    other = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Something else"}], max_tokens=10
    )

    assert first.id.startswith("chatcmpl-")
    assert first.object == "chat.completion"
    assert first.model == MODEL
    choice = first.choices[0]
    assert choice.index == 0
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.refusal is None
    content = choice.message.content
    assert content is not None
    assert len(content.split()) == 10
    assert again.choices[0].message.content == content
    assert other.choices[0].message.content != content
    assert first.usage is not None
    assert first.usage.completion_tokens == 10
    assert first.usage.prompt_tokens > 0
    assert first.usage.total_tokens == first.usage.prompt_tokens + 10
    assert first._request_id is not None and first._request_id.startswith("req_")


def test_default_length_and_max_completion_tokens(client: openai.OpenAI) -> None:
    default = client.chat.completions.create(model=MODEL, messages=USER)
    assert default.usage is not None and default.usage.completion_tokens == 12  # test config
    capped = client.chat.completions.create(model=MODEL, messages=USER, max_completion_tokens=3)
    assert capped.usage is not None and capped.usage.completion_tokens == 3


def test_stream_concatenation_equals_non_streamed(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=9)
    stream = client.chat.completions.create(
        model=MODEL,
        messages=USER,
        max_tokens=9,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == 9
    assert "".join(c.choices[0].delta.content or "" for c in content_chunks) == (
        whole.choices[0].message.content
    )
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 9
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1
    assert all(c.object == "chat.completion.chunk" for c in chunks)


def test_stream_without_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(model=MODEL, messages=USER, max_tokens=3, stream=True)
    )
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_raw_streaming_response_wire_format(client: openai.OpenAI) -> None:
    with client.chat.completions.with_streaming_response.create(
        model=MODEL,
        messages=USER,
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = list(response.iter_lines())

    events = [line for line in lines if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in events[:-1]]
    assert len(chunks) == 1 + 4 + 1 + 1  # role, tokens, finish, usage
    for chunk in chunks:
        assert set(chunk) >= {"id", "object", "created", "model", "system_fingerprint"}
        assert chunk["object"] == "chat.completion.chunk"
        assert "usage" in chunk
        for choice in chunk["choices"]:
            assert choice["index"] == 0
            assert choice["logprobs"] is None
    assert chunks[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": "",
        "refusal": None,
    }
    assert all(set(c["choices"][0]["delta"]) == {"content"} for c in chunks[1:5])
    assert chunks[5]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert chunks[6]["choices"] == []
    assert chunks[6]["usage"]["completion_tokens"] == 4
    # Blank line after every event.
    assert lines.count("") >= len(events) - 1


def test_echo_marker(client: openai.OpenAI) -> None:
    messages = [
        {"role": "system", "content": "Repeat. [[echo]]"},
        {"role": "user", "content": "alpha  beta\ngamma"},
    ]
    answer = client.chat.completions.create(model=MODEL, messages=messages)
    assert answer.choices[0].message.content == "alpha beta gamma"
    pieces = [
        c.choices[0].delta.content
        for c in client.chat.completions.create(model=MODEL, messages=messages, stream=True)
        if c.choices and c.choices[0].delta.content
    ]
    assert pieces == ["alpha", " beta", " gamma"]
    capped = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=2)
    assert capped.choices[0].message.content == "alpha beta"
    assert capped.choices[0].finish_reason == "length"


class Address(pydantic.BaseModel):
    street: str
    city: str
    zip_code: str | None


class Person(pydantic.BaseModel):
    name: str
    age: int = pydantic.Field(ge=18, le=99)
    score: float
    active: bool
    role: Literal["admin", "user", "guest"]
    tags: list[str]
    home: Address
    previous: list[Address]
    nickname: str | None


def test_parse_with_pydantic_model(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(model=MODEL, messages=USER, response_format=Person)
    message = completion.choices[0].message
    assert isinstance(message.parsed, Person)
    assert 18 <= message.parsed.age <= 99
    again = client.chat.completions.parse(model=MODEL, messages=USER, response_format=Person)
    assert again.choices[0].message.parsed == message.parsed


def test_json_schema_stream_pieces_form_valid_json(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 3},
            "when": {"type": "string", "format": "date"},
            "email": {"type": "string", "format": "email"},
            "count": {"type": "integer", "minimum": 5, "maximum": 7},
            "items": {"type": "array", "items": {"type": "number"}, "minItems": 3},
            "kind": {"enum": ["a", "b"]},
            "maybe": {"type": ["string", "null"]},
        },
        "required": ["title", "when", "email", "count", "items", "kind", "maybe"],
        "additionalProperties": False,
    }
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": schema, "strict": True},
    }
    stream = client.chat.completions.create(
        model=MODEL, messages=USER, response_format=response_format, stream=True
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert all(len(p) <= 8 for p in pieces)
    value = json.loads("".join(pieces))
    assert set(value) == set(schema["required"])
    assert len(value["title"]) >= 3
    assert len(value["when"]) == 10 and value["when"][4] == "-"
    assert "@" in value["email"]
    assert 5 <= value["count"] <= 7
    assert len(value["items"]) >= 3
    assert value["kind"] in ("a", "b")


def test_json_object_mode(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model=MODEL, messages=USER, response_format={"type": "json_object"}
    )
    value = json.loads(answer.choices[0].message.content or "")
    assert isinstance(value, dict) and value


def test_validation_errors(client: openai.OpenAI, admin: httpx.Client) -> None:
    with pytest.raises(openai.BadRequestError) as missing_messages:
        client.chat.completions.create(model=MODEL, messages=None)  # type: ignore[arg-type]
    assert missing_messages.value.param == "messages"
    assert missing_messages.value.type == "invalid_request_error"

    response = admin.post("/v1/chat/completions", json={"messages": USER})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"

    response = admin.post("/v1/chat/completions", content=b"{nope")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"

    bad_schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "?"}}}
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=USER, response_format=bad_schema)
    assert bad.value.param == "response_format"

    with pytest.raises(openai.NotFoundError):
        client.post("/nowhere", cast_to=object, body={})


def test_models_list(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "gpt-4o-mini" in ids and "text-embedding-3-small" in ids
    assert client.models.retrieve("anything").id == "anything"


def test_async_client_streams_concurrently(sim, admin: httpx.Client) -> None:
    async def run() -> list[str]:
        async with openai.AsyncOpenAI(
            base_url=sim.api_base, api_key="sim", max_retries=0
        ) as client:

            async def one(i: int) -> str:
                stream = await client.chat.completions.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": f"prompt {i}"}],
                    stream=True,
                    max_tokens=6,
                )
                parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
                return "".join(parts)

            return await asyncio.gather(*(one(i) for i in range(20)))

    texts = asyncio.run(run())
    assert len(texts) == 20
    assert all(len(t.split()) == 6 for t in texts)
    stats = admin.get("/_sim/stats").json()
    assert stats["streams_completed"] == 20
    assert stats["max_in_flight"] > 1
