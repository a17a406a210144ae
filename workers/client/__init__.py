"""A Python client for the aijobs API: ``Client`` (blocking) and ``AsyncClient`` (asyncio),
with the same methods.

    from aijobs import Client, TextReset

    with Client("http://127.0.0.1:8000", api_key="...") as client:
        job = client.generate("gpt-4o-mini", "Tell me a story")
        for piece in client.text(job.id):
            if isinstance(piece, TextReset):   # a retry starts the text over
                print("\\n[restarted]", piece.text, end="")
            else:
                print(piece, end="", flush=True)
        print(client.wait(job.id).result)

Methods return the API's own models (a job as its kind's ``JobPublic``: ``GenerateJob``,
``ExtractJob`` or ``EmbedJob``, whose ``result`` is a dict of that kind's keys; ``JobPage``,
``CancelAnswer``, ``BatchAnswer``, ``EventToken``); errors are ``ApiError`` (the API
refused: ``status``, ``detail``, ``code``), ``ApiUnavailable`` (it could not be reached
through every retry) and
``WaitTimeout``, all ``aijobs.errors.AijobsError``. Requests are retried on connection
errors, 429 (after its ``Retry-After``) and 502-504; a submit carries an
``Idempotency-Key`` so its retries make one job. ``events()`` resumes by itself after a
drop or an API restart, from the last event it yielded, and ends at ``done``.

It needs httpx and pydantic and nothing of the server: ``pip install aijobs-client``.
"""

from aijobs.client.aio import AsyncClient
from aijobs.client.calls import JobBody, Prompt, VectorFormat
from aijobs.client.config import DEFAULT_URL
from aijobs.client.errors import ApiError, ApiUnavailable, NoResult, WaitTimeout
from aijobs.client.events import EVENT_TYPES, JobEvent, TextReset, TextState
from aijobs.client.retry import RetryPolicy
from aijobs.client.sync import Client
from aijobs.client.vectors import Embeddings
from aijobs.errors import AijobsError, ErrorCode
from aijobs.schemas import (
    BatchAnswer,
    BatchItemResult,
    CancelAnswer,
    EmbedInput,
    EmbedJob,
    EmbedResult,
    ErrorBody,
    EventToken,
    ExtractInput,
    ExtractJob,
    ExtractResult,
    GenerateInput,
    GenerateJob,
    GenerateResult,
    JobError,
    JobKind,
    JobPage,
    JobPublic,
    JobStatus,
    Message,
    Usage,
)

__all__ = [
    "DEFAULT_URL",
    "EVENT_TYPES",
    "AijobsError",
    "ApiError",
    "ApiUnavailable",
    "AsyncClient",
    "BatchAnswer",
    "BatchItemResult",
    "CancelAnswer",
    "Client",
    "EmbedInput",
    "EmbedJob",
    "EmbedResult",
    "Embeddings",
    "ErrorBody",
    "ErrorCode",
    "EventToken",
    "ExtractInput",
    "ExtractJob",
    "ExtractResult",
    "GenerateInput",
    "GenerateJob",
    "GenerateResult",
    "JobBody",
    "JobError",
    "JobEvent",
    "JobKind",
    "JobPage",
    "JobPublic",
    "JobStatus",
    "Message",
    "NoResult",
    "Prompt",
    "RetryPolicy",
    "TextReset",
    "TextState",
    "Usage",
    "VectorFormat",
    "WaitTimeout",
]
