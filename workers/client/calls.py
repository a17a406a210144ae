"""Every API call as data: the request to send and how to read its answer.

Nothing here sends anything. ``Client`` and ``AsyncClient`` take a ``Call``, send its
``request`` (retrying as the policy says) and hand the answer to ``Call.result``, so
both clients build the same requests and read the same answers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from aijobs.client.errors import ApiError
from aijobs.client.retry import parse_retry_after
from aijobs.client.vectors import Embeddings
from aijobs.schemas import (
    JOB_ADAPTER,
    BatchAnswer,
    CancelAnswer,
    EmbedInput,
    EventToken,
    ExtractInput,
    GenerateInput,
    JobKind,
    JobPage,
    JobPublic,
    JobStatus,
    Message,
    UsageReport,
)

T = TypeVar("T")
#: A job body: a dict as the API takes it, or one of the input models.
JobBody = Mapping[str, Any] | GenerateInput | ExtractInput | EmbedInput
#: A prompt: one user message, or the whole conversation.
Prompt = str | Sequence[Message | Mapping[str, Any]]
VectorFormat = Literal["float", "base64"]
#: A timestamp: an aware ``datetime``, or RFC 3339 text (``2030-01-01T09:00:00Z``).
Timestamp = datetime | str
ListOrder = Literal["created", "run_at"]


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request, relative to the client's base URL."""

    method: str
    path: str
    params: Mapping[str, str | int] = field(default_factory=dict)
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """A request and the reader of its successful answer."""

    request: Request
    parse: Callable[[httpx.Response], T]

    def result(self, response: httpx.Response) -> T:
        """The answer as a model; ``ApiError`` for an error status."""
        if not 200 <= response.status_code < 300:
            raise api_error(response)
        try:
            return self.parse(response)
        except (ValidationError, ValueError) as exc:
            raise ApiError(
                response.status_code, f"the answer is not what the API sends: {exc}"
            ) from exc


def api_error(response: httpx.Response) -> ApiError:
    """The ``ApiError`` for an error answer (its body read): ``{"detail", "errors"?}``."""
    detail: str = response.reason_phrase or "error"
    code: str | None = None
    errors: list[dict[str, Any]] | None = None
    try:
        body = response.json()
    except ValueError:
        body = None
        if response.text.strip():
            detail = response.text.strip()[:500]
    if isinstance(body, dict):
        detail = str(body.get("detail", detail))
        code = body["code"] if isinstance(body.get("code"), str) else None
        errors = body["errors"] if isinstance(body.get("errors"), list) else None
    return ApiError(
        response.status_code,
        detail,
        code=code,
        errors=errors,
        retry_after_s=parse_retry_after(response.headers),
    )


def _model(model: type[BaseModel]) -> Callable[[httpx.Response], Any]:
    return lambda response: model.model_validate_json(response.content)


def _job(response: httpx.Response) -> JobPublic:
    """A job answer as its kind's model (``GenerateJob`` ...), as pages and cancels are."""
    return JOB_ADAPTER.validate_json(response.content)


def _job_path(job_id: str, tail: str = "") -> str:
    # Quoted whole: an id is a path segment, never a way to another route.
    return f"/v1/jobs/{quote(job_id, safe='')}{tail}"


def _drop_none(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _timestamp(value: Timestamp | None) -> str | None:
    # A naive datetime is sent as it is: the API refuses it, naming the field.
    return value.isoformat() if isinstance(value, datetime) else value


def schedule_fields(
    run_at: Timestamp | None, delay_s: float | None, priority: int | None
) -> dict[str, Any]:
    """The scheduling fields of a job body (only those given)."""
    return _drop_none({"run_at": _timestamp(run_at), "delay_s": delay_s, "priority": priority})


def body_json(body: JobBody) -> dict[str, Any]:
    """A job body as the JSON the API takes."""
    if isinstance(body, BaseModel):
        return body.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dict(body)


def messages_json(prompt: Prompt, system: str | None) -> list[dict[str, Any]]:
    """A prompt (and an optional system message) as the ``messages`` list."""
    if isinstance(prompt, str):
        messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    else:
        messages = [
            m.model_dump(exclude_none=True) if isinstance(m, Message) else {**m} for m in prompt
        ]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    return messages


def generate_body(
    model: str,
    prompt: Prompt,
    *,
    system: str | None,
    max_tokens: int | None,
    temperature: float | None,
    metadata: Mapping[str, Any] | None,
    schedule: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The body of a ``generate`` job (``schedule``: see ``schedule_fields``; ``options``:
    the other generation fields, those given)."""
    return _drop_none({
        "kind": "generate", "model": model, "messages": messages_json(prompt, system),
        "max_tokens": max_tokens, "temperature": temperature,
        "metadata": dict(metadata) if metadata is not None else None,
        **(options or {}),
    }) | dict(schedule or {})  # fmt: skip


def generation_options(
    *,
    max_completion_tokens: int | None = None,
    stop: str | Sequence[str] | None = None,
    seed: int | None = None,
    top_p: float | None = None,
    json_object: bool = False,
    reasoning_effort: str | None = None,
    provider_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The optional generation fields of a body, by the API's names (those given)."""
    return _drop_none({
        "max_completion_tokens": max_completion_tokens,
        "stop": stop if stop is None or isinstance(stop, str) else list(stop),
        "seed": seed, "top_p": top_p,
        "response_format": {"type": "json_object"} if json_object else None,
        "reasoning_effort": reasoning_effort,
        "provider_options": dict(provider_options) if provider_options is not None else None,
    })  # fmt: skip


def extract_body(
    model: str,
    text: str,
    schema: Mapping[str, Any],
    *,
    instructions: str | None,
    metadata: Mapping[str, Any] | None,
    schedule: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The body of an ``extract`` job (``schedule``: see ``schedule_fields``)."""
    return _drop_none({
        "kind": "extract", "model": model, "text": text, "schema": dict(schema),
        "instructions": instructions,
        "metadata": dict(metadata) if metadata is not None else None,
    }) | dict(schedule or {})  # fmt: skip


def embed_body(
    model: str,
    texts: str | Sequence[str],
    *,
    dimensions: int | None,
    metadata: Mapping[str, Any] | None,
    schedule: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The body of an ``embed`` job (``schedule``: see ``schedule_fields``)."""
    return _drop_none({
        "kind": "embed", "model": model,
        "input": texts if isinstance(texts, str) else list(texts),
        "dimensions": dimensions,
        "metadata": dict(metadata) if metadata is not None else None,
    }) | dict(schedule or {})  # fmt: skip


def submit(body: JobBody, idempotency_key: str | None) -> Call[JobPublic]:
    """``POST /v1/jobs``. The key is made here, once per call, so every retry of the
    request carries the same one and the API creates one job however many arrive."""
    key = idempotency_key or uuid.uuid4().hex
    request = Request("POST", "/v1/jobs", json=body_json(body), headers={"Idempotency-Key": key})
    return Call(request, _job)


def submit_batch(bodies: Sequence[JobBody]) -> Call[BatchAnswer]:
    """``POST /v1/jobs/batch``. Each item without an ``idempotency_key`` gets one, made
    here once per call, so a retried batch makes no job twice."""
    items = []
    for body in bodies:
        item = body_json(body)
        item.setdefault("idempotency_key", uuid.uuid4().hex)
        items.append(item)
    request = Request("POST", "/v1/jobs/batch", json={"jobs": items})
    return Call(request, _model(BatchAnswer))


def retry(job_id: str, idempotency_key: str | None) -> Call[JobPublic]:
    """``POST /v1/jobs/{id}/retry``, with a key made once per call (one new job however
    many times the request is sent)."""
    key = idempotency_key or uuid.uuid4().hex
    request = Request("POST", _job_path(job_id, "/retry"), headers={"Idempotency-Key": key})
    return Call(request, _job)


def delete(job_id: str) -> Call[None]:
    """``DELETE /v1/jobs/{id}`` (a deleted job answers 204 again: a retry is harmless)."""
    return Call(Request("DELETE", _job_path(job_id)), lambda _response: None)


def get(job_id: str, *, vectors: bool, vector_format: VectorFormat) -> Call[JobPublic]:
    """``GET /v1/jobs/{id}``; ``vectors=False`` leaves an embedding job's vectors out."""
    params: dict[str, str | int] = {}
    if not vectors:
        params["vectors"] = "false"
    elif vector_format != "float":
        params["format"] = vector_format
    return Call(Request("GET", _job_path(job_id), params=params), _job)


def embeddings(job_id: str) -> Call[Embeddings]:
    """An embedding job's vectors, fetched as base64 float32 (the compact form)."""

    def parse(response: httpx.Response) -> Embeddings:
        job = _job(response)
        return Embeddings.from_result(job.id, job.status, job.result)

    return Call(Request("GET", _job_path(job_id), params={"format": "base64"}), parse)


@dataclass(frozen=True, slots=True)
class JobFilters:
    """What ``GET /v1/jobs`` narrows by besides status and kind."""

    #: ``{"customer": "acme"}``: jobs whose metadata has each key with that value.
    metadata: Mapping[str, str | int] | None = None
    created_after: Timestamp | None = None
    created_before: Timestamp | None = None
    order: ListOrder | None = None

    def params(self) -> dict[str, str]:
        """As query parameters."""
        out = {f"metadata.{k}": str(v) for k, v in (self.metadata or {}).items()}
        fields = {
            "created_after": _timestamp(self.created_after),
            "created_before": _timestamp(self.created_before),
            "order": self.order,
        }
        return out | {k: str(v) for k, v in fields.items() if v is not None}  # fmt: skip


def list_jobs(
    *,
    status: JobStatus | str | None,
    kind: JobKind | str | None,
    limit: int | None,
    cursor: str | None,
    filters: JobFilters | None = None,
) -> Call[JobPage]:
    """``GET /v1/jobs``: one page, newest first (or by ``run_at``)."""
    params = _drop_none({"status": status, "kind": kind, "limit": limit, "cursor": cursor})
    query = {k: str(v) for k, v in params.items()} | (filters.params() if filters else {})
    return Call(Request("GET", "/v1/jobs", params=query), _model(JobPage))


UsageGroup = Literal["model", "day"]


def usage(
    start: Timestamp | None, end: Timestamp | None, group_by: UsageGroup | None
) -> Call[UsageReport]:
    """``GET /v1/usage``: tokens, jobs and cost in ``[start, end)``, and the budgets."""
    params = _drop_none({"from": _timestamp(start), "to": _timestamp(end), "group_by": group_by})
    return Call(Request("GET", "/v1/usage", params=params), _model(UsageReport))


def cancel(job_id: str) -> Call[CancelAnswer]:
    """``POST /v1/jobs/{id}/cancel``."""
    return Call(Request("POST", _job_path(job_id, "/cancel")), _model(CancelAnswer))


def token(job_id: str) -> Call[EventToken]:
    """``POST /v1/jobs/{id}/token``: a token that opens only this job's events."""
    return Call(Request("POST", _job_path(job_id, "/token")), _model(EventToken))


def absolute_urls(token: EventToken, base_url: str) -> EventToken:
    """The token with its URLs made absolute against the client's base URL (an API
    without ``AIJOBS_PUBLIC_URL`` answers with paths)."""
    base = base_url.rstrip("/")
    socket_base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    events = token.events_url
    socket = token.websocket_url
    return token.model_copy(
        update={
            "events_url": base + events if events.startswith("/") else events,
            "websocket_url": socket_base + socket if socket.startswith("/") else socket,
        }
    )


class JobsPager:
    """Walks every page of ``GET /v1/jobs``: ``next_call()`` until it returns ``None``."""

    __slots__ = ("_cursor", "_done", "_filters", "_kind", "_page_size", "_status")

    def __init__(
        self,
        *,
        status: JobStatus | str | None,
        kind: JobKind | str | None,
        page_size: int,
        filters: JobFilters | None = None,
    ) -> None:
        self._status, self._kind, self._page_size = status, kind, page_size
        self._filters = filters
        self._cursor: str | None = None
        self._done = False

    def next_call(self) -> Call[JobPage] | None:
        """The request for the next page, or ``None`` after the last."""
        if self._done:
            return None
        return list_jobs(
            status=self._status, kind=self._kind, limit=self._page_size, cursor=self._cursor,
            filters=self._filters,
        )  # fmt: skip

    def take(self, page: JobPage) -> Sequence[JobPublic]:
        """The jobs of a page just read; moves to the next."""
        self._cursor = page.next_cursor
        self._done = page.next_cursor is None or not page.data
        return page.data
