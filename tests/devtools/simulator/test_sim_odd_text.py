"""Odd text: raw U+2028/U+2029/U+0085 and other non-ASCII text on the SSE wire."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai

MODEL = "gpt-4o-mini"
USER = [{"role": "user", "content": "Tell me about queues."}]
BREAKERS = ("\u2028", "\u2029", "\x85")


def _raw_stream(admin: httpx.Client, **body: Any) -> bytes:
    """The whole SSE body of a streamed chat completion, as bytes."""
    payload = {"model": MODEL, "messages": USER, "stream": True, **body}
    response = admin.post("/v1/chat/completions", json=payload)
    response.raise_for_status()
    return response.content


def _content_from_wire(raw: bytes) -> str:
    """Join the content deltas, splitting the wire on ``\\n`` only (as SSE says)."""
    pieces = []
    for line in raw.split(b"\n"):
        if line.startswith(b"data: ") and line != b"data: [DONE]":
            chunk = json.loads(line.removeprefix(b"data: ").decode("utf-8"))
            if chunk["choices"]:
                pieces.append(chunk["choices"][0]["delta"].get("content") or "")
    return "".join(pieces)


def test_odd_text_travels_raw_and_round_trips(
    client: openai.OpenAI, admin: httpx.Client, chaos, sim_requests
) -> None:
    chaos(odd_text=1.0)
    raw = _raw_stream(admin, max_tokens=20)
    streamed = _content_from_wire(raw)
    whole = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=20)
    assert streamed == whole.choices[0].message.content
    assert all(c in streamed for c in BREAKERS)
    assert any(ord(c) > 0xFFFF for c in streamed)  # astral characters (emoji) too
    # Unescaped on the wire: the UTF-8 bytes of each breaker, not a \\u escape.
    assert all(c.encode() in raw for c in BREAKERS)
    assert b"\\u2028" not in raw and b"\\u0085" not in raw
    # A client splitting on str.splitlines() cuts data lines in two and cannot parse them.
    naive = [line for line in raw.decode().splitlines() if line.startswith("data: {")]
    broken = 0
    for line in naive:
        try:
            json.loads(line.removeprefix("data: "))
        except ValueError:
            broken += 1
    assert broken >= 3
    assert [r["odd_text"] for r in sim_requests()] == [True, True]


def test_odd_text_is_deterministic_per_prompt(admin: httpx.Client, chaos) -> None:
    chaos(seed=1, odd_text=1.0)
    first = _content_from_wire(_raw_stream(admin))
    assert _content_from_wire(_raw_stream(admin)) == first
    chaos(seed=2, odd_text=1.0)
    assert _content_from_wire(_raw_stream(admin)) == first
    other = _content_from_wire(
        _raw_stream(admin, messages=[{"role": "user", "content": "Something else"}])
    )
    assert other != first
    chaos()  # off: the plain words again
    plain = _content_from_wire(_raw_stream(admin))
    assert plain != first and plain.isascii()
    assert len(plain.split(" ")) == len(first.split(" "))  # same number of tokens


def test_odd_text_through_the_typed_sdk_stream(client: openai.OpenAI, chaos) -> None:
    chaos(odd_text=1.0)
    whole = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=30)
    stream = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=30, stream=True)
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(pieces) == whole.choices[0].message.content
    assert len([p for p in pieces if p]) == 30
    assert whole.usage is not None and whole.usage.completion_tokens == 30


def test_odd_text_inside_json_object_answers(client: openai.OpenAI, chaos, sim_requests) -> None:
    chaos(odd_text=1.0)
    stream = client.chat.completions.create(
        model=MODEL, messages=USER, response_format={"type": "json_object"}, stream=True
    )
    content = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    value = json.loads(content)
    assert all(c in value["answer"] for c in BREAKERS)
    assert all(c in content for c in BREAKERS)  # raw inside the JSON text as well
    assert sim_requests()[0]["odd_text"] is True


def test_odd_text_leaves_schema_answers_and_embeddings_alone(
    client: openai.OpenAI, chaos, sim_requests
) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "required": ["name"],
        "additionalProperties": False,
    }
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": schema, "strict": True},
    }
    plain = client.chat.completions.create(
        model=MODEL, messages=USER, response_format=response_format
    )
    chaos(odd_text=1.0)
    odd = client.chat.completions.create(
        model=MODEL, messages=USER, response_format=response_format
    )
    assert odd.choices[0].message.content == plain.choices[0].message.content
    client.embeddings.create(model="text-embedding-3-small", input="x")
    assert [r["odd_text"] for r in sim_requests()] == [False, False, False]
