"""Every method of ``Client`` against the real API (HTTP), a real worker and the
simulator: the API's own models come back, errors are typed."""

from __future__ import annotations

import importlib.metadata
import uuid

import httpx
import pytest

from aijobs import __version__
from aijobs.client import (
    ApiError,
    CancelAnswer,
    Client,
    EmbedInput,
    ErrorCode,
    EventToken,
    JobEvent,
    JobPage,
    JobPublic,
    NoResult,
    TextReset,
    WaitTimeout,
)
from tests.conftest import KEY_A
from tests.support import text_of

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def sdk(api_url: str):
    with Client(api_url, KEY_A) as client:
        yield client


def test_generate_events_text_and_wait(sdk: Client) -> None:
    job = sdk.generate("m", "[[echo]] one two three four", max_tokens=10,
                       metadata={"test": "generate"})  # fmt: skip
    assert isinstance(job, JobPublic) and job.status == "queued" and job.kind == "generate"
    assert job.metadata == {"test": "generate"}
    events = list(sdk.events(job.id))
    assert all(isinstance(e, JobEvent) for e in events)
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[-1].event == "done" and events[-1].data == {"status": "succeeded"}
    pieces = list(sdk.text(job.id))
    assert not any(isinstance(p, TextReset) for p in pieces)
    assert "".join(p for p in pieces if isinstance(p, str)) == "one two three four"
    finished = sdk.wait(job.id, timeout_s=30)
    assert finished.status == "succeeded" and finished.finished_at is not None
    assert finished.result == {"text": text_of(events), "finish_reason": "stop"}
    # Resuming: the events after an id, and nothing (204) after the last one.
    assert list(sdk.events(job.id, after=events[-2].id)) == events[-1:]
    assert list(sdk.events(job.id, after=events[-1].id)) == []


def test_a_system_message_and_a_conversation(sdk: Client) -> None:
    job = sdk.generate(
        "m", [{"role": "user", "content": "[[echo]] from a list"}], system="be brief"
    )
    assert sdk.wait(job.id).result["text"] == "from a list"  # type: ignore[index]


def test_extract_returns_data_matching_the_schema(sdk: Client) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}},
              "required": ["city"]}  # fmt: skip
    job = sdk.extract("m", "I live in Paris", schema, instructions="find the city")
    finished = sdk.wait(job.id, timeout_s=30)
    assert finished.status == "succeeded"
    assert isinstance(finished.result["data"]["city"], str)  # type: ignore[index]


def test_embed_get_with_and_without_vectors_and_embeddings(sdk: Client) -> None:
    job = sdk.embed("e", ["alpha", "beta", "gamma"], dimensions=8)
    done = sdk.wait(job.id, timeout_s=30)
    assert done.status == "succeeded"
    assert "embeddings" not in done.result  # wait() leaves the vectors out by default
    assert done.result["dimensions"] == 8  # type: ignore[index]
    floats = sdk.get(job.id)
    assert len(floats.result["embeddings"]) == 3  # type: ignore[index]
    as_b64 = sdk.get(job.id, vector_format="base64")
    assert all(isinstance(v, str) for v in as_b64.result["embeddings"])  # type: ignore[index]
    vectors = sdk.embeddings(job.id)
    assert (vectors.count, vectors.dimensions, len(vectors.float32le)) == (3, 8, 3 * 8 * 4)
    for mine, theirs in zip(vectors.tolist(), floats.result["embeddings"], strict=True):  # type: ignore[index]
        assert mine == pytest.approx(theirs, abs=1e-6)
    assert vectors[1] == vectors.tolist()[1] and list(vectors)[2] == vectors[-1]
    # The input models are accepted as bodies too.
    again = sdk.submit(EmbedInput(kind="embed", model="e", input="one", dimensions=4))
    assert sdk.wait(again.id).result["dimensions"] == 4  # type: ignore[index]


def test_jobs_pages_and_iter_jobs(sdk: Client) -> None:
    marker = uuid.uuid4().hex
    ids = {sdk.generate("m", "hi", max_tokens=2, metadata={"batch": marker}).id
           for _ in range(5)}  # fmt: skip
    page = sdk.jobs(limit=2)
    assert isinstance(page, JobPage) and len(page.data) == 2 and page.next_cursor
    second = sdk.jobs(limit=2, cursor=page.next_cursor)
    assert {j.id for j in page.data}.isdisjoint(j.id for j in second.data)
    seen = [j for j in sdk.iter_jobs(page_size=2) if j.metadata.get("batch") == marker]
    assert {j.id for j in seen} == ids
    assert all(j.kind == "generate" for j in sdk.iter_jobs(kind="generate", page_size=50))
    for job_id in ids:
        sdk.wait(job_id)
    assert ids <= {j.id for j in sdk.iter_jobs(status="succeeded")}


def test_cancel_and_token(sdk: Client, api_url: str) -> None:
    job = sdk.generate("m", "[[echo]] done soon")
    sdk.wait(job.id)
    answer = sdk.cancel(job.id)
    assert isinstance(answer, CancelAnswer)
    assert answer.detail.startswith("the job already finished")
    assert answer.job.status == "succeeded"
    token = sdk.token(job.id)
    assert isinstance(token, EventToken) and token.events_url.startswith(api_url)
    # The token alone opens the job's events: a client without a key reads them.
    with Client(api_url, api_key="") as anonymous:
        with pytest.raises(ApiError) as refused:
            anonymous.get(job.id)
        assert refused.value.status == 401 and refused.value.code == ErrorCode.UNAUTHORIZED


def test_errors_are_typed(sdk: Client) -> None:
    with pytest.raises(ApiError) as missing:
        sdk.get("0" * 32)
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    assert missing.value.detail == "job not found"
    with pytest.raises(ApiError) as bad:
        sdk.submit({"kind": "generate", "model": "m", "messages": []})
    assert bad.value.status == 422 and bad.value.code == ErrorCode.BAD_REQUEST
    assert bad.value.errors and bad.value.errors[0]["field"] == "messages"
    with pytest.raises(ApiError) as odd:
        sdk.get("../../healthz")  # an id is one path segment, never another route
    assert odd.value.status == 404
    with pytest.raises(ApiError):
        list(sdk.events("0" * 32))
    unfinished = sdk.generate("m", "hello", max_tokens=5)
    with pytest.raises(NoResult):
        sdk.embeddings(sdk.wait(unfinished.id).id)  # not an embedding job's result


def test_wait_times_out_clearly(sdk: Client, simulator) -> None:
    slow = {"tokens_per_second": 20}
    httpx.put(f"{simulator.base_url}/_sim/config", json=slow).raise_for_status()
    job = sdk.generate("m", "a long story", max_tokens=200)  # ~10 s of text
    with pytest.raises(WaitTimeout) as late:
        sdk.wait(job.id, timeout_s=0.5)
    assert late.value.job_id == job.id and late.value.timeout_s == 0.5
    assert "did not finish within 0.5s" in str(late.value)
    assert isinstance(late.value, TimeoutError)
    sdk.cancel(job.id)
    assert sdk.wait(job.id, timeout_s=30).status == "cancelled"


def test_idempotency_key_returns_the_same_job(sdk: Client) -> None:
    key = uuid.uuid4().hex
    first = sdk.generate("m", "hi", max_tokens=2, idempotency_key=key)
    second = sdk.generate("m", "hi", max_tokens=2, idempotency_key=key)
    assert first.id == second.id
    with pytest.raises(ApiError) as conflict:
        sdk.generate("m", "something else", idempotency_key=key)
    assert conflict.value.status == 409
    # Without a key, each call is its own job (a fresh key per call).
    assert sdk.generate("m", "hi", max_tokens=2).id != sdk.generate("m", "hi", max_tokens=2).id


def test_the_version_is_the_distribution_s() -> None:
    assert __version__ == importlib.metadata.version("aijobs")
