"""The extract kind against the fake provider: valid answers, repair rounds, giving up."""

from __future__ import annotations

import json

import pytest

from aijobs.errors import ProviderError
from aijobs.kinds.extract import run_extract
from aijobs.providers.fake import FakeAnswer, FakeProvider
from aijobs.schemas import ExtractInput

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
JOB = ExtractInput(kind="extract", model="m", text="the number is 4", schema=SCHEMA)


def run(provider: FakeProvider, rounds: list[int] | None = None) -> object:
    rounds = rounds if rounds is not None else []
    return run_extract(JOB, provider, lambda _: None, rounds.append, lambda: False,
                       repair_rounds=2, validation_timeout_s=10)  # fmt: skip


def test_a_valid_answer_is_the_result() -> None:
    out = run(FakeProvider([FakeAnswer(('{"n":', " 4}"))]))
    assert out.result() == {"data": {"n": 4}}  # type: ignore[attr-defined]


def test_broken_json_and_a_violation_are_fed_back_for_repair() -> None:
    provider = FakeProvider([FakeAnswer(('{"n": ',)), FakeAnswer(('{"n": "four"}',)),
                             FakeAnswer(('{"n": 4}',))])  # fmt: skip
    rounds: list[int] = []
    out = run(provider, rounds)
    assert out.result() == {"data": {"n": 4}}  # type: ignore[attr-defined]
    assert rounds == [1, 2]
    feedback = [m["content"] for m in provider.requests[2].messages if m["role"] == "user"]
    assert "does not match the schema" in feedback[-1] and "$.n" in feedback[-1]


def test_answers_that_stay_broken_give_up_with_the_last_error() -> None:
    with pytest.raises(ProviderError) as failed:
        run(FakeProvider([FakeAnswer(("[1,",))]))
    assert failed.value.code == "invalid_output" and "not valid JSON" in failed.value.message


def test_an_answer_nested_too_deep_is_refused_before_anything_walks_it() -> None:
    deep = json.dumps({"n": 1, "x": json.loads("[" * 80 + "]" * 80)})
    with pytest.raises(ProviderError) as failed:
        run(FakeProvider([FakeAnswer((deep,))]))
    assert "nests deeper" in failed.value.message
