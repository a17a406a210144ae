"""Every API call as data: the request to send and how to read its answer.

Nothing here sends anything. ``Client`` and ``AsyncClient`` take a ``Call``, send its
``request`` (retrying as the policy says) and hand the answer to ``Call.result``, so
both clients build the same requests and read the same answers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from aijobs.client.errors import ApiError
from aijobs.client.retry import parse_retry_after
from aijobs.client.vectors import Embeddings
from aijobs.schemas import (
    JOB_ADAPTER,
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
)

T = TypeVar("T")
#: A job body: a dict as the API takes it, or one of the input models.
JobBody = Mapping[str, Any] | GenerateInput | ExtractInput | EmbedInput
#: A prompt: one user message, or the whole conversation.
Prompt = str | Sequence[Message | Mapping[str, str]]
VectorFormat = Literal["float", "base64"]


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


def body_json(body: JobBody) -> dict[str, Any]:
    """A job body as the JSON the API takes."""
    if isinstance(body, BaseModel):
        return body.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dict(body)


def messages_json(prompt: Prompt, system: str | None) -> list[dict[str, str]]:
    """A prompt (and an optional system message) as the ``messages`` list."""
    if isinstance(prompt, str):
        messages: list[dict[str, str]] = [{"role": "user", "content": prompt}]
    else:
        messages = [
            m.model_dump() if isinstance(m, Message) else {**m} for m in prompt
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
) -> dict[str, Any]:
    """The body of a ``generate`` job."""
    return _drop_none({
        "kind": "generate", "model": model, "messages": messages_json(prompt, system),
        "max_tokens": max_tokens, "temperature": temperature,
        "metadata": dict(metadata) if metadata is not None else None,
    })  # fmt: skip


def extract_body(
    model: str,
    text: str,
    schema: Mapping[str, Any],
    *,
    instructions: str | None,
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The body of an ``extract`` job."""
    return _drop_none({
        "kind": "extract", "model": model, "text": text, "schema": dict(schema),
        "instructions": instructions,
        "metadata": dict(metadata) if metadata is not None else None,
    })  # fmt: skip


def embed_body(
    model: str,
    texts: str | Sequence[str],
    *,
    dimensions: int | None,
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The body of an ``embed`` job."""
    return _drop_none({
        "kind": "embed", "model": model,
        "input": texts if isinstance(texts, str) else list(texts),
        "dimensions": dimensions,
        "metadata": dict(metadata) if metadata is not None else None,
    })  # fmt: skip


def submit(body: JobBody, idempotency_key: str | None) -> Call[JobPublic]:
    """``POST /v1/jobs``. The key is made here, once per call, so every retry of the
    request carries the same one and the API creates one job however many arrive."""
    key = idempotency_key or uuid.uuid4().hex
    request = Request("POST", "/v1/jobs", json=body_json(body), headers={"Idempotency-Key": key})
    return Call(request, _job)


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


def list_jobs(
    *,
    status: JobStatus | str | None,
    kind: JobKind | str | None,
    limit: int | None,
    cursor: str | None,
) -> Call[JobPage]:
    """``GET /v1/jobs``: one page, newest first."""
    params = _drop_none({"status": status, "kind": kind, "limit": limit, "cursor": cursor})
    return Call(Request("GET", "/v1/jobs", params={k: str(v) for k, v in params.items()}),
                _model(JobPage))  # fmt: skip


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

    __slots__ = ("_cursor", "_done", "_kind", "_page_size", "_status")

    def __init__(
        self, *, status: JobStatus | str | None, kind: JobKind | str | None, page_size: int
    ) -> None:
        self._status, self._kind, self._page_size = status, kind, page_size
        self._cursor: str | None = None
        self._done = False

    def next_call(self) -> Call[JobPage] | None:
        """The request for the next page, or ``None`` after the last."""
        if self._done:
            return None
        return list_jobs(
            status=self._status, kind=self._kind, limit=self._page_size, cursor=self._cursor
        )

    def take(self, page: JobPage) -> list[JobPublic]:
        """The jobs of a page just read; moves to the next."""
        self._cursor = page.next_cursor
        self._done = page.next_cursor is None or not page.data
        return page.data
