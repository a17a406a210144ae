"""The ``generate`` kind: a streamed chat completion."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aijobs.errors import ErrorCode, ProviderError
from aijobs.kinds.base import Kind, KindContext
from aijobs.providers.base import CallGuard, ChatRequest, Provider
from aijobs.schemas import GenerateInput, JobKind
from aijobs.settings import Settings


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
    guard: CallGuard | None = None,
) -> GenerateOutput:
    """Stream the completion, handing each piece of text to ``on_text``."""
    parts: list[str] = []
    append = parts.append

    def take(text: str) -> None:
        append(text)
        on_text(text)

    request = ChatRequest(
        model=job.model,
        messages=[m.model_dump(exclude_none=True) for m in job.messages],
        max_tokens=job.max_tokens,
        temperature=job.temperature,
        response_format=job.response_format.model_dump() if job.response_format else None,
        max_completion_tokens=job.max_completion_tokens,
        top_p=job.top_p,
        stop=job.stop,
        seed=job.seed,
        reasoning_effort=job.reasoning_effort,
        extra_body=job.provider_options,
    )
    outcome = provider.stream_chat(request, take, should_stop, guard)
    if outcome.refusal and not parts:
        raise ProviderError(ErrorCode.REFUSAL, "the model refused to answer", retryable=False)
    if outcome.finish_reason == "content_filter":
        raise ProviderError(
            ErrorCode.CONTENT_FILTER,
            "the provider's content filter stopped the answer",
            retryable=False,
        )
    finish_reason = "cancelled" if outcome.stopped else outcome.finish_reason
    return GenerateOutput("".join(parts), finish_reason, outcome.usage, outcome.stopped)


def estimate_tokens(job: GenerateInput, settings: Settings) -> int:
    """What the budget is charged before the call: the prompt (~4 characters a token) and
    the answer's most likely size, capped — a huge ``max_tokens`` must not drain the
    bucket for everyone; the real usage settles it afterwards."""
    prompt = sum(m.text_chars() for m in job.messages) // 4
    cap = job.max_completion_tokens or job.max_tokens or settings.estimate_answer_tokens
    answer = min(cap, settings.estimate_answer_tokens)
    return prompt + answer


def _run(job: GenerateInput, ctx: KindContext) -> GenerateOutput:
    return run_generate(job, ctx.provider, ctx.text, ctx.should_stop, ctx.guard)


KIND = Kind(JobKind.GENERATE, estimate_tokens, _run)
