"""``POST /v1/embeddings``."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from aijobs.devtools.simulator import embeddings as emb
from aijobs.devtools.simulator import text as txt
from aijobs.devtools.simulator.admission import (
    Rejected,
    admit,
    client_left,
    missing_param,
    pause,
    response_headers,
    serve,
)
from aijobs.devtools.simulator.errors import invalid_request
from aijobs.devtools.simulator.request_log import RequestRecord
from aijobs.devtools.simulator.slow_bodies import StalledBody, TrickledBody
from aijobs.devtools.simulator.state import SimulatorState
from aijobs.devtools.simulator.streaming import DropConnection

_EMBEDDINGS_IN_THREAD = 50_000  # floats; bigger answers are built off the event loop


def _embedding_inputs(raw: Any) -> list[str] | list[list[int]]:
    def invalid(message: str) -> Rejected:
        return Rejected(invalid_request(message, "input"))

    if raw is None:
        raise missing_param("input")
    if isinstance(raw, str):
        items: list[Any] = [raw]
    elif isinstance(raw, list) and raw and all(_is_token(x) for x in raw):
        items = [raw]
    elif isinstance(raw, list):
        items = raw
    else:
        raise invalid("'input' must be a string, an array of strings or of token arrays.")
    if not items:
        raise invalid("'input' must not be empty.")
    if len(items) > emb.MAX_INPUTS:
        raise invalid(
            f"'input' is too long. Maximum length is {emb.MAX_INPUTS}, but "
            f"{len(items)} inputs were given."
        )
    for item in items:
        if isinstance(item, str):
            if not item:
                raise invalid(
                    "'$.input' is invalid. Please check the API reference: "
                    "https://platform.openai.com/docs/api-reference."
                )
        elif not (isinstance(item, list) and item and all(_is_token(x) for x in item)):
            raise invalid("'input' items must be non-empty strings or token arrays.")
    return items


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _embeddings_payload(
    inputs: list[str] | list[list[int]], model: str, dimensions: int, encoding: str
) -> bytes:
    prompt_tokens = sum(txt.count_text_tokens(x) if isinstance(x, str) else len(x) for x in inputs)
    return emb.response_json(inputs, model, dimensions, encoding, prompt_tokens)


async def create_embeddings(request: Request) -> Response:
    """``POST /v1/embeddings``."""
    return await serve(request, "embeddings", _embeddings)


async def _embeddings(
    request: Request, state: SimulatorState, body: dict[str, Any], record: RequestRecord
) -> Response:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise missing_param("model")
    inputs = _embedding_inputs(body.get("input"))
    native = emb.model_dimensions(model)
    dimensions = body.get("dimensions")
    if dimensions is None:
        dimensions = native
    elif model == "text-embedding-ada-002":
        raise Rejected(
            invalid_request("This model does not support specifying dimensions.", "dimensions")
        )
    elif (
        isinstance(dimensions, bool)
        or not isinstance(dimensions, int)
        or not (1 <= dimensions <= native)
    ):
        raise Rejected(
            invalid_request(
                f"Invalid 'dimensions': expected an integer between 1 and {native}.",
                "dimensions",
            )
        )
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise Rejected(
            invalid_request(
                "Invalid value for 'encoding_format': expected 'float' or 'base64'.",
                "encoding_format",
                "invalid_value",
            )
        )

    admission = admit(state, "embeddings", model, None, record)
    stats = state.stats
    stats.enter()
    entered = True
    try:
        fault = admission.answer_fault(record, 0)  # not streamed: no content chunks
        kind = fault.kind if fault is not None else None
        if fault is not None and kind == "hang" and not await pause(request, fault.seconds):
            return client_left(record)
        if not await pause(request, state.config.latency_ms / 1000):
            return client_left(record)
        if kind == "cut":
            entered = False
            return DropConnection(stats)
        headers = response_headers(state, "req_" + secrets.token_hex(16))
        if fault is not None and kind == "stall":
            entered = False
            return StalledBody(headers, fault.interval_s, stats)
        if len(inputs) * dimensions > _EMBEDDINGS_IN_THREAD:
            content = await asyncio.to_thread(
                _embeddings_payload, inputs, model, dimensions, encoding
            )
        else:
            content = _embeddings_payload(inputs, model, dimensions, encoding)
        if fault is not None and kind == "trickle":
            entered = False
            return TrickledBody(content, headers, fault.interval_s, stats)
        return Response(content, media_type="application/json", headers=headers)
    finally:
        if entered:
            stats.leave()
