"""Embeddings through the real openai SDK (float, base64, SDK default) and input checks."""

from __future__ import annotations

import array
import base64
import math
import time

import httpx
import openai
import pytest

SMALL = "text-embedding-3-small"


def _norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def test_float_vectors_unit_norm_and_deterministic(client: openai.OpenAI) -> None:
    result = client.embeddings.create(
        model=SMALL, input=["apple", "banana", "apple"], encoding_format="float"
    )
    assert result.object == "list"
    assert result.model == SMALL
    assert [d.index for d in result.data] == [0, 1, 2]
    assert all(d.object == "embedding" for d in result.data)
    vectors = [d.embedding for d in result.data]
    assert all(len(v) == 1536 for v in vectors)
    assert all(abs(_norm(v) - 1.0) < 1e-6 for v in vectors)
    assert vectors[0] == vectors[2]
    assert vectors[0] != vectors[1]
    assert result.usage.prompt_tokens == result.usage.total_tokens > 0


def test_dimensions_by_model_and_parameter(client: openai.OpenAI) -> None:
    large = client.embeddings.create(model="text-embedding-3-large", input="x")
    assert len(large.data[0].embedding) == 3072
    other = client.embeddings.create(model="some-embedder", input="x")
    assert len(other.data[0].embedding) == 1536
    short = client.embeddings.create(model=SMALL, input="x", dimensions=256)
    assert len(short.data[0].embedding) == 256
    assert abs(_norm(short.data[0].embedding) - 1.0) < 1e-6


def test_base64_round_trip_matches_float(client: openai.OpenAI) -> None:
    texts = ["one", "two"]
    floats = client.embeddings.create(
        model=SMALL, input=texts, dimensions=64, encoding_format="float"
    )
    explicit = client.embeddings.create(
        model=SMALL, input=texts, dimensions=64, encoding_format="base64"
    )
    # Explicit base64: the SDK hands back the raw string.
    raw = explicit.data[0].embedding
    assert isinstance(raw, str)
    decoded = array.array("f", base64.b64decode(raw)).tolist()
    # SDK default: it requests base64 and decodes it to floats itself.
    default = client.embeddings.create(model=SMALL, input=texts, dimensions=64)
    for i in range(2):
        reference = floats.data[i].embedding
        assert len(default.data[i].embedding) == 64
        for a, b in zip(default.data[i].embedding, reference, strict=True):
            assert abs(a - b) < 1e-6
    for a, b in zip(decoded, floats.data[0].embedding, strict=True):
        assert abs(a - b) < 1e-6


def test_token_array_inputs(client: openai.OpenAI) -> None:
    single = client.embeddings.create(model=SMALL, input=[1, 2, 3], dimensions=8)
    assert len(single.data) == 1
    assert single.usage.prompt_tokens == 3
    many = client.embeddings.create(model=SMALL, input=[[1, 2, 3], [4, 5]], dimensions=8)
    assert len(many.data) == 2
    assert many.data[0].embedding == single.data[0].embedding


@pytest.mark.parametrize(
    "bad_input",
    [[f"t{i}" for i in range(2049)], "", ["ok", ""], [], [[]], 12],
)
def test_invalid_inputs_rejected(client: openai.OpenAI, bad_input) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=SMALL, input=bad_input)
    assert caught.value.type == "invalid_request_error"
    assert caught.value.param == "input"


def test_other_parameter_errors(client: openai.OpenAI, admin: httpx.Client) -> None:
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=SMALL, input="x", dimensions=5000)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="text-embedding-ada-002", input="x", dimensions=8)
    response = admin.post(
        "/v1/embeddings", json={"model": SMALL, "input": "x", "encoding_format": "hex"}
    )
    assert response.status_code == 400
    response = admin.post("/v1/embeddings", json={"input": "x"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"


def test_max_batch_is_fast(sim, admin: httpx.Client) -> None:
    texts = [f"document number {i}" for i in range(2048)]
    started = time.perf_counter()
    response = admin.post(
        "/v1/embeddings",
        json={"model": SMALL, "input": texts, "dimensions": 256, "encoding_format": "float"},
    )
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    data = response.json()["data"]
    assert len(data) == 2048 and len(data[-1]["embedding"]) == 256
    assert elapsed < 1.5


def test_embedding_faults(client: openai.OpenAI, add_faults) -> None:
    add_faults({"kind": "refusal"}, {"kind": "cut", "endpoint": "embeddings"})
    # refusal is chat-only: the embeddings request skips it and hits the cut
    with pytest.raises(openai.APIConnectionError):
        client.embeddings.create(model=SMALL, input="x")
    assert client.embeddings.create(model=SMALL, input="x").data
