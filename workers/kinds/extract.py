"""The ``extract`` kind: JSON that matches a JSON Schema, repaired when it does not."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aijobs.errors import ErrorCode, ProviderError
from aijobs.jsonsize import deeper_than
from aijobs.kinds.base import Kind, KindContext
from aijobs.kinds.schema import prepare_schema, strip_optional_nulls
from aijobs.kinds.validation import check_answer
from aijobs.providers.base import CallGuard, ChatRequest, Provider
from aijobs.schemas import ExtractInput, JobKind
from aijobs.settings import Settings

DEFAULT_INSTRUCTIONS = (
    "Extract the requested information from the user's text. Answer with JSON that "
    "matches the schema; use null for what the text does not say."
)


@dataclass(frozen=True, slots=True)
class ExtractOutput:
    """The extracted data (or, when stopped early, the partial text)."""

    data: Any
    text: str
    usage: dict[str, int] | None
    stopped: bool
    rounds: int

    def result(self) -> dict[str, Any]:
        """The job's ``result`` object."""
        if self.stopped:
            return {"data": None, "partial": self.text}
        return {"data": self.data}


def _add_usage(total: dict[str, int] | None, more: dict[str, int] | None) -> dict[str, int] | None:
    if more is None:
        return total
    if total is None:
        return dict(more)
    return {k: total.get(k, 0) + more.get(k, 0) for k in set(total) | set(more)}


def run_extract(
    job: ExtractInput,
    provider: Provider,
    on_text: Callable[[str], None],
    on_round: Callable[[int], None],
    should_stop: Callable[[], bool],
    *,
    repair_rounds: int,
    guard: CallGuard | None = None,
    validation_timeout_s: float = 10.0,
) -> ExtractOutput:
    """Ask for JSON in strict mode; on invalid JSON or a schema violation, feed the error
    back and ask again, at most ``repair_rounds`` times."""
    prepared = prepare_schema(job.json_schema)
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "extraction", "schema": prepared.strict, "strict": True},
    }
    messages = [
        {"role": "system", "content": job.instructions or DEFAULT_INSTRUCTIONS},
        {"role": "user", "content": job.text},
    ]
    usage: dict[str, int] | None = None
    error = ""
    for round_ in range(repair_rounds + 1):
        if round_:
            on_round(round_)
        parts: list[str] = []

        def take(text: str, parts: list[str] = parts) -> None:
            parts.append(text)
            on_text(text)

        request = ChatRequest(model=job.model, messages=messages, response_format=response_format)
        outcome = provider.stream_chat(request, take, should_stop, guard)
        usage = _add_usage(usage, outcome.usage)
        text = "".join(parts)
        if outcome.stopped:
            return ExtractOutput(None, text, usage, True, round_ + 1)
        if outcome.refusal:
            raise ProviderError(
                ErrorCode.REFUSAL, f"the model refused: {outcome.refusal}", retryable=False
            )
        if outcome.finish_reason == "length":
            raise ProviderError(
                ErrorCode.LENGTH,
                "the answer reached the token limit before the JSON was complete",
                retryable=False,
            )
        if outcome.finish_reason == "content_filter":
            raise ProviderError(
                ErrorCode.CONTENT_FILTER,
                "the provider's content filter stopped the answer",
                retryable=False,
            )
        try:
            value = _parse(text)
        except json.JSONDecodeError as exc:
            error = f"the answer is not valid JSON ({exc.msg} at character {exc.pos})"
        except _TooDeep:
            error = f"the answer nests deeper than {MAX_ANSWER_DEPTH} levels"
        else:
            value = strip_optional_nulls(value, prepared.original)
            found = check_answer(value, prepared.original, timeout_s=validation_timeout_s)
            if found is None:
                return ExtractOutput(value, text, usage, False, round_ + 1)
            error = f"the answer does not match the schema: {found}"
        messages = [
            *messages,
            {"role": "assistant", "content": text},
            {"role": "user", "content": f"{error}. Answer again with only JSON that matches "
                                        "the schema."},
        ]  # fmt: skip
    raise ProviderError(
        ErrorCode.INVALID_OUTPUT,
        f"no valid answer after {repair_rounds + 1} tries; last: {error}",
        retryable=False,
    )


#: An answer nested deeper than this is refused before anything walks it.
MAX_ANSWER_DEPTH = 64


class _TooDeep(ValueError):
    pass


def _parse(text: str) -> Any:
    try:
        value = json.loads(text)
    except RecursionError:
        raise _TooDeep from None
    if deeper_than(value, MAX_ANSWER_DEPTH):
        raise _TooDeep
    return value


def estimate_tokens(job: ExtractInput, settings: Settings) -> int:
    """What the budget is charged before the call: the text, and an answer of typical size."""
    return (len(job.text) + len(job.instructions or "")) // 4 + settings.estimate_answer_tokens


def _run(job: ExtractInput, ctx: KindContext) -> ExtractOutput:
    return run_extract(
        job,
        ctx.provider,
        ctx.text,
        ctx.new_round,
        ctx.should_stop,
        repair_rounds=ctx.settings.extract_repair_rounds,
        guard=ctx.guard,
        validation_timeout_s=ctx.settings.extract_validation_timeout_s,
    )


KIND = Kind(JobKind.EXTRACT, estimate_tokens, _run)
