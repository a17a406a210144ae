"""The generate kind against the fake provider: text as it comes, refusals, filters, stops."""

from __future__ import annotations

import pytest

from aijobs.errors import ProviderError
from aijobs.kinds.generate import estimate_tokens, run_generate
from aijobs.providers.fake import FakeAnswer, FakeProvider
from aijobs.schemas import GenerateInput
from aijobs.settings import Settings

JOB = GenerateInput(kind="generate", model="m", messages=[{"role": "user", "content": "hi"}])


def test_the_text_arrives_piece_by_piece_and_makes_the_result() -> None:
    provider = FakeProvider([FakeAnswer(("Once", " upon", " a time"))])
    seen: list[str] = []
    out = run_generate(JOB, provider, seen.append, lambda: False)
    assert seen == ["Once", " upon", " a time"]
    assert out.result() == {"text": "Once upon a time", "finish_reason": "stop"}
    assert out.usage and out.usage["completion_tokens"] == 4 and not out.stopped


def test_a_refusal_without_text_and_a_content_filter_are_terminal() -> None:
    with pytest.raises(ProviderError) as refused:
        run_generate(JOB, FakeProvider([FakeAnswer((), refusal="no")]), print, lambda: False)
    assert refused.value.code == "refusal" and not refused.value.retryable
    filtered = FakeProvider([FakeAnswer(("a",), finish_reason="content_filter")])
    with pytest.raises(ProviderError, match="content filter"):
        run_generate(JOB, filtered, lambda _: None, lambda: False)


def test_asked_to_stop_it_stops_between_pieces_keeping_its_text() -> None:
    pieces: list[str] = []
    out = run_generate(JOB, FakeProvider([FakeAnswer(("a", "b", "c"))]), pieces.append,
                       lambda: len(pieces) >= 2)  # fmt: skip
    assert out.stopped and out.result() == {"text": "ab", "finish_reason": "cancelled"}


def test_the_budget_is_charged_a_capped_estimate() -> None:
    settings = Settings(estimate_answer_tokens=100)
    huge = JOB.model_copy(update={"max_tokens": 1_000_000})
    assert estimate_tokens(huge, settings) == 100  # the prompt is 2 chars: 0 tokens
    small = JOB.model_copy(update={"max_tokens": 7})
    assert estimate_tokens(small, settings) == 7
