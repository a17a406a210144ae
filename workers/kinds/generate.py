"""The ``generate`` kind: a streamed chat completion."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aijobs.providers.base import ChatRequest, Provider, ProviderError
from aijobs.schemas import GenerateInput


@dataclass(frozen=True, slots=True)
class GenerateOutput:
    """What a generation produced; ``stopped`` when it was asked to stop early."""

    text: str
    finish_reason: str | None
    usage: dict[str, int] | None
    stopped: bool

    def result(self) -> dict[str, Any]:
        """The job's ``result`` object."""
        return {"text": self.text, "finish_reason": self.finish_reason}


def run_generate(
    job: GenerateInput,
    provider: Provider,
    on_text: Callable[[str], None],
    should_stop: Callable[[], bool],
) -> GenerateOutput:
    """Stream the completion, handing each piece of text to ``on_text``."""
    parts: list[str] = []
    append = parts.append

    def take(text: str) -> None:
        append(text)
        on_text(text)

    request = ChatRequest(
        model=job.model,
        messages=[m.model_dump() for m in job.messages],
        max_tokens=job.max_tokens,
        temperature=job.temperature,
    )
    outcome = provider.stream_chat(request, take, should_stop)
    if outcome.refusal and not parts:
        raise ProviderError("refusal", "the model refused to answer", retryable=False)
    if outcome.finish_reason == "content_filter":
        raise ProviderError(
            "content_filter", "the provider's content filter stopped the answer", retryable=False
        )
    finish_reason = "cancelled" if outcome.stopped else outcome.finish_reason
    return GenerateOutput("".join(parts), finish_reason, outcome.usage, outcome.stopped)
