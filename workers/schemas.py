"""The job contract shared by the API and the workers: inputs, outputs, statuses."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, NotRequired

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter
from pydantic_core import PydanticCustomError

# pydantic reads a TypedDict only from typing_extensions before Python 3.12.
from typing_extensions import TypedDict


class JobKind(StrEnum):
    """The kinds of job, one Celery queue each."""

    GENERATE = "generate"
    EXTRACT = "extract"
    EMBED = "embed"


class JobStatus(StrEnum):
    """queued -> running -> (retrying -> running)* -> succeeded | failed | cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """True once the job can change no more."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class _Strict(BaseModel):
    """Input models reject unknown fields, so a typo is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


Metadata = Annotated[dict[str, Any], Field(default_factory=dict, max_length=64)]
Model = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(min_length=1, max_length=1_000_000)]
#: Where the job's terminal state is POSTed (aijobs.webhooks); checked at submit.
WebhookUrl = Annotated[
    str | None,
    Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="https URL the finished job is POSTed to, signed per Standard Webhooks",
    ),
]

#: Priorities run 0-9, 9 first (within the tenant's fair share); a job without one is 5.
DEFAULT_PRIORITY = 5


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


def _rfc3339(value: Any) -> Any:
    # pydantic would also take a number (or a string of digits) as seconds since the
    # epoch, and a date alone; the contract says an RFC 3339 timestamp, and a bare number
    # is more often a unit mistake than a time.
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise PydanticCustomError(
            "rfc3339", "must be an RFC 3339 timestamp with a zone, e.g. 2030-01-01T09:00:00Z"
        )
    return value


#: An RFC 3339 timestamp with a zone (``Z`` or ``+02:00``); naive ones are refused.
Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
#: The job does not start before this (bounds: see ``aijobs.api.admission``).
RunAt = Annotated[
    Rfc3339 | None,
    Field(default=None, description="RFC 3339 timestamp with a zone: the job starts no earlier"),
]
#: The same as a delay from now, in seconds (one of run_at and delay_s, not both).
DelaySeconds = Annotated[
    float | None,
    Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="start no earlier than this many seconds from now (instead of run_at)",
    ),
]
Priority = Annotated[
    int | None,
    Field(
        default=None,
        ge=0,
        le=9,
        description="0-9, 9 first, within the tenant's fair share (default 5)",
    ),
]
#: The scheduling fields every kind's body has; they live in the row, not the input.
SCHEDULING_FIELDS = frozenset({"run_at", "delay_s", "priority"})


class TextPart(_Strict):
    """A content part of text."""

    type: Literal["text"]
    text: str = Field(max_length=1_000_000)


class ImageUrl(_Strict):
    """Where an image is: an https URL or a ``data:`` URL, passed to the provider as is."""

    url: str = Field(min_length=1, max_length=20_000_000)
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Strict):
    """A content part with an image (for vision models), passed through."""

    type: Literal["image_url"]
    image_url: ImageUrl


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class Message(_Strict):
    """One chat message: its text, or content parts as OpenAI's chat format has them."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] = Field(max_length=1_000_000)

    def text_chars(self) -> int:
        """Characters of text (an image part counts its URL: a data URL is big)."""
        if isinstance(self.content, str):
            return len(self.content)
        return sum(len(p.text) if isinstance(p, TextPart) else len(p.image_url.url)
                   for p in self.content)  # fmt: skip


StopSequence = Annotated[str, Field(min_length=1, max_length=1000)]


class JsonObjectFormat(_Strict):
    """``response_format``: ``{"type": "json_object"}`` (any JSON object) or ``text``."""

    type: Literal["json_object", "text"]


#: What a generation may pass to the provider as it is, under ``provider_options``: not
#: these, which aijobs sets itself (or takes as its own fields).
RESERVED_PROVIDER_OPTIONS = frozenset({
    "model", "messages", "stream", "stream_options", "n", "max_tokens",
    "max_completion_tokens", "temperature", "top_p", "stop", "seed", "response_format",
    "reasoning_effort", "tools", "tool_choice", "functions", "function_call",
})  # fmt: skip


class GenerateInput(_Strict):
    """A chat completion, streamed token by token."""

    kind: Literal["generate"]
    model: Model
    messages: list[Message] = Field(min_length=1, max_length=1_000)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    max_completion_tokens: int | None = Field(
        default=None, ge=1, le=1_000_000,
        description="the answer's cap, reasoning included (reasoning models refuse max_tokens)",
    )  # fmt: skip
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    stop: StopSequence | Annotated[list[StopSequence], Field(min_length=1, max_length=4)] | None = (
        Field(default=None, description="up to 4 sequences where the answer stops")
    )
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    response_format: JsonObjectFormat | None = Field(
        default=None, description='`{"type": "json_object"}`: the answer is a JSON object'
    )
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    provider_options: dict[str, Any] | None = Field(
        default=None, max_length=32,
        description="provider-specific fields, sent as they are in the request's body (the "
        "SDK's extra_body): e.g. vLLM's `top_k`; not a field aijobs sets itself",
    )  # fmt: skip
    metadata: Metadata
    webhook_url: WebhookUrl
    run_at: RunAt
    delay_s: DelaySeconds
    priority: Priority


class ExtractInput(_Strict):
    """Structured JSON matching a JSON Schema (validated at submit in a later stage)."""

    kind: Literal["extract"]
    model: Model
    text: str = Field(min_length=1, max_length=1_000_000)
    json_schema: dict[str, Any] = Field(alias="schema")
    instructions: str | None = Field(default=None, max_length=100_000)
    metadata: Metadata
    webhook_url: WebhookUrl
    run_at: RunAt
    delay_s: DelaySeconds
    priority: Priority

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class EmbedInput(_Strict):
    """Vectors for one text or a list of texts."""

    kind: Literal["embed"]
    model: Model
    input: Text | list[Text] = Field(
        description="one text, or a list (see AIJOBS_EMBED_MAX_INPUTS)"
    )
    dimensions: int | None = Field(default=None, ge=1, le=65_536)
    metadata: Metadata
    webhook_url: WebhookUrl
    run_at: RunAt
    delay_s: DelaySeconds
    priority: Priority


JobInput = Annotated[GenerateInput | ExtractInput | EmbedInput, Field(discriminator="kind")]
JOB_INPUT_ADAPTER: TypeAdapter[GenerateInput | ExtractInput | EmbedInput] = TypeAdapter(JobInput)


class FieldError(TypedDict):
    """One thing a request got wrong."""

    field: Annotated[
        str, Field(description="where: `messages[0].role`, `kind`, `body`, `after` ...")
    ]
    message: str


class ErrorBody(TypedDict):
    """Every error answer of the API (its readiness report aside): a one-line ``detail``
    that says what is wrong, naming the field where there is one; a request that failed
    validation also gets its complaints field by field."""

    detail: str
    errors: NotRequired[list[FieldError]]


def _every_field_required(schema: dict[str, Any]) -> None:
    # Not pydantic's json_schema_serialization_defaults_required: that one reaches into
    # nested TypedDicts too and would call a result's NotRequired keys required.
    schema["required"] = list(schema.get("properties", {}))


class _Answer(BaseModel):
    """Answer models: the API sends every field, defaults included, so its document says
    each one is always there."""

    model_config = ConfigDict(json_schema_extra=_every_field_required)


class JobError(_Answer):
    """Why a job failed."""

    code: str
    message: str
    retryable: bool = False


class AttemptUsage(_Answer):
    """What one attempt was billed."""

    attempt: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float | None = Field(default=None, description="null: the model has no price")
    estimated: bool = Field(
        default=False,
        description="the provider did not say (a stream cut short): completion tokens are "
        "the chunks received, prompt tokens an estimate",
    )


class Usage(_Answer):
    """Tokens the provider billed, over every attempt of the job (retries included), and
    what they cost under ``AIJOBS_PRICES``."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = Field(default=0, description="prompt tokens served from cache")
    cost_usd: float | None = Field(default=None, description="USD; null without a price")
    estimated: bool = Field(default=False, description="some attempt's usage is estimated")
    attempts: list[AttemptUsage] = Field(default_factory=list)


class UsageRow(_Answer):
    """A tenant's usage over a window (or one model's, or one UTC day's, of it)."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = Field(description="prompt tokens served from the provider's cache")
    total_tokens: int
    jobs: int = Field(description="jobs with an attempt in the window")
    attempts: int = Field(description="attempts in the window (retries included)")
    cost_usd: float | None = Field(description="USD under AIJOBS_PRICES; null: no price")
    model: str | None = Field(default=None, description="with group_by=model")
    day: str | None = Field(default=None, description="with group_by=day: YYYY-MM-DD, UTC")


class BudgetView(_Answer):
    """One of the tenant's budgets and what it spent in the current period."""

    period: Literal["day", "month"]
    unit: Literal["tokens", "usd"]
    limit: float
    spent: float = Field(description="in the budget's unit, since the period began (UTC)")
    resets_at: datetime


class UsageReport(_Answer):
    """``GET /v1/usage``: the tenant's tokens, jobs and cost in ``[from, to)``."""

    from_: datetime = Field(alias="from", serialization_alias="from")
    to: datetime
    group_by: Literal["model", "day"] | None
    totals: UsageRow
    data: list[UsageRow] = Field(description="one row per model or day (group_by), else []")
    budgets: list[BudgetView] = Field(description="the tenant's budgets in force, if any")

    model_config = ConfigDict(json_schema_extra=_every_field_required, populate_by_name=True)


class WebhookAttempt(_Answer):
    """One attempt to deliver a job's webhook."""

    at: datetime
    #: The receiver's HTTP status; None when there was no answer (see ``error``).
    status: int | None
    error: str | None = None


class WebhookView(_Answer):
    """A job's webhook: where it goes and how its delivery went."""

    url: str
    #: ``waiting`` (the job has not ended), ``pending`` (due, or retrying after a failed
    #: attempt), ``delivered`` (a 2xx), ``failed`` (given up after the last attempt).
    state: Literal["waiting", "pending", "delivered", "failed"]
    deliveries: list[WebhookAttempt] = Field(default_factory=list)
    delivered_at: datetime | None = None


class GenerateResult(TypedDict):
    """A generation's text (the whole of it, or what was written before a cancel)."""

    text: str
    finish_reason: Annotated[
        str | None, Field(description="the provider's, or `cancelled` when stopped early")
    ]


class ExtractResult(TypedDict):
    """An extraction's data, valid against the submitted schema."""

    data: Annotated[Any, Field(description="null when the job was cancelled before it ended")]
    partial: NotRequired[Annotated[str, Field(description="the text so far, when cancelled")]]


class EmbedResult(TypedDict):
    """An embedding job's vectors, one per input, in input order."""

    count: int
    dimensions: int
    embeddings: NotRequired[
        Annotated[
            list[list[float]] | list[str],
            Field(
                description="lists of floats, or base64 of little-endian float32 with "
                "`format=base64`; left out with `vectors=false` and until the job succeeded"
            ),
        ]
    ]
    embedded: NotRequired[Annotated[int, Field(description="inputs done, when cancelled")]]


#: A job's ``result``, by kind (a dict at run time, so ``result["text"]`` reads it).
JobResult = GenerateResult | ExtractResult | EmbedResult


class JobPublic(_Answer):
    """A job as the API shows it: the fields of every kind. The API answers with the
    kind's own model (``GenerateJob``, ``ExtractJob``, ``EmbedJob``), whose ``result`` is
    that kind's; ``Job`` is their union, told apart by ``kind``."""

    id: str
    kind: JobKind
    status: JobStatus
    model: str
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: JobResult | None
    error: JobError | None
    usage: Usage | None
    metadata: dict[str, Any]
    purged: bool = Field(default=False, description="retention deleted its input and output")
    webhook: WebhookView | None = Field(
        default=None, description="the job's webhook and its delivery attempts, if it has one"
    )
    priority: int = Field(default=DEFAULT_PRIORITY, description="0-9, 9 first")
    run_at: datetime | None = Field(
        default=None,
        description="not before this: the submitted run_at, moved on by a retry's backoff "
        "or a wait for budget; null when it could start at once",
    )


class GenerateJob(JobPublic):
    """A generate job."""

    kind: Literal[JobKind.GENERATE]
    result: GenerateResult | None


class ExtractJob(JobPublic):
    """An extract job."""

    kind: Literal[JobKind.EXTRACT]
    result: ExtractResult | None


class EmbedJob(JobPublic):
    """An embed job (``GET /v1/jobs/{id}`` adds the vectors to a succeeded one's result)."""

    kind: Literal[JobKind.EMBED]
    result: EmbedResult | None


Job = Annotated[GenerateJob | ExtractJob | EmbedJob, Field(discriminator="kind")]
JOB_ADAPTER: TypeAdapter[GenerateJob | ExtractJob | EmbedJob] = TypeAdapter(Job)
#: The model of each kind's job.
JOB_MODELS: dict[JobKind, type[JobPublic]] = {
    JobKind.GENERATE: GenerateJob,
    JobKind.EXTRACT: ExtractJob,
    JobKind.EMBED: EmbedJob,
}


class JobPage(_Answer):
    """One page of a tenant's jobs, newest first."""

    data: list[Job]
    next_cursor: str | None


class BatchInput(_Strict):
    """``POST /v1/jobs/batch``: job bodies, each as ``POST /v1/jobs`` takes it, plus an
    optional ``idempotency_key``. Items are validated one by one (a bad one fails
    alone), so they are plain JSON objects here."""

    jobs: list[Any] = Field(min_length=1, description="job bodies (see AIJOBS_BATCH_MAX_JOBS)")


class BatchItemResult(_Answer):
    """What became of one item of a batch: 202 and its job, or a 4xx and why."""

    status: int
    job: Job | None = None
    detail: str | None = None
    #: A 422's errors field by field, as ``POST /v1/jobs`` gives them.
    errors: list[FieldError] | None = None
    #: The item's Idempotency-Key named a job made before: that job, nothing new.
    replayed: bool = False


class BatchAnswer(_Answer):
    """One result per item, in input order."""

    results: list[BatchItemResult]


class CancelAnswer(_Answer):
    """What a cancel request did, and the job after it."""

    detail: str
    job: Job


class EventToken(_Answer):
    """A short-lived token that lets a browser read one job's events without an API key."""

    token: str
    expires_at: datetime
    events_url: str
    websocket_url: str
